"""Random "healthy" boxes for Pix2Pix-N, with sizes drawn from the NIH box-size distribution.

Healthy images carry no box; Pix2Pix-N draws one per image and per epoch so that the generator also
learns to paint around regions of plausible size that contain no pathology. Sizes (w, h) are drawn
jointly from the empirical list of the six findings' boxes (scaled to the record size); the position
is uniform over the placements that keep the box inside the image.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from cxr_keras.config import FINDINGS
from cxr_keras.data import nih


def nih_box_sizes(image_size: int, findings: Sequence[str] = FINDINGS,
                  bbox_csv: Optional[os.PathLike] = None) -> np.ndarray:
    """int32 [N, 2] (w, h) of every box of ``findings`` in the NIH list, scaled to image_size pixels.

    ``bbox_csv`` defaults to the BBox_List shipped with the package. Sizes are rounded and clipped
    to [1, image_size] so that every drawn box is non-empty and fits.
    """
    path = bbox_csv if bbox_csv is not None else nih.metadata_paths(None)[0]
    df = nih.read_bbox_list(path)
    df = df[df["finding"].isin(list(findings)) & (df["w"] > 0) & (df["h"] > 0)]
    if df.empty:
        raise ValueError(f"{path}: no boxes of {', '.join(findings)} to draw healthy box sizes from")
    scale = image_size / float(nih.NIH_IMAGE_SIZE)
    wh = np.stack([df["w"].to_numpy(float), df["h"].to_numpy(float)], axis=1) * scale
    return np.clip(np.round(wh), 1, image_size).astype(np.int32)


def sample_boxes(sizes: np.ndarray, image_size: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """NumPy twin of :func:`random_box_mask`: float [n, 4] boxes (xmin, ymin, xmax, ymax) in pixels."""
    sizes = np.asarray(sizes, np.int64)
    idx = rng.integers(0, len(sizes), n)
    w, h = sizes[idx, 0], sizes[idx, 1]
    x0 = np.floor(rng.random(n) * (image_size - w + 1)).astype(np.int64)
    y0 = np.floor(rng.random(n) * (image_size - h + 1)).astype(np.int64)
    x0, y0 = np.minimum(x0, image_size - w), np.minimum(y0, image_size - h)
    return np.stack([x0, y0, x0 + w, y0 + h], axis=1).astype(np.float32)


def random_box_mask(sizes: tf.Tensor, image_size: int, seed: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """Draw one box (stateless, from ``seed`` [2]): mask float32 [S,S,1] in {0,1} and box [4].

    ``sizes`` is the int32 [N, 2] (w, h) table of :func:`nih_box_sizes`; the box comes back
    normalised as [ymin, xmin, ymax, xmax], the same convention as ``records.pairs.read_pairs``.
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 3)
    sizes = tf.convert_to_tensor(sizes, tf.int32)
    i = tf.random.stateless_uniform([], seeds[0], 0, tf.shape(sizes)[0], dtype=tf.int32)
    w, h = sizes[i, 0], sizes[i, 1]
    s = tf.constant(image_size, tf.int32)
    x0 = tf.random.stateless_uniform([], seeds[1], 0, s - w + 1, dtype=tf.int32)
    y0 = tf.random.stateless_uniform([], seeds[2], 0, s - h + 1, dtype=tf.int32)
    r = tf.range(s)
    rows = tf.logical_and(r >= y0, r < y0 + h)
    cols = tf.logical_and(r >= x0, r < x0 + w)
    mask = tf.cast(tf.logical_and(rows[:, None], cols[None, :]), tf.float32)[:, :, None]
    box = tf.cast(tf.stack([y0, x0, y0 + h, x0 + w]), tf.float32) / float(image_size)
    return mask, box
