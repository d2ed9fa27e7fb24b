"""The GANs' tf.data input pipelines over RECORDS/: Pix2Pix pairs (plus healthy images with random boxes
for Pix2Pix-N) and StarGAN's 7 domains.

Training batches are dicts of numeric tensors only (no strings: they go through ``tf.function``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from cxr_keras.config import Pix2PixConfig, StarGANConfig
from cxr_keras.models.stargan import N_DOMAINS
from cxr_keras.paths import RecordsPaths
from cxr_keras.records.augment import augment_pair
from cxr_keras.records.boxes import nih_box_sizes, random_box_mask
from cxr_keras.records.pairs import parse_pair, resize_pair


# -- Pix2Pix -----------------------------------------------------------------------------------------
def record_size(path: Path) -> int:
    """Side length of the first image of a pair record (with a clear error for an empty file)."""
    for raw in tf.data.TFRecordDataset(str(path)).take(1):
        return int(parse_pair(raw)["image"].shape[0])
    raise ValueError(f"{path}: pair record is empty")


def pix2pix_dataset(records_dir, cfg: Pix2PixConfig, seed: int = 0, split: str = "train") -> tf.data.Dataset:
    """Infinite, shuffled batches {image, mask} of the training pairs (plus healthy ones for Pix2Pix-N).

    Shuffling works on the serialized records (cheap), so annotated and healthy images are mixed
    uniformly; augmentation and the healthy random boxes are drawn after ``repeat``, fresh every epoch.
    """
    records = RecordsPaths(records_dir)
    files = [records.pairs(split)] + ([records.healthy(split)] if cfg.use_healthy else [])
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"{f}: record not found (run scripts/make_tfrecords.py)")
    size = cfg.image_size
    resize = record_size(files[0]) != size
    sizes = tf.constant(nih_box_sizes(size), tf.int32) if cfg.use_healthy else None

    def prepare(raw, seeds):
        ex = parse_pair(raw)
        if resize:
            ex = resize_pair(ex, size)
        if cfg.augment:
            ex = augment_pair(ex, cfg.augmentation, seeds[0])
        image, mask = ex["image"], ex["mask"]
        if cfg.use_healthy:
            box_mask, _ = random_box_mask(sizes, size, seeds[1])
            mask = tf.cond(ex["source"] == b"healthy", lambda: box_mask, lambda: mask)
        return {"image": tf.ensure_shape(image, [size, size, 1]), "mask": tf.ensure_shape(mask, [size, size, 1])}

    ds = tf.data.TFRecordDataset([str(f) for f in files])
    ds = ds.shuffle(cfg.shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat()
    seeds = tf.data.Dataset.random(seed=seed + 1).batch(4).map(lambda s: tf.reshape(s, [2, 2]))
    ds = tf.data.Dataset.zip((ds, seeds)).map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(cfg.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


# -- StarGAN -----------------------------------------------------------------------------------------
_INDEX_FEATURES = {
    "image/id": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64, default_value=0),
}
_IMAGE_FEATURES = {"image/encoded": tf.io.FixedLenFeature([], tf.string), **_INDEX_FEATURES}


def domain_records(records_dir, split: str = "train") -> Tuple[str, str]:
    """Paths of the pair and healthy records of ``split``; clear error if one is missing."""
    records = RecordsPaths(records_dir)
    paths = (str(records.pairs(split)), str(records.healthy(split)))
    for p in paths:
        if not tf.io.gfile.exists(p):
            raise FileNotFoundError(f"{p}: record not found (StarGAN needs pair and healthy records; "
                                    f"run scripts/make_tfrecords.py)")
    return paths


def domain_index(paths: Sequence[str]) -> Tuple[np.ndarray, np.ndarray, Dict[int, int]]:
    """Scan records (ids and labels only) → (keep mask, labels, count per domain).

    An annotated image with several boxes has one pair record per box: we keep one record per
    (image id, label), so an image counts once per finding it shows, never once per box.
    Labels outside 0..N_DOMAINS-1 raise a ValueError naming the record file.
    """
    keep, labels, seen, counts = [], [], set(), {}
    for path in paths:
        ds = tf.data.TFRecordDataset(path).map(lambda s: tf.io.parse_single_example(s, _INDEX_FEATURES))
        try:
            for ex in ds.as_numpy_iterator():
                key = (ex["image/id"], int(ex["label"]))
                if not 0 <= key[1] < N_DOMAINS:
                    raise ValueError(f"{path}: image {key[0].decode()} has label {key[1]}, "
                                     f"expected a domain id in 0..{N_DOMAINS - 1}")
                keep.append(key not in seen)
                labels.append(key[1])
                if key not in seen:
                    seen.add(key)
                    counts[key[1]] = counts.get(key[1], 0) + 1
        except tf.errors.OpError as exc:
            raise ValueError(f"{path}: unreadable record file ({exc.message})") from None
    return np.asarray(keep, bool), np.asarray(labels, np.int64), counts


def decode_domain_example(serialized: tf.Tensor, image_size: int) -> Dict[str, tf.Tensor]:
    """Serialised pair/healthy Example → {"image": [S,S,1] in [-1,1] resized to image_size, "label", "image_id"}."""
    f = tf.io.parse_single_example(serialized, _IMAGE_FEATURES)
    img = tf.cast(tf.io.decode_png(f["image/encoded"], channels=1), tf.float32)
    img = tf.image.resize(img, [image_size, image_size], method="area", antialias=True)
    img = tf.ensure_shape(img / 127.5 - 1.0, [image_size, image_size, 1])
    return {"image": img, "label": f["label"], "image_id": f["image/id"]}


def stargan_dataset(records_dir, cfg: StarGANConfig, split: str = "train", seed: int = 0,
                    training: bool = True, batch_size: Optional[int] = None) -> tf.data.Dataset:
    """Batches of {"image", "label", "image_id"} from the 7 domains (no masks, no boxes).

    Domain 0 = the healthy record of ``split``, domains 1..6 = the finding labels of its pair record
    (deduplicated per image and label, see ``domain_index``). Images are resized to
    ``cfg.image_size``. ``training``: shuffle, repeat, random left-right flip if ``cfg.augment``
    (the official StarGAN augmentation), and drop the last partial batch.
    """
    paths = domain_records(records_dir, split)
    keep, _, counts = domain_index(paths)
    if not keep.any():
        raise ValueError(f"{records_dir}: no {split} images in {', '.join(paths)}")
    n = int(keep.sum())
    keep_t = tf.constant(keep)

    def kept(index, serialized):
        return tf.gather(keep_t, index)

    def record(index, serialized):
        return serialized

    ds = tf.data.TFRecordDataset(list(paths)).enumerate().filter(kept).map(record)
    if training:
        ds = ds.shuffle(min(n, 4096), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.map(lambda s: decode_domain_example(s, cfg.image_size), num_parallel_calls=tf.data.AUTOTUNE)
    if training and cfg.augment:
        ds = ds.map(lambda ex: {**ex, "image": tf.image.random_flip_left_right(ex["image"], seed=seed)},
                    num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size or cfg.batch_size, drop_remainder=training)
    return ds.prefetch(tf.data.AUTOTUNE)


def stargan_train_dataset(records_dir, cfg: StarGANConfig, seed: int = 0, split: str = "train") -> tf.data.Dataset:
    """Infinite shuffled batches {image, label} of the 7 domains for ``train_step``."""
    ds = stargan_dataset(records_dir, cfg, split=split, seed=seed, training=True)
    return ds.map(lambda b: {"image": b["image"], "label": b["label"]})
