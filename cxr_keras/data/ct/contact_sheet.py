"""The README contact sheet of the CT renderer (docs/ct_samples.png, by benchmarks/ct_render.py):
a healthy image and one per finding at a real NIH box, the target box in red and the drawn box in green.
"""
from __future__ import annotations

from typing import Dict, Sequence, Tuple

import cv2
import numpy as np

from cxr_keras.data.ct.renderer import CTRenderer
from cxr_keras.data.images import NIH_IMAGE_SIZE, Box

SHEET_FINDINGS = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltrate", "Pneumonia", "Pneumothorax", "Nodule")


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


def sample_sheet(renderer: CTRenderer, tile: int = 256, seed: int = 0,
                 findings: Sequence[str] = SHEET_FINDINGS) -> np.ndarray:
    """A labelled BGR grid: one healthy image and one per finding, the real NIH target box in red
    (thin) and the drawn lesion box in green."""
    examples = nih_example_boxes(findings, seed)
    items = [("No Finding", "healthy.png", [])]
    items += [(f, examples[f][0], [examples[f][1]]) for f in findings if f in examples]
    tiles = []
    for i, (title, name, boxes) in enumerate(items):
        img, drawn = renderer(name, boxes, np.random.default_rng([seed, i]))
        t = cv2.cvtColor(cv2.resize(img, (tile, tile), interpolation=cv2.INTER_AREA), cv2.COLOR_GRAY2BGR)
        for colour, bs, width in (((60, 60, 230), boxes, 1), ((60, 220, 60), drawn, 2)):
            for _, x, y, w, h in bs:
                s = tile / NIH_IMAGE_SIZE
                cv2.rectangle(t, (int(x * s), int(y * s)), (int((x + w) * s), int((y + h) * s)), colour, width)
        cv2.putText(t, title, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(t, title, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(t)
    cols = 4
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    return np.vstack([np.hstack(tiles[i:i + cols]) for i in range(0, len(tiles), cols)])
