"""The README contact sheet of the CT renderer (docs/ct_samples.png, by benchmarks/ct_render.py):
a row per source CT, each with a healthy image and one per finding at the same real NIH boxes; the
target box in red, the drawn box in green, the CT's own lesion (``lesion_ct``) in yellow.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np

from cxr_keras.data.ct.lesion_ct import LESION_LABEL
from cxr_keras.data.ct.renderer import CTRenderer
from cxr_keras.data.images import NIH_IMAGE_SIZE, Box

SHEET_FINDINGS = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltrate", "Pneumonia", "Pneumothorax", "Nodule")
RED, GREEN, YELLOW = (60, 60, 230), (60, 220, 60), (0, 220, 255)  # BGR


def nih_example_boxes(findings: Sequence[str] = SHEET_FINDINGS, seed: int = 0) -> Dict[str, Tuple[str, Box]]:
    """One real NIH box per finding (seeded pick from the shipped BBox list): {finding: (image, box)}."""
    from cxr_keras.data import nih

    df = nih.read_bbox_list(nih.metadata_paths(None)[0])
    rng = np.random.default_rng(seed)
    out = {}
    for f in findings:
        rows = df[df["finding"] == f]
        if len(rows):
            row = rows.iloc[int(rng.integers(len(rows)))]
            out[f] = (row["image"], (f, float(row["x"]), float(row["y"]), float(row["w"]), float(row["h"])))
    return out


def _tile(img: np.ndarray, titles: Sequence[str], targets: List[Box], drawn: List[Box], tile: int) -> np.ndarray:
    """A BGR tile with title lines: target boxes thin red, drawn boxes green (``lesion_ct`` yellow)."""
    t = cv2.cvtColor(cv2.resize(img, (tile, tile), interpolation=cv2.INTER_AREA), cv2.COLOR_GRAY2BGR)
    s = tile / NIH_IMAGE_SIZE
    for colour, boxes, width in ((RED, targets, 1), (GREEN, drawn, 2)):
        for label, x, y, w, h in boxes:
            c = YELLOW if label == LESION_LABEL else colour
            cv2.rectangle(t, (int(x * s), int(y * s)), (int((x + w) * s), int((y + h) * s)), c, width)
    for k, title in enumerate(titles):
        for colour, thick in (((0, 0, 0), 3), ((255, 255, 255), 1)):
            cv2.putText(t, title, (5, 15 + 16 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.42, colour, thick, cv2.LINE_AA)
    return t


def sample_sheet(renderer: CTRenderer, tile: int = 256, seed: int = 0,
                 findings: Sequence[str] = SHEET_FINDINGS) -> np.ndarray:
    """A labelled BGR grid: a row per source CT of ``renderer``, each a healthy image and one per
    finding at the same real NIH box (seeded pick)."""
    examples = nih_example_boxes(findings, seed)
    items = [("No Finding", "healthy.png", [])]
    items += [(f, examples[f][0], [examples[f][1]]) for f in findings if f in examples]
    rows = []
    for source in renderer.sources:
        tiles = []
        for i, (title, name, boxes) in enumerate(items):
            img, drawn = renderer.render_from(source, name, boxes, np.random.default_rng([seed, i]))
            titles = [title, source] if i == 0 and len(renderer.sources) > 1 else [title]
            tiles.append(_tile(img, titles, boxes, drawn, tile))
        rows.append(np.hstack(tiles))
    return np.vstack(rows)
