"""GAN pair records: target image y, box mask m, box, label, source, id; and their tf.data reader.

One Example per annotation (an image with two boxes gives two pairs, each keeping one box) and one
per sampled healthy image (no box: Pix2Pix-N draws random boxes for those while training).
"""
from __future__ import annotations

import os
from typing import Dict, Iterable, Sequence, Union

import numpy as np
import tensorflow as tf

from cxr_keras.data.images import box_mask, encode_png
from cxr_keras.io_utils import atomic_path

PathLike = Union[str, os.PathLike]

FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "mask/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/id": tf.io.FixedLenFeature([], tf.string),
    "image/source": tf.io.FixedLenFeature([], tf.string),
    "image/split": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "ann_id": tf.io.FixedLenFeature([], tf.int64, default_value=-1),
    "label": tf.io.FixedLenFeature([], tf.int64, default_value=0),
    "finding": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "box/pixels": tf.io.FixedLenFeature([4], tf.float32, default_value=[0.0] * 4),
}


def _bytes(v: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))


def _int(v: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v)]))


def _floats(v: Sequence[float]) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(x) for x in v]))


def pair_example(
    image_png: bytes,
    size: int,
    image_id: str,
    source: str,
    split: str = "",
    box_xyxy: Sequence[float] = None,
    label: int = 0,
    finding: str = "",
    ann_id: int = -1,
) -> tf.train.Example:
    """Build one pair Example; ``box_xyxy`` in size×size pixels, None for a healthy image."""
    if box_xyxy is None:
        mask = np.zeros((size, size), np.uint8)
        box_xyxy = (0.0, 0.0, 0.0, 0.0)
    else:
        mask = box_mask(box_xyxy, size)
    feats = {
        "image/encoded": _bytes(image_png),
        "mask/encoded": _bytes(encode_png(mask * 255)),
        "image/id": _bytes(image_id.encode()),
        "image/source": _bytes(source.encode()),
        "image/split": _bytes(split.encode()),
        "ann_id": _int(ann_id),
        "label": _int(label),
        "finding": _bytes(finding.encode()),
        "box/pixels": _floats(box_xyxy),
    }
    return tf.train.Example(features=tf.train.Features(feature=feats))


def write_examples(path: PathLike, examples: Iterable[tf.train.Example]) -> int:
    """Write serialised Examples to ``path`` atomically; return how many were written."""
    n = 0
    with atomic_path(path) as tmp:
        with tf.io.TFRecordWriter(str(tmp)) as w:
            for ex in examples:
                w.write(ex.SerializeToString())
                n += 1
    return n


def write_pair_examples(path: PathLike, items: Iterable[Dict]) -> int:
    """Write pair records from plain dicts (handy for tests).

    Keys: ``image`` uint8 [S,S] or [S,S,1]; optional ``box`` (xmin, ymin, xmax, ymax pixels),
    ``label``, ``finding``, ``source`` (default annotated if a box is given, else healthy),
    ``image_id``, ``split``, ``ann_id``.
    """

    def gen():
        for i, it in enumerate(items):
            img = np.asarray(it["image"], np.uint8)
            img2 = img[:, :, 0] if img.ndim == 3 else img
            box = it.get("box")
            yield pair_example(
                encode_png(img2),
                img2.shape[0],
                image_id=str(it.get("image_id", f"img_{i:05d}.png")),
                source=it.get("source", "annotated" if box is not None else "healthy"),
                split=it.get("split", ""),
                box_xyxy=box,
                label=int(it.get("label", 0)),
                finding=it.get("finding", ""),
                ann_id=int(it.get("ann_id", i if box is not None else -1)),
            )

    return write_examples(path, gen())


def parse_pair(serialized: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Decode one serialised pair Example into the float tensors the GANs train on."""
    f = tf.io.parse_single_example(serialized, FEATURES)
    image = tf.io.decode_png(f["image/encoded"], channels=1)
    mask = tf.io.decode_png(f["mask/encoded"], channels=1)
    size = tf.cast(tf.shape(image)[0], tf.float32)
    xmin, ymin, xmax, ymax = tf.unstack(f["box/pixels"])
    return {
        "image": tf.cast(image, tf.float32) / 127.5 - 1.0,
        "mask": tf.cast(mask > 127, tf.float32),
        "box": tf.stack([ymin, xmin, ymax, xmax]) / size,
        "label": f["label"],
        "finding": f["finding"],
        "source": f["image/source"],
        "image_id": f["image/id"],
        "ann_id": f["ann_id"],
    }


def read_pairs(paths: Union[PathLike, Sequence[PathLike]], image_size: int = None) -> tf.data.Dataset:
    """A tf.data pipeline over pair records; ``image_size`` resizes (bilinear image, nearest mask)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [str(p) for p in paths]
    for p in paths:
        if not tf.io.gfile.exists(p):
            raise FileNotFoundError(f"{p}: pair record not found (run scripts/make_tfrecords.py)")
    ds = tf.data.TFRecordDataset(paths).map(parse_pair, num_parallel_calls=tf.data.AUTOTUNE)
    if image_size is not None:
        ds = ds.map(lambda ex: resize_pair(ex, image_size), num_parallel_calls=tf.data.AUTOTUNE)
    return ds


def resize_pair(ex: Dict[str, tf.Tensor], size: int) -> Dict[str, tf.Tensor]:
    """Resize image and mask of a parsed pair to size×size (the normalised box is unchanged)."""
    out = dict(ex)
    out["image"] = tf.image.resize(ex["image"], [size, size], method="area", antialias=True)
    out["mask"] = tf.image.resize(ex["mask"], [size, size], method="nearest")
    return out
