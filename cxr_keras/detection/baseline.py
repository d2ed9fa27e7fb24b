"""The prior-box baseline: what a detector that never looks at the image scores on Table 2.

For each finding, its mean training box (normalised ymin, xmin, ymax, xmax) is emitted as that
finding's single top-1 detection on every test image. With IoU > 0.1 such a fixed box already
scores well for findings that sit in one place (the heart), so every Table 2 shows it as a column.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Tuple, Union

import numpy as np

from cxr_keras.config import FINDINGS
from cxr_keras.detection.inference import ImageResult
from cxr_keras.io_utils import atomic_write_text
from cxr_keras.paths import DetectorRunPaths

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


def config_priors(pipeline_config: PathLike,
                  findings: Sequence[str] = FINDINGS) -> Tuple[Dict[int, np.ndarray], Path]:
    """Prior boxes from the real training record of a pipeline config (its first training input:
    det_train, or det_fit when a validation share is held out), and that record."""
    from cxr_keras.detection.configs import load_pipeline_configs, real_train_record_path

    train = real_train_record_path(load_pipeline_configs(pipeline_config))
    if not train.is_file():
        raise FileNotFoundError(f"{train}: training record of {pipeline_config} does not exist")
    return prior_boxes(read_ground_truth(train), findings), train


def write_baseline_run(pipeline_config: PathLike, out_dir: PathLike,
                       findings: Sequence[str] = FINDINGS) -> DetectorRunPaths:
    """The baseline as a run folder that ``evaluate_localisation --runs`` reads beside the detectors:
    ``protocol.json`` (``"baseline": true``, the priors) and ``detections/step_00000000.npz`` on
    the config's test record (the baseline never trains, so it stands in every window)."""
    from cxr_keras.detection.configs import eval_record_path, load_pipeline_configs
    from cxr_keras.detection.inference import save_results

    test = eval_record_path(load_pipeline_configs(pipeline_config))
    if not test.is_file():
        raise FileNotFoundError(f"{test}: test record of {pipeline_config} does not exist")
    priors, train = config_priors(pipeline_config, findings)
    paths = DetectorRunPaths(out_dir)
    save_results(paths.detection(0), prior_results(read_ground_truth(test), priors), baseline=NAME)
    atomic_write_text(paths.protocol, json.dumps({
        "protocol": NAME, "baseline": True, "train_record": str(train.resolve()),
        "test_record": str(test.resolve()), "findings": list(findings),
        "priors": {findings[k - 1]: [round(float(v), 6) for v in box] for k, box in sorted(priors.items())},
    }, indent=2))
    return paths
