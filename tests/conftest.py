"""Shared fixtures: a tiny NIH-layout folder with hand-made metadata and smooth synthetic PNGs."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from cxr_keras.config import FINDINGS
from cxr_keras.data.images import NIH_IMAGE_SIZE
from cxr_keras.data.nih_folder import BBOX_FILE, ENTRY_FILE

BBOX_HEADER = "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
ENTRY_HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
                "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]\n")


def smooth_image(seed: int, size: int = NIH_IMAGE_SIZE) -> np.ndarray:
    """A cheap, well-compressing 8-bit 'radiograph': a blurred random field."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (8, 8)).astype(np.float32)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8)


def write_tiny_nih(root: Path, per_finding: int = 3, healthy: int = 4, size: int = NIH_IMAGE_SIZE,
                   extra_boxes=(), entry_header: str = ENTRY_HEADER) -> dict:
    """Write an NIH-layout folder; returns {image name: [(finding, x, y, w, h), ...]}."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    boxes = {}
    n = 0
    for f in FINDINGS:
        for _ in range(per_finding):
            name = f"{n:08d}_000.png"
            boxes[name] = [(f, 100.0 + 20 * n, 200.0, 180.0, 150.0)]
            n += 1
    first = next(iter(boxes))
    boxes[first].append(("Mass", 600.0, 600.0, 80.0, 80.0))  # dropped by design
    for name, rows in extra_boxes:
        boxes.setdefault(name, []).extend(rows)
    lines = [BBOX_HEADER]
    entries = [entry_header]
    for i, (name, rows) in enumerate(boxes.items()):
        for f, x, y, w, h in rows:
            lines.append(f"{name},{f},{x},{y},{w},{h}\n")
        labels = "|".join(dict.fromkeys("Infiltration" if r[0] == "Infiltrate" else r[0] for r in rows))
        entries.append(f"{name},{labels},0,{i},50,M,PA,2500,2500,0.14,0.14\n")
    for j in range(healthy):
        name = f"9{j:07d}_000.png"
        entries.append(f"{name},No Finding,0,{1000 + j},40,F,PA,2500,2500,0.14,0.14\n")
        boxes[name] = []
    (root / BBOX_FILE).write_text("".join(lines))
    (root / ENTRY_FILE).write_text("".join(entries))
    for k, name in enumerate(boxes):
        cv2.imwrite(str(root / "images" / name), smooth_image(k, size))
    return boxes


@pytest.fixture
def make_tiny_nih():
    """The folder writer itself, for tests that need other sizes or extra boxes."""
    return write_tiny_nih


@pytest.fixture
def tiny_nih(tmp_path):
    root = tmp_path / "nih"
    boxes = write_tiny_nih(root)
    return root, boxes
