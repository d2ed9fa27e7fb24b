"""Building records from an NIH folder: counts, contents, and every kind of bad input."""
import json

import cv2
import numpy as np
import pytest
import tensorflow as tf

from cxr_keras.config import DataConfig, RecordsConfig
from cxr_keras.paths import RecordsPaths
from cxr_keras.records.build import RECORD_FILES, build_records, records_complete
from cxr_keras.records.detection import read_detection_records
from cxr_keras.records.pairs import read_pairs

CFG = DataConfig(healthy=3)
REC = RecordsConfig(image_size=64, workers=1)


def test_build_writes_every_record_with_the_right_counts(tiny_nih, tmp_path):
    root, boxes = tiny_nih
    out = tmp_path / "rec"
    info = build_records(root, out, CFG, RecordsConfig(image_size=64, workers=2), progress=False)
    paths = RecordsPaths(out)
    assert records_complete(out)
    c = info["counts"]
    assert c["annotations"] == 18 and c["images"] == 18  # 3 per finding; Mass dropped
    assert (c["train"], c["test"]) == (12, 6)  # floor(0.7*3) = 2 per finding
    written = info["records"]  # examples per record, keyed by the record file's stem
    assert written[paths.pairs("train").stem] == 12 and written[paths.det("test").stem] == 6
    assert written[paths.healthy("train").stem] == 3
    pairs = list(read_pairs(paths.pairs("train")).as_numpy_iterator())
    assert len(pairs) == 12
    manifest = json.loads(paths.manifest.read_text())
    by_id = {a["ann_id"]: a for a in manifest["annotations"]}
    for p in pairs:
        a = by_id[int(p["ann_id"])]
        assert a["split"] == "train" and p["finding"].decode() == a["finding"]
        x, y, w, h = a["box"]
        expect = np.array([y, x, y + h, x + w]) / 1024.0
        np.testing.assert_allclose(p["box"], expect, atol=1e-5)
        assert p["image"].shape == (64, 64, 1) and -1 <= p["image"].min() <= p["image"].max() <= 1
        # the mask covers exactly the pixels the box touches
        ys, xs = np.nonzero(p["mask"][:, :, 0])
        assert ys.min() == int(np.floor(expect[0] * 64)) and ys.max() + 1 == int(np.ceil(expect[2] * 64))
        assert xs.min() == int(np.floor(expect[1] * 64)) and xs.max() + 1 == int(np.ceil(expect[3] * 64))
    # the image in the record is the resized source image
    src = cv2.imread(str(root / "images" / pairs[0]["image_id"].decode()), cv2.IMREAD_GRAYSCALE)
    small = cv2.resize(src, (64, 64), interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose((pairs[0]["image"][:, :, 0] + 1) * 127.5, small, atol=0.01)
    det = read_detection_records(paths.det("test"))
    assert len(det) == 6 and all(len(d["labels"]) == 1 for d in det)
    assert paths.label_map.read_text().count("item {") == 6


def test_same_seed_same_records(tiny_nih, tmp_path):
    root, _ = tiny_nih
    build_records(root, tmp_path / "a", CFG, REC, progress=False)
    build_records(root, tmp_path / "b", CFG, REC, progress=False)
    for f in RECORD_FILES:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_bad_images_are_converted_or_skipped_with_reasons(tiny_nih, tmp_path):
    root, boxes = tiny_nih
    names = [n for n, rows in boxes.items() if rows]
    img_dir = root / "images"
    # corrupt, truncated, missing
    (img_dir / names[0]).write_bytes(b"not a png at all")
    data = (img_dir / names[1]).read_bytes()
    (img_dir / names[1]).write_bytes(data[: len(data) // 2])
    (img_dir / names[2]).unlink()
    # RGBA and 16-bit: converted, not skipped
    g = cv2.imread(str(img_dir / names[3]), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(img_dir / names[3]), cv2.cvtColor(g, cv2.COLOR_GRAY2BGRA))
    cv2.imwrite(str(img_dir / names[4]), g.astype(np.uint16) * 257)
    info = build_records(root, tmp_path / "rec", CFG, REC, progress=False)
    skipped = {s["item"]: s["reason"] for s in info["skipped"]}
    assert "not a decodable image" in skipped[names[0]] and names[0] in skipped[names[0]]
    assert "truncated PNG" in skipped[names[1]]
    assert "missing on disk" in skipped[names[2]]
    assert names[3] not in skipped and names[4] not in skipped
    kept = {a["image"] for a in info["annotations"]}
    assert names[3] in kept and names[4] in kept and names[0] not in kept
    pairs = {p["image_id"].decode(): p for p in
             read_pairs([RecordsPaths(tmp_path / "rec").pairs(s) for s in ("train", "test")]).as_numpy_iterator()}
    small = cv2.resize(g, (64, 64), interpolation=cv2.INTER_AREA)
    for n in names[3:5]:
        np.testing.assert_allclose((pairs[n]["image"][:, :, 0] + 1) * 127.5, small, atol=1.01)


def test_boxes_are_clipped_or_skipped(tmp_path, make_tiny_nih):
    root = tmp_path / "nih"
    make_tiny_nih(root, per_finding=2, healthy=1, extra_boxes=[
        ("80000000_000.png", [("Effusion", 900.0, 900.0, 300.0, 300.0)]),   # partly outside: clipped
        ("80000001_000.png", [("Effusion", 1100.0, 50.0, 30.0, 30.0)]),     # fully outside: skipped
    ])
    info = build_records(root, tmp_path / "rec", DataConfig(healthy=1), REC, progress=False)
    assert info["clipped_boxes"] == 1
    assert any(s["item"] == "80000001_000.png" and "outside" in s["reason"] for s in info["skipped"])
    rec = RecordsPaths(tmp_path / "rec")
    recs = read_detection_records(rec.det("train")) + read_detection_records(rec.det("test"))
    clipped = [r for r in recs if r["filename"] == "80000000_000.png"][0]
    np.testing.assert_allclose(clipped["boxes"][0], [900 / 1024, 900 / 1024, 1.0, 1.0], atol=1e-6)


def test_missing_metadata_or_images_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="NIH folder not found"):
        build_records(tmp_path / "nope", tmp_path / "rec", CFG, REC, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no PNG images"):
        build_records(tmp_path / "empty", tmp_path / "rec", CFG, REC, progress=False)


def test_a_failed_build_leaves_no_half_written_files(tiny_nih, tmp_path, monkeypatch):
    root, _ = tiny_nih
    out = tmp_path / "rec"
    import cxr_keras.records.build as build

    calls = {"n": 0}
    real = build.write_detection_records

    def exploding(path, items, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            next(iter(items))
            raise KeyboardInterrupt
        return real(path, items, *a, **k)

    monkeypatch.setattr(build, "write_detection_records", exploding)
    with pytest.raises(KeyboardInterrupt):
        build_records(root, out, CFG, REC, progress=False)
    assert not records_complete(out)
    assert not RecordsPaths(out).det("test").exists() and not list(out.glob("*.tmp"))
    # the records finished before the interruption are complete and readable
    assert sum(1 for _ in tf.data.TFRecordDataset(str(RecordsPaths(out).det("train")))) == 12


def test_make_tfrecords_command_builds_and_fails_in_one_line(tiny_nih, tmp_path, capsys):
    from cxr_keras.cli.make_tfrecords import main

    root, _ = tiny_nih
    out = tmp_path / "cli"
    main(["--nih-root", str(root), "--out", str(out), "--image-size", "64", "--healthy", "3",
          "--workers", "1", "--quiet"])
    assert records_complete(out)
    c = json.loads(RecordsPaths(out).manifest.read_text())["counts"]
    assert f"{c['annotations']} boxes on {c['images']} images: {c['train']} train / {c['test']} test" \
        in capsys.readouterr().out
    with pytest.raises(SystemExit, match=r"^make_tfrecords: .*nope: NIH folder not found$"):
        main(["--nih-root", str(tmp_path / "nope"), "--out", str(tmp_path / "x")])
