"""The NIH-layout writer: subset choice, file formats, atomic/complete output, determinism.

A cheap stand-in renderer keeps these fast; the phantom renderer has its own tests.
"""
import hashlib
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from cxr_keras.config import FINDINGS, HEALTHY, DataConfig
from cxr_keras.data import nih, nih_folder


class StubRenderer:
    """Picklable: a seeded noise image with the boxes outlined; moves every box by ``shift`` px."""

    def __init__(self, shift=0.0, shape=(1024, 1024), dtype=np.uint8):
        self.shift, self.shape, self.dtype = shift, shape, dtype

    def __call__(self, image_name, boxes, rng):
        img = np.full(self.shape, rng.integers(0, 256), dtype=self.dtype)  # compresses to a tiny PNG
        img[:8, :8] = rng.integers(0, 256, size=(8, 8))
        out = []
        for finding, x, y, w, h in boxes:
            out.append((finding, x + self.shift, y + self.shift, w, h))
        return img, out


def _hashes(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(root).rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def metadata():
    bbox, entry = nih.metadata_paths(None)
    return nih.read_bbox_list(bbox), nih.read_data_entry(entry)


# -- choose_subset --------------------------------------------------------------------------------
def test_choose_subset_stratified_prefix_covers_every_finding(metadata):
    boxes, entries = metadata
    annotated, healthy = nih_folder.choose_subset(boxes, entries, FINDINGS, limit=6, healthy=3, seed=0)
    assert len(annotated) == 6 and len(set(annotated)) == 6
    found = set(boxes[boxes["image"].isin(annotated)]["finding"])
    assert set(FINDINGS) <= found
    assert len(healthy) == 3
    labels = dict(zip(entries["image"], entries["labels"]))
    assert all(labels[h] == (HEALTHY,) for h in healthy)
    assert not set(healthy) & set(boxes["image"])


def test_choose_subset_all_and_seeded(metadata):
    boxes, entries = metadata
    every, _ = nih_folder.choose_subset(boxes, entries, FINDINGS, limit=None, healthy=0, seed=0)
    expected = set(boxes[boxes["finding"].isin(FINDINGS)]["image"])
    assert set(every) == expected and len(every) == len(expected)
    a = nih_folder.choose_subset(boxes, entries, FINDINGS, limit=12, healthy=4, seed=1)
    b = nih_folder.choose_subset(boxes, entries, FINDINGS, limit=12, healthy=4, seed=1)
    c = nih_folder.choose_subset(boxes, entries, FINDINGS, limit=12, healthy=4, seed=2)
    assert a == b
    assert a != c


def test_choose_subset_small_frames_and_limits():
    boxes = pd.DataFrame({
        "image": ["a.png", "a.png", "b.png", "c.png", "d.png"],
        "finding": ["Effusion", "Mass", "Effusion", "Pneumothorax", "Nodule"],
        "x": [1.0] * 5, "y": [1.0] * 5, "w": [5.0, 5.0, 0.0, 5.0, 5.0], "h": [5.0] * 5,
    })
    entries = pd.DataFrame({"image": ["a.png", "b.png", "c.png", "d.png", "h1.png", "h2.png"],
                            "labels": [("Effusion",), ("Effusion",), ("Pneumothorax",), ("Nodule",),
                                       (HEALTHY,), (HEALTHY,)]})
    annotated, healthy = nih_folder.choose_subset(boxes, entries, FINDINGS, limit=None, healthy=5, seed=0)
    # b.png's only box has zero width; d.png has only a Nodule: neither is chosen.
    assert sorted(annotated) == ["a.png", "c.png"]
    assert sorted(healthy) == ["h1.png", "h2.png"]
    one, _ = nih_folder.choose_subset(boxes, entries, FINDINGS, limit=1, healthy=0, seed=0)
    assert one in (["a.png"], ["c.png"])
    with pytest.raises(ValueError, match="limit"):
        nih_folder.choose_subset(boxes, entries, FINDINGS, limit=-1)


# -- write_nih_folder -----------------------------------------------------------------------------
def test_write_folder_formats_and_manifest(tmp_path, metadata):
    out = tmp_path / "nih"
    summary = nih_folder.write_nih_folder(out, StubRenderer(shift=1.0), limit=7, healthy=2, seed=3,
                                          workers=1, progress=False)
    assert summary["images"] == 9 and summary["annotated"] == 7 and summary["healthy"] == 2
    on_disk = sorted(p.name for p in (out / "images").iterdir())
    assert len(on_disk) == 9 and not [n for n in on_disk if not n.endswith(".png")]

    lines = (out / nih_folder.BBOX_FILE).read_text().splitlines()
    assert lines[0] == "Image Index,Finding Label,Bbox [x,y,w,h],,,"
    rows = [ln.split(",") for ln in lines[1:]]
    assert rows and all(len(r) == 6 for r in rows)
    assert {r[0] for r in rows} <= set(on_disk)
    assert summary["boxes"] == len(rows)
    # The renderer's boxes_out are what is written (here: the real boxes moved by 1 px).
    boxes, entries = metadata
    real = boxes[boxes["image"].isin({r[0] for r in rows})]
    assert len(real) == len(rows)
    want = sorted((r.image, r.finding, round(r.x + 1, 6), round(r.y + 1, 6)) for r in real.itertuples())
    got = sorted((r[0], r[1], round(float(r[2]), 6), round(float(r[3]), 6)) for r in rows)
    assert got == want
    assert "Infiltration" not in (out / nih_folder.BBOX_FILE).read_text()

    entry_lines = (out / nih_folder.ENTRY_FILE).read_text().splitlines()
    _, entry_src = nih.metadata_paths(None)
    src = nih_folder._read_lines(entry_src)
    assert entry_lines[0] == src[0]
    assert sorted(ln.split(",")[0] for ln in entry_lines[1:]) == on_disk
    assert set(entry_lines[1:]) <= set(src[1:])  # verbatim real rows

    for name in on_disk:
        img = cv2.imread(str(out / "images" / name), cv2.IMREAD_UNCHANGED)
        assert img.dtype == np.uint8 and img.shape == (1024, 1024)

    manifest = nih.build_manifest(out, DataConfig(healthy=1, seed=0))
    assert {a.image for a in manifest.annotations} <= set(on_disk)
    assert {a.finding for a in manifest.annotations} == set(FINDINGS)
    assert manifest.healthy and {h["image"] for h in manifest.healthy} <= set(on_disk)
    assert set(nih.find_images(out)) == set(on_disk)
    assert not list(out.rglob("*.tmp"))


def test_same_seed_same_bytes_any_worker_count(tmp_path):
    a = nih_folder.write_nih_folder(tmp_path / "a", StubRenderer(), limit=4, healthy=1, seed=5, workers=1,
                                    progress=False)
    nih_folder.write_nih_folder(tmp_path / "b", StubRenderer(), limit=4, healthy=1, seed=5, workers=2,
                                progress=False)
    nih_folder.write_nih_folder(tmp_path / "c", StubRenderer(), limit=4, healthy=1, seed=6, workers=1,
                                progress=False)
    ha, hb, hc = (_hashes(tmp_path / d) for d in "abc")
    assert a["images"] == 5 and len(ha) == 5 + 2
    assert ha == hb
    assert ha != hc


def test_rerun_overwrites_but_refuses_foreign_pngs(tmp_path):
    out = tmp_path / "o"
    nih_folder.write_nih_folder(out, StubRenderer(), limit=2, seed=0, workers=1, progress=False)
    before = _hashes(out)
    nih_folder.write_nih_folder(out, StubRenderer(), limit=2, seed=0, workers=1, progress=False)
    assert _hashes(out) == before
    (out / "images" / "stranger.png").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="stranger.png"):
        nih_folder.write_nih_folder(out, StubRenderer(), limit=2, seed=0, workers=1, progress=False)


def test_bad_renderer_output_names_the_image(tmp_path):
    with pytest.raises(ValueError, match=r"\.png: StubRenderer returned float32"):
        nih_folder.write_nih_folder(tmp_path / "x", StubRenderer(dtype=np.float32), limit=1, workers=1,
                                    progress=False)
    with pytest.raises(ValueError, match=r"expected uint8 \(1024, 1024\)"):
        nih_folder.write_nih_folder(tmp_path / "y", StubRenderer(shape=(512, 512)), limit=1, workers=1,
                                    progress=False)
    # Nothing is listed when rendering failed: the CSVs are written last.
    assert not (tmp_path / "x" / nih_folder.BBOX_FILE).exists()
    assert not (tmp_path / "x" / nih_folder.ENTRY_FILE).exists()


def test_image_rng_depends_on_seed_and_name_only():
    a = nih_folder.image_rng(1, "x.png").integers(0, 2**31, 4)
    assert (a == nih_folder.image_rng(1, "x.png").integers(0, 2**31, 4)).all()
    assert (a != nih_folder.image_rng(2, "x.png").integers(0, 2**31, 4)).any()
    assert (a != nih_folder.image_rng(1, "y.png").integers(0, 2**31, 4)).any()
    with pytest.raises(ValueError):
        nih_folder.image_rng(-1, "x.png")
