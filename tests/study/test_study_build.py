"""Building the study set: counts per source × finding, shortfalls, anonymity, crop, inputs, errors."""
from __future__ import annotations

import dataclasses
import json
from collections import Counter

import cv2
import numpy as np
import pytest

from cxr_keras.config import FINDINGS, StudyConfig
from cxr_keras.study.build import (build_study, crop_resize, draw, folder_candidates,
                                   parse_generated_arg)
from cxr_keras.study.layout import ID_PATTERN, REAL, StudyError, load_key, load_study, paths


def test_counts_per_source_and_finding_with_shortfall(study, inputs):
    s = load_study(study)
    key = load_key(study)
    got = Counter((e["source"], e["finding"]) for e in key.values())
    for f in FINDINGS:
        assert got[(REAL, f)] == 2
        assert got[("pix2pix", f)] == 2
        assert got[("stargan", f)] == (1 if f == "Pneumonia" else 2)
    assert s["sources"] == [REAL, "pix2pix", "stargan"]
    assert s["total"] == len(s["order"]) == sum(got.values()) == 35
    assert s["counts"]["stargan"]["Pneumonia"] == 1
    report = json.loads(paths(study).build_report.read_text())
    assert report["shortfalls"] == [{"source": "stargan", "finding": "Pneumonia", "wanted": 2, "drawn": 1}]


def test_images_are_opaque_resized_and_key_stays_private(study, inputs):
    p = paths(study)
    s = load_study(study)
    key = load_key(study)
    files = sorted(x.name for x in p.images.iterdir())
    assert files == sorted(f"{i}.png" for i in s["order"])
    assert set(key) == set(s["order"])
    for image_id in s["order"][:5]:
        assert ID_PATTERN.match(image_id)
        img = cv2.imread(str(p.image(image_id)), cv2.IMREAD_UNCHANGED)
        assert img.shape == (64, 64) and img.dtype == np.uint8
    public = p.study_json.read_text()
    for e in key.values():  # nothing per image beyond its id leaks into study.json
        assert e["origin"]["file"] not in public
        assert e["origin"]["source_image"] not in public
    assert p.key.parent.name == "private" and p.key.parent != p.images


def test_order_is_seeded_ids_are_fresh(tmp_path, inputs):
    cfg = StudyConfig(per_finding=2, image_size=32, seed=7)

    def sequence(out):
        build_study(inputs["real"], inputs["generated"], out, cfg)
        key = load_key(out)
        return [(key[i]["source"], key[i]["finding"], key[i]["origin"]["file"]) for i in load_study(out)["order"]], \
            load_study(out)["order"]

    seq1, ids1 = sequence(tmp_path / "a")
    seq2, ids2 = sequence(tmp_path / "b")
    assert seq1 == seq2
    assert not set(ids1) & set(ids2)
    build_study(inputs["real"], inputs["generated"], tmp_path / "c", StudyConfig(per_finding=2, image_size=32, seed=8))
    key = load_key(tmp_path / "c")
    seq_c = [(key[i]["source"], key[i]["finding"], key[i]["origin"]["file"]) for i in load_study(tmp_path / "c")["order"]]
    assert seq_c != seq1
    assert sorted(x[:2] for x in seq_c) == sorted(x[:2] for x in seq1)  # same counts either way


def test_shuffle_mixes_sources(study):
    key = load_key(study)
    seq = [key[i]["source"] for i in load_study(study)["order"]]
    switches = sum(a != b for a, b in zip(seq, seq[1:]))
    assert switches > len(seq) // 3  # blocks per source would give only 2 switches


def test_crop_removes_border_and_resizes():
    img = np.full((100, 100), 100, np.uint8)
    img[:5, :] = img[-5:, :] = img[:, :5] = img[:, -5:] = 255  # a bright frame: GAN border artefacts
    out = crop_resize(img, 0.06, 50)
    assert out.shape == (50, 50)
    assert out.max() == 100
    assert crop_resize(img, 0.0, 50).max() == 255
    with pytest.raises(ValueError):
        crop_resize(img, 0.5, 50)


def test_real_avoids_radiographs_whose_fakes_are_in_the_study(tmp_path, write_folder):
    counts = {"Effusion": 4}
    real = write_folder(tmp_path / "real", None, counts, prefix="r")
    gen = write_folder(tmp_path / "gen", "pix2pix", {"Effusion": 2}, prefix="g")
    # the generated images were made from src_Effusion_000/001; real ones carry image ids as groups
    m = json.loads((real / "manifest.json").read_text())
    for i, it in enumerate(m["items"]):
        it["source_image"] = f"src_Effusion_{i:03d}.png"
    (real / "manifest.json").write_text(json.dumps(m))
    out = tmp_path / "study"
    build_study(real, {"pix2pix": gen}, out, StudyConfig(per_finding=2, image_size=32), findings=("Effusion",))
    key = load_key(out)
    used = {e["origin"]["source_image"] for e in key.values() if e["source"] == REAL}
    assert used == {"src_Effusion_002.png", "src_Effusion_003.png"}


def test_draw_takes_one_image_per_radiograph_first():
    from cxr_keras.study.build import Candidate

    cands = [Candidate("gan", "Effusion", f"f{i}", f"src{i // 3}", {}, load=lambda: None) for i in range(9)]
    picked, stats = draw(cands, "gan", ["Effusion"], 3, seed=0)
    assert len({c.group for c in picked}) == 3
    picked, stats = draw(cands, "gan", ["Effusion"], 5, seed=0)
    assert len(picked) == 5 and stats["Effusion"]["shortfall"] == 0
    picked, stats = draw(cands, "gan", ["Effusion", "Pneumonia"], 5, seed=0)
    assert stats["Pneumonia"] == {"wanted": 5, "available": 0, "drawn": 0, "shortfall": 5, "avoided_overlap": 0}


def test_bad_items_are_counted_not_fatal(tmp_path, write_folder):
    gen = write_folder(tmp_path / "gen", "pix2pix", {"Effusion": 2})
    m = json.loads((gen / "manifest.json").read_text())
    m["items"] += [{"file": "images/missing.png", "finding": "Effusion"},
                   {"file": "images/x.png", "finding": "Mass"},
                   {"file": "../../etc/passwd", "finding": "Effusion"},
                   {"finding": "Effusion"}]
    (gen / "manifest.json").write_text(json.dumps(m))
    s = folder_candidates("pix2pix", gen)
    assert len(s.candidates) == 2
    reasons = " ".join(x["reason"] for x in s.skipped)
    assert len(s.skipped) == 4
    assert "file not found" in reasons and "Mass" in reasons and "outside" in reasons


def test_errors_name_the_problem(tmp_path, inputs):
    with pytest.raises(StudyError, match="manifest.json"):
        folder_candidates("pix2pix", tmp_path)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "manifest.json").write_text("{not json")
    with pytest.raises(StudyError, match=r"broken/manifest.json: not valid JSON"):
        folder_candidates("pix2pix", tmp_path / "broken")
    with pytest.raises(StudyError, match="NAME=DIR"):
        parse_generated_arg(["pix2pix"])
    with pytest.raises(StudyError, match="reserved"):
        parse_generated_arg(["real=/tmp"])
    with pytest.raises(StudyError, match="neither"):
        build_study(tmp_path / "broken" / "..", inputs["generated"], tmp_path / "s", StudyConfig(per_finding=1))


def test_corrupt_image_is_reported_with_its_file(tmp_path, inputs, write_folder):
    gen = write_folder(tmp_path / "gen", "pix2pix", {f: 1 for f in FINDINGS})
    bad = gen / "images" / f"img_Effusion_000.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(StudyError, match="img_Effusion_000.png"):
        build_study(inputs["real"], {"pix2pix": gen}, tmp_path / "s", StudyConfig(per_finding=1, image_size=32))
    assert not (tmp_path / "s").exists()  # nothing half-built left behind


def test_existing_study_needs_force(tmp_path, inputs, study):
    cfg = StudyConfig(per_finding=1, image_size=32)
    with pytest.raises(StudyError, match="--force"):
        build_study(inputs["real"], inputs["generated"], study, cfg)
    old = set(load_study(study)["order"])
    build_study(inputs["real"], inputs["generated"], study, cfg, force=True)
    new = load_study(study)
    assert new["total"] == 18 and not old & set(new["order"])
    assert not list(study.parent.glob(".study.*"))  # no temporary or old copies left


@pytest.mark.slow
def test_real_images_from_records(tmp_path, inputs):
    from cxr_keras.records.pairs import write_pair_examples

    rng = np.random.default_rng(0)
    rec = tmp_path / "records"
    rec.mkdir()

    def items(split, n):
        for f_i, f in enumerate(FINDINGS):
            for i in range(n):
                yield {"image": rng.integers(0, 255, (48, 48), dtype=np.uint8), "box": [4, 4, 20, 20],
                       "label": f_i + 1, "finding": f, "image_id": f"{split}_{f}_{i}.png", "split": split}
        yield {"image": np.zeros((48, 48), np.uint8), "image_id": "healthy.png", "split": split}

    write_pair_examples(rec / "pairs_test.tfrecord", items("test", 1))
    write_pair_examples(rec / "pairs_train.tfrecord", items("train", 3))
    out = tmp_path / "study"
    build_study(rec, inputs["generated"], out, StudyConfig(per_finding=2, image_size=32))
    key = load_key(out)
    real = [e for e in key.values() if e["source"] == REAL]
    assert Counter(e["finding"] for e in real) == {f: 2 for f in FINDINGS}
    # test split preferred: each finding has its single test image plus one train image
    assert Counter(e["origin"]["split"] for e in real) == {"test": 6, "train": 6}
    assert all(e["origin"]["image_id"] != "healthy.png" for e in real)

    out2 = tmp_path / "study_test_only"
    report = build_study(rec, inputs["generated"], out2, StudyConfig(per_finding=2, image_size=32),
                         real_split="test")
    assert sum(1 for e in load_key(out2).values() if e["source"] == REAL) == 6
    assert {(s["source"], s["drawn"]) for s in report["shortfalls"]} >= {(REAL, 1)}


def test_corrupt_records_name_the_file(tmp_path, inputs):
    rec = tmp_path / "records"
    rec.mkdir()
    (rec / "pairs_test.tfrecord").write_bytes(b"this is not a TFRecord file at all" * 4)
    with pytest.raises(StudyError, match=r"pairs_test.tfrecord: cannot read pair records"):
        build_study(rec, inputs["generated"], tmp_path / "s", StudyConfig(per_finding=1, image_size=32))


def test_every_source_travels_the_smallest_native_resolution(tmp_path, write_folder):
    """Issue 12: a 32-px generator beside 128-px real images; the real ones go down to 32 first."""
    real = write_folder(tmp_path / "real", None, {f: 2 for f in FINDINGS}, size=128, seed=1, prefix="r")
    gen = write_folder(tmp_path / "gen", "stargan", {f: 2 for f in FINDINGS}, size=32, seed=2, prefix="g")
    fine = (np.indices((128, 128)) // 2).sum(axis=0) % 2 * 200 + 20  # 2-px checks: 64 px carries them, 32 cannot
    for png in (real / "images").glob("*.png"):
        cv2.imwrite(str(png), fine.astype(np.uint8))
    cfg = StudyConfig(per_finding=1, image_size=64, border_crop_frac=0.0)
    build_study(real, {"stargan": gen}, tmp_path / "s", cfg)
    s, key = load_study(tmp_path / "s"), load_key(tmp_path / "s")
    assert s["common_size"] == 32 and s["native_sizes"] == {REAL: 128, "stargan": 32}
    real_ids = [i for i in s["order"] if key[i]["source"] == REAL]
    expected = crop_resize(cv2.resize(fine.astype(np.uint8), (32, 32), interpolation=cv2.INTER_AREA), 0.0, 64)
    for i in real_ids:
        served = cv2.imread(str(paths(tmp_path / "s").image(i)), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(served, expected)
        assert served.std() < 2  # the checkerboard a 32-px source could never show is gone

    build_study(real, {"stargan": gen}, tmp_path / "off", dataclasses.replace(cfg, common_resolution=False))
    s_off, key_off = load_study(tmp_path / "off"), load_key(tmp_path / "off")
    assert s_off["common_size"] == 0
    some_real = next(i for i in s_off["order"] if key_off[i]["source"] == REAL)
    assert cv2.imread(str(paths(tmp_path / "off").image(some_real)), cv2.IMREAD_UNCHANGED).std() > 20
