"""The 2D chest phantoms: format, determinism, lesions drawn inside their boxes, and a real folder."""
import hashlib
import pickle
import runpy
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from cxr_keras.config import FINDINGS, DataConfig
from cxr_keras.data import nih, nih_folder
from cxr_keras.data.images import clip_finding_box
from cxr_keras.data.phantoms import PhantomRenderer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def real_boxes():
    """One real box per finding (the first row of each in the shipped bbox list)."""
    boxes = nih.read_bbox_list(nih.metadata_paths(None)[0])
    out = {}
    for f in FINDINGS + ("Mass", "Nodule"):
        r = boxes[boxes["finding"] == f].iloc[0]
        out[f] = (r.image, (f, float(r.x), float(r.y), float(r.w), float(r.h)))
    return out


def render(renderer, name, boxes, seed=0, lesions=True):
    return renderer(name, boxes, nih_folder.image_rng(seed, name), lesions=lesions)


def test_format_boxes_and_determinism():
    r = PhantomRenderer()
    boxes = [("Effusion", 100.0, 600.0, 250.0, 200.0), ("Nodule", 990.0, -10.0, 60.0, 50.0),
             ("Mass", 1030.0, 5.0, 20.0, 20.0)]
    img, out = render(r, "00000001_000.png", boxes)
    assert img.dtype == np.uint8 and img.shape == (1024, 1024)
    # Inside boxes unchanged; partly outside ones clipped; fully outside dropped.
    assert out == [boxes[0], ("Nodule", 990.0, 0.0, 34.0, 40.0)]
    again, _ = render(r, "00000001_000.png", boxes)
    assert np.array_equal(img, again)
    other, _ = render(r, "00000001_000.png", boxes, seed=1)
    assert np.abs(img.astype(int) - other).mean() > 2
    clone = pickle.loads(pickle.dumps(r))
    assert np.array_equal(render(clone, "00000001_000.png", boxes)[0], img)
    # Looks like a chest film: dark lungs between a bright mediastinum and bright abdomen.
    col = img[:, 512].astype(float)
    assert img[20:120, :60].mean() < 60  # air beside the neck
    assert col[850:].mean() > img[400:600, 200:300].mean() + 30  # abdomen brighter than a lung


@pytest.mark.parametrize("finding", FINDINGS + ("Mass", "Nodule"))
def test_lesion_is_drawn_inside_its_box(finding, real_boxes):
    name, box = real_boxes[finding]
    r = PhantomRenderer()
    with_lesion, out = render(r, name, [box])
    without, same = render(r, name, [box], lesions=False)
    assert out == same == [clip_finding_box(box)]
    diff = with_lesion.astype(np.int16) - without.astype(np.int16)
    _, x, y, w, h = box
    x0, y0, x1, y1 = int(x), int(y), int(np.ceil(x + w)), int(np.ceil(y + h))
    inside = np.zeros(diff.shape, bool)
    inside[y0:y1, x0:x1] = True
    margin = np.zeros(diff.shape, bool)  # the final slight blur may leak a few pixels
    margin[max(0, y0 - 6):y1 + 6, max(0, x0 - 6):x1 + 6] = True
    assert np.abs(diff[inside]).mean() > 3.0, finding
    assert np.abs(diff[~margin]).max() == 0, finding
    if finding == "Pneumothorax":
        assert (diff[inside] < -6).mean() > 0.02  # a lucent rim, darker than the lung
    else:
        assert diff[inside].mean() > 1.5  # an opacity
    if finding == "Effusion":  # fluid collects at the bottom of the box
        top, bottom = diff[y0:(y0 + y1) // 2, x0:x1], diff[(y0 + y1) // 2:y1, x0:x1]
        assert bottom.mean() > top.mean()


def test_small_size_and_bad_size():
    img, out = PhantomRenderer(size=128)("a.png", [("Pneumonia", 500.0, 400.0, 200.0, 200.0)],
                                         np.random.default_rng(0))
    assert img.shape == (128, 128) and img.dtype == np.uint8
    assert out == [("Pneumonia", 500.0, 400.0, 200.0, 200.0)]
    with pytest.raises(ValueError, match="size"):
        PhantomRenderer(size=8)


@pytest.mark.slow
def test_phantom_folder_end_to_end(tmp_path):
    """8 phantoms in the NIH layout; 1 and 2 workers give the same bytes; nih reads it all."""
    a = nih_folder.write_nih_folder(tmp_path / "a", PhantomRenderer(), limit=6, healthy=2, seed=0, workers=2,
                                    progress=False)
    b = nih_folder.write_nih_folder(tmp_path / "b", PhantomRenderer(), limit=6, healthy=2, seed=0, workers=1,
                                    progress=False)
    assert a["images"] == b["images"] == 8
    ha, hb = ({p.relative_to(tmp_path / d).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
               for p in (tmp_path / d).rglob("*") if p.is_file()} for d in "ab")
    assert ha == hb and len(ha) == 10

    out = tmp_path / "a"
    found = nih.find_images(out)
    assert len(found) == 8
    for path in found.values():
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert img.dtype == np.uint8 and img.shape == (1024, 1024)
    manifest = nih.build_manifest(out, DataConfig(healthy=2))
    assert {x.finding for x in manifest.annotations} == set(FINDINGS)
    assert {x.image for x in manifest.annotations} | {h["image"] for h in manifest.healthy} == set(found)
    listed = [ln.split(",")[0] for ln in (out / nih_folder.ENTRY_FILE).read_text().splitlines()[1:]]
    assert sorted(listed) == sorted(found)


def test_script_writes_a_folder(tmp_path, monkeypatch, capsys):
    script = str(ROOT / "scripts" / "make_phantoms.py")
    monkeypatch.setattr(sys, "argv", [script, "--out", str(tmp_path / "s"), "--limit", "1",
                                      "--workers", "1", "--seed", "3", "--quiet"])
    with pytest.raises(SystemExit) as exc:
        runpy.run_path(script, run_name="__main__")
    assert exc.value.code == 0
    assert '"images": 1' in capsys.readouterr().out
    assert len(nih.find_images(tmp_path / "s")) == 1
    monkeypatch.setattr(sys, "argv", [script, "--out", str(tmp_path / "t"), "--seed", "-1"])
    with pytest.raises(SystemExit) as exc:
        runpy.run_path(script, run_name="__main__")
    assert exc.value.code == 2


def test_script_ct_kind_without_module_exits_clearly(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "cxr_keras.data.ct", None)  # import now fails
    script = str(ROOT / "scripts" / "make_phantoms.py")
    monkeypatch.setattr(sys, "argv", [script, "--out", str(tmp_path / "c"), "--kind", "ct", "--limit", "1"])
    with pytest.raises(SystemExit, match=r"--kind ct: cannot import cxr_keras\.data\.ct\.CTRenderer"):
        runpy.run_path(script, run_name="__main__")
