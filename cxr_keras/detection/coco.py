"""COCO mAP@0.5 of saved detections, computed by the OD API's own evaluator (pycocotools inside).

Correct-location accuracy at IoU > 0.1 rewards a box in roughly the right place; a fixed prior box
scores well on it. Average precision needs confident, well-placed boxes of the right finding and
few confident wrong ones, so Table 2 reports it next to the accuracy: per finding and over the
findings that have test boxes, through ``object_detection.metrics.coco_evaluation
.CocoDetectionEvaluator`` (the evaluator behind ``model_main_tf2``'s ``coco_detection_metrics``).
"""
from __future__ import annotations

from cxr_keras.detection import od_compat  # noqa: F401  (must precede TensorFlow / protobuf)

import contextlib
import io
from typing import Dict, Iterable, Optional, Sequence

import numpy as np

from cxr_keras.config import FINDINGS
from cxr_keras.detection.localisation import TOTAL

SUMMARY_KEY = "DetectionBoxes_Precision/mAP@.50IOU"


def _map50(results: Sequence, findings: Sequence[str], only: Optional[int] = None) -> float:
    """The evaluator's mAP@.50IOU; with ``only`` = a label, of that finding's boxes alone."""
    from object_detection.core import standard_fields as fields
    from object_detection.metrics.coco_evaluation import CocoDetectionEvaluator

    evaluator = CocoDetectionEvaluator([{"id": i, "name": name} for i, name in enumerate(findings, 1)])
    for n, r in enumerate(results, 1):
        gt_labels = np.asarray(r.gt_labels, np.int32).reshape(-1)
        classes = np.asarray(r.classes, np.int32).reshape(-1)
        keep_gt = gt_labels == only if only else np.ones(len(gt_labels), bool)
        keep = classes == only if only else np.ones(len(classes), bool)
        gt_boxes = np.asarray(r.gt_boxes, np.float32).reshape(-1, 4)
        evaluator.add_single_ground_truth_image_info(n, {
            fields.InputDataFields.groundtruth_boxes: gt_boxes[keep_gt],
            fields.InputDataFields.groundtruth_classes: gt_labels[keep_gt]})
        evaluator.add_single_detected_image_info(n, {
            fields.DetectionResultFields.detection_boxes: np.asarray(r.boxes, np.float32).reshape(-1, 4)[keep],
            fields.DetectionResultFields.detection_scores: np.asarray(r.scores, np.float32).reshape(-1)[keep],
            fields.DetectionResultFields.detection_classes: classes[keep]})
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its summary table
        value = float(evaluator.evaluate()[SUMMARY_KEY])
    return value if value >= 0 else float("nan")  # -1: no test boxes


def coco_map50(results: Iterable, findings: Sequence[str] = FINDINGS) -> Dict[str, float]:
    """mAP at IoU 0.5 of per-image results (``inference.ImageResult``): finding → its AP (NaN
    without test boxes), TOTAL → the evaluator's mean over the findings with test boxes.

    Per finding, the evaluator sees that finding's boxes and detections only: its per-category
    output needs a patched pycocotools (``category_stats``), the summary does not. Boxes are
    normalised; only all-area metrics are used, so the scale does not matter."""
    od_compat.require_od_api()
    results = list(results)
    if not results:
        raise ValueError("COCO evaluation needs at least one image")
    out = {name: _map50(results, findings, k) for k, name in enumerate(findings, 1)}
    out[TOTAL] = _map50(results, findings)
    return out
