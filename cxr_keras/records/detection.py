"""Detection records in the exact TF Object Detection API format, and the label map.

One Example per image with all of its boxes; images are PNG (lossless) so that synthetic images
keep their pathology pixels bit for bit all the way into the detector.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, List, Sequence, Union

import numpy as np
import tensorflow as tf

from cxr_keras.config import FINDINGS
from cxr_keras.data.images import encode_png
from cxr_keras.io_utils import atomic_write_text
from cxr_keras.records.pairs import _bytes, _int, write_examples

PathLike = Union[str, os.PathLike]


@dataclass
class DetectionItem:
    """One detection image: uint8 [H,W] (or [H,W,1]), its boxes in pixels and 1-based labels."""

    image: np.ndarray
    filename: str
    boxes_xyxy: Sequence[Sequence[float]]  # (xmin, ymin, xmax, ymax) in pixels
    labels: Sequence[int]
    source_id: str = ""
    png: bytes = None  # already-encoded PNG of ``image`` (skips re-encoding)


def _floats(values: Iterable[float]) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=list(values)))


def _bytes_list(values: Iterable[bytes]) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _ints(values: Iterable[int]) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def detection_example(item: DetectionItem, findings: Sequence[str] = FINDINGS) -> tf.train.Example:
    """Build the OD API Example of one image (boxes normalised to [0, 1] and clipped)."""
    h, w = item.image.shape[:2]
    if len(item.boxes_xyxy) != len(item.labels):
        raise ValueError(f"{item.filename}: {len(item.boxes_xyxy)} boxes but {len(item.labels)} labels")
    boxes = np.asarray(item.boxes_xyxy, np.float64).reshape(-1, 4)
    xmin = np.clip(boxes[:, 0] / w, 0.0, 1.0)
    ymin = np.clip(boxes[:, 1] / h, 0.0, 1.0)
    xmax = np.clip(boxes[:, 2] / w, 0.0, 1.0)
    ymax = np.clip(boxes[:, 3] / h, 0.0, 1.0)
    for lab in item.labels:
        if not 1 <= int(lab) <= len(findings):
            raise ValueError(f"{item.filename}: label {lab} outside 1..{len(findings)}")
    png = item.png if item.png is not None else encode_png(item.image)
    feats = {
        "image/encoded": _bytes(png),
        "image/format": _bytes(b"png"),
        "image/height": _int(h),
        "image/width": _int(w),
        "image/filename": _bytes(item.filename.encode()),
        "image/source_id": _bytes((item.source_id or item.filename).encode()),
        "image/object/bbox/xmin": _floats(xmin),
        "image/object/bbox/xmax": _floats(xmax),
        "image/object/bbox/ymin": _floats(ymin),
        "image/object/bbox/ymax": _floats(ymax),
        "image/object/class/text": _bytes_list(findings[int(l) - 1].encode() for l in item.labels),
        "image/object/class/label": _ints(item.labels),
    }
    return tf.train.Example(features=tf.train.Features(feature=feats))


def write_detection_records(path: PathLike, items: Iterable[DetectionItem],
                            findings: Sequence[str] = FINDINGS) -> int:
    """Write OD API records atomically; return how many images were written."""
    return write_examples(path, (detection_example(it, findings) for it in items))


def label_map_text(findings: Sequence[str] = FINDINGS) -> str:
    return "".join(f"item {{\n  id: {i}\n  name: '{name}'\n}}\n" for i, name in enumerate(findings, 1))


def write_label_map(path: PathLike, findings: Sequence[str] = FINDINGS) -> None:
    """The TF OD label map (``RecordsPaths.label_map``) with ids 1..N in FINDINGS order."""
    atomic_write_text(path, label_map_text(findings))


DETECTION_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/filename": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "image/source_id": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "image/object/bbox/xmin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/xmax": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymax": tf.io.VarLenFeature(tf.float32),
    "image/object/class/label": tf.io.VarLenFeature(tf.int64),
}


def read_detection_records(path: PathLike) -> List[dict]:
    """Read OD records back into numpy dicts (image uint8 [H,W], boxes normalised ymin,xmin,ymax,xmax)."""
    out = []
    for raw in tf.data.TFRecordDataset(str(path)):
        f = tf.io.parse_single_example(raw, DETECTION_FEATURES)
        dense = {k: tf.sparse.to_dense(v).numpy() for k, v in f.items() if isinstance(v, tf.SparseTensor)}
        out.append({
            "image": tf.io.decode_png(f["image/encoded"], channels=1).numpy()[:, :, 0],
            "filename": f["image/filename"].numpy().decode(),
            "source_id": f["image/source_id"].numpy().decode(),
            "boxes": np.stack([dense["image/object/bbox/ymin"], dense["image/object/bbox/xmin"],
                               dense["image/object/bbox/ymax"], dense["image/object/bbox/xmax"]], -1),
            "labels": dense["image/object/class/label"],
        })
    return out
