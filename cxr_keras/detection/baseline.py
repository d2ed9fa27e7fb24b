"""The prior-box baseline: what a detector that never looks at the image scores on Table 2.

For each finding, its mean training box (normalised ymin, xmin, ymax, xmax) is emitted as that
finding's single top-1 detection on every test image. With IoU > 0.1 such a fixed box already
scores well for findings that sit in one place (the heart), so every Table 2 shows it as a column.
"""
from __future__ import annotations

import os
from typing import Dict, Iterable, List, Sequence, Union

import numpy as np

from cxr_keras.config import FINDINGS
from cxr_keras.detection.inference import ImageResult

PathLike = Union[str, os.PathLike]
NAME = "prior_box"


def prior_boxes(items: Iterable, findings: Sequence[str] = FINDINGS) -> Dict[int, np.ndarray]:
    """{label: mean box} over the ground truth of ``items`` (objects with gt_boxes / gt_labels)."""
    sums = np.zeros((len(findings) + 1, 4))
    counts = np.zeros(len(findings) + 1, np.int64)
    for it in items:
        labels = np.asarray(it.gt_labels, np.int64).reshape(-1)
        boxes = np.asarray(it.gt_boxes, np.float64).reshape(-1, 4)
        if labels.size and (labels.min() < 1 or labels.max() > len(findings)):
            raise ValueError(f"{it.filename}: ground-truth label outside 1..{len(findings)}")
        np.add.at(sums, labels, boxes)
        np.add.at(counts, labels, 1)
    return {int(k): sums[k] / counts[k] for k in range(1, len(findings) + 1) if counts[k]}


def prior_results(items: Iterable, priors: Dict[int, np.ndarray]) -> List[ImageResult]:
    """Per-image results of the baseline on ``items``: one detection per finding with a prior."""
    labels = np.array(sorted(priors), np.int64)
    boxes = np.array([priors[k] for k in labels], np.float32).reshape(-1, 4)
    scores = np.ones(len(labels), np.float32)
    return [ImageResult(it.filename, np.asarray(it.gt_boxes, np.float32).reshape(-1, 4),
                        np.asarray(it.gt_labels, np.int64).reshape(-1), boxes, labels, scores)
            for it in items]


def read_ground_truth(record: PathLike) -> List[ImageResult]:
    """Ground truth of every image of an OD record (no detections), without decoding the images."""
    import tensorflow as tf

    from cxr_keras.detection.inference import RecordError
    from cxr_keras.records.detection import DETECTION_FEATURES

    features = {k: v for k, v in DETECTION_FEATURES.items() if k != "image/encoded"}
    out = []
    try:
        for raw in tf.data.TFRecordDataset(str(record)):
            f = tf.io.parse_single_example(raw, features)
            d = {k: tf.sparse.to_dense(v).numpy() for k, v in f.items() if isinstance(v, tf.SparseTensor)}
            boxes = np.stack([d[f"image/object/bbox/{c}"] for c in ("ymin", "xmin", "ymax", "xmax")], -1)
            name = f["image/filename"].numpy().decode() or f["image/source_id"].numpy().decode()
            out.append(ImageResult(name, boxes.astype(np.float32).reshape(-1, 4),
                                   d["image/object/class/label"].astype(np.int64),
                                   np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, np.float32)))
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as exc:
        raise RecordError(f"{record}: unreadable detection record ({type(exc).__name__})") from exc
    return out


def baseline_results(train_record: PathLike, test_record: PathLike) -> List[ImageResult]:
    """The prior-box baseline's per-image results on ``test_record``, priors from ``train_record``."""
    return prior_results(read_ground_truth(test_record), prior_boxes(read_ground_truth(train_record)))
