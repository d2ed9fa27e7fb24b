"""The paper's geometric augmentation (rotation, reflection, crop), applied identically to image and mask.

Image and mask go through the very same transform (bilinear for the image, nearest for the mask), and
the box is recomputed from the transformed mask, so the box always describes the kept pixels.
"""
from __future__ import annotations

import math
from typing import Dict

import tensorflow as tf

from cxr_keras.config import AugmentConfig


def _rotation_transform(angle: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
    """Projective transform (output → input coordinates) rotating a size×size image about its centre."""
    s = tf.cast(size, tf.float32) - 1.0
    c, n = tf.cos(angle), tf.sin(angle)
    x_off = (s - (c * s - n * s)) / 2.0
    y_off = (s - (n * s + c * s)) / 2.0
    z = tf.zeros_like(c)
    return tf.reshape(tf.stack([c, -n, x_off, n, c, y_off, z, z]), [1, 8])


def _transform(img: tf.Tensor, transform: tf.Tensor, interpolation: str, fill: float) -> tf.Tensor:
    size = tf.shape(img)[0:2]
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=img[tf.newaxis], transforms=transform, output_shape=size,
        interpolation=interpolation, fill_mode="CONSTANT", fill_value=fill)
    return out[0]


def box_from_mask(mask: tf.Tensor) -> tf.Tensor:
    """Normalised [ymin, xmin, ymax, xmax] of the pixels where mask > 0.5 (zeros if none)."""
    m = mask[:, :, 0] > 0.5
    rows = tf.where(tf.reduce_any(m, axis=1))[:, 0]
    cols = tf.where(tf.reduce_any(m, axis=0))[:, 0]
    h = tf.cast(tf.shape(m)[0], tf.float32)
    w = tf.cast(tf.shape(m)[1], tf.float32)

    def _box():
        return tf.stack([
            tf.cast(rows[0], tf.float32) / h, tf.cast(cols[0], tf.float32) / w,
            tf.cast(rows[-1] + 1, tf.float32) / h, tf.cast(cols[-1] + 1, tf.float32) / w])

    return tf.cond(tf.size(rows) > 0, _box, lambda: tf.zeros([4], tf.float32))


def augment_pair(ex: Dict[str, tf.Tensor], cfg: AugmentConfig, seed: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Randomly reflect, rotate and crop ``image`` and ``mask`` together (stateless, from ``seed`` [2]).

    If a transform would push an annotated box entirely out of the image, the pair is returned
    unchanged rather than losing its pathology.
    """
    seed = tf.cast(seed, tf.int64)
    seeds = tf.random.experimental.stateless_split(seed, 5)
    image, mask = ex["image"], ex["mask"]
    size = tf.shape(image)[0]
    if cfg.flip_left_right:
        flip = tf.random.stateless_uniform([], seeds[0]) < 0.5
        image = tf.cond(flip, lambda: tf.image.flip_left_right(image), lambda: image)
        mask = tf.cond(flip, lambda: tf.image.flip_left_right(mask), lambda: mask)
    if cfg.max_rotation_deg > 0:
        a = math.radians(cfg.max_rotation_deg)
        angle = tf.random.stateless_uniform([], seeds[1], -a, a)
        t = _rotation_transform(angle, size)
        image = _transform(image, t, "BILINEAR", -1.0)
        mask = _transform(mask, t, "NEAREST", 0.0)
    if cfg.min_crop_frac < 1.0:
        frac = tf.random.stateless_uniform([], seeds[2], cfg.min_crop_frac, 1.0)
        oy = tf.random.stateless_uniform([], seeds[3], 0.0, 1.0 - frac)
        ox = tf.random.stateless_uniform([], seeds[4], 0.0, 1.0 - frac)
        boxes = tf.reshape(tf.stack([oy, ox, oy + frac, ox + frac]), [1, 4])
        crop = tf.stack([size, size])
        image = tf.image.crop_and_resize(image[tf.newaxis], boxes, [0], crop, method="bilinear")[0]
        mask = tf.image.crop_and_resize(mask[tf.newaxis], boxes, [0], crop, method="nearest")[0]
    out = dict(ex)
    out["image"] = tf.ensure_shape(image, ex["image"].shape)
    out["mask"] = tf.ensure_shape(mask, ex["mask"].shape)
    out["box"] = box_from_mask(out["mask"])
    had_box = tf.reduce_any(ex["mask"] > 0.5)
    lost_box = tf.logical_and(had_box, tf.logical_not(tf.reduce_any(out["mask"] > 0.5)))
    # The fallback is the input with the same keys as ``out`` (its box from its own mask), so callers
    # that read ``box`` work either way (an example given without one raised KeyError: 'box').
    unchanged = {**ex, "box": box_from_mask(ex["mask"])}
    return tf.cond(lost_box, lambda: unchanged, lambda: out)


def augment_dataset(ds: tf.data.Dataset, cfg: AugmentConfig, seed: int = 0) -> tf.data.Dataset:
    """Apply ``augment_pair`` to every element with a seeded, per-element random stream.

    Apply it after ``repeat()`` so every epoch draws fresh transforms.
    """
    seeds = tf.data.Dataset.random(seed=seed).batch(2)
    return tf.data.Dataset.zip((ds, seeds)).map(
        lambda ex, s: augment_pair(ex, cfg, s), num_parallel_calls=tf.data.AUTOTUNE)
