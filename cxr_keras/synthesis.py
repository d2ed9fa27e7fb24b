"""Synthesize augmented training images with a trained GAN and check that the pathology is untouched.

``synthesize(run_dir, records_dir, out_dir, ...)`` dispatches on the run's model (registry). For the
Pix2Pix variants every synthetic image is a composite x̃ = x + G(x)·(1 − m) of one training
annotation: the box pixels are copied from the source, the rest is painted. Before an image is
written its kept boxes are compared with the source pixel for pixel (after the same resize / augment);
an image that differs is refused, never written. Output (docs/interfaces.md, SYN/): images/*.png,
manifest.json (source of every image, its boxes, the fidelity summary) and detection.tfrecord.
"""
from __future__ import annotations

import json
import os
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from cxr_keras.config import SynthesisConfig
from cxr_keras.io_utils import atomic_write_bytes, atomic_write_text

MANIFEST = "manifest.json"
DETECTION = "detection.tfrecord"


class SynthesisError(RuntimeError):
    """Synthesis cannot run (bad run, records or options; explained in the message)."""


@dataclass
class SourcePair:
    """One annotation of a pair record, decoded to numpy at the generator's size."""

    image_id: str
    ann_id: int
    label: int
    finding: str
    image: np.ndarray  # uint8 [S, S] (after resize to the generator's size)
    mask: np.ndarray  # uint8 [S, S] in {0, 1}
    box: Tuple[float, float, float, float]  # xmin, ymin, xmax, ymax in S×S pixels


def to_uint8(images) -> np.ndarray:
    """[-1, 1] floats → uint8 (exact inverse of the records' u / 127.5 − 1 for unchanged pixels)."""
    return np.clip(np.round((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def load_pairs(path: os.PathLike, image_size: Optional[int] = None, annotated_only: bool = True) -> List[SourcePair]:
    """Read a pair record into numpy (resized like training when the sizes differ)."""
    from cxr_keras.records.pairs import parse_pair, resize_pair

    path = Path(path)
    if not path.is_file():
        raise SynthesisError(f"{path}: pair record not found (run scripts/make_tfrecords.py)")
    out = []
    try:
        for raw in tf.data.TFRecordDataset(str(path)):
            ex = parse_pair(raw)
            if annotated_only and ex["source"].numpy() == b"healthy":
                continue
            size = int(ex["image"].shape[0])
            if image_size is not None and size != image_size:
                ex = resize_pair(ex, image_size)
                size = image_size
            ymin, xmin, ymax, xmax = (float(v) * size for v in ex["box"].numpy())
            out.append(SourcePair(
                image_id=ex["image_id"].numpy().decode(), ann_id=int(ex["ann_id"]), label=int(ex["label"]),
                finding=ex["finding"].numpy().decode(), image=to_uint8(ex["image"].numpy()[:, :, 0]),
                mask=(ex["mask"].numpy()[:, :, 0] > 0.5).astype(np.uint8), box=(xmin, ymin, xmax, ymax)))
    except tf.errors.DataLossError as exc:
        raise SynthesisError(f"{path}: corrupt record ({exc.message})") from None
    if not out:
        raise SynthesisError(f"{path}: no annotated pairs")
    return out


def box_region(box_xyxy: Sequence[float], size: int) -> Tuple[int, int, int, int]:
    """Pixel rectangle (x0, y0, x1, y1) a box touches: the rule of ``data.images.box_mask``."""
    xmin, ymin, xmax, ymax = box_xyxy
    x0 = int(np.clip(np.floor(xmin), 0, size - 1))
    y0 = int(np.clip(np.floor(ymin), 0, size - 1))
    x1 = int(np.clip(np.ceil(xmax), x0 + 1, size))
    y1 = int(np.clip(np.ceil(ymax), y0 + 1, size))
    return x0, y0, x1, y1


def kept_annotations(src: SourcePair, same_image: Sequence[SourcePair]) -> List[SourcePair]:
    """The annotations of the source image whose whole box lies inside this pair's mask."""
    kept = [src]
    size = src.mask.shape[0]
    for other in same_image:
        if other.ann_id == src.ann_id:
            continue
        x0, y0, x1, y1 = box_region(other.box, size)
        if src.mask[y0:y1, x0:x1].all():
            kept.append(other)
    return kept


def check_fidelity(synthetic: np.ndarray, reference: np.ndarray, mask: np.ndarray,
                   boxes: Sequence[Sequence[float]]) -> Optional[str]:
    """None if every mask pixel and every kept box equals the reference exactly, else the reason."""
    size = mask.shape[0]
    inside = mask > 0
    if not inside.any():
        return "empty mask"
    diff = np.abs(synthetic.astype(np.int16) - reference.astype(np.int16))
    if diff[inside].max() > 0:
        return f"{int((diff[inside] > 0).sum())} mask pixels differ from the source (max {int(diff[inside].max())})"
    for box in boxes:
        x0, y0, x1, y1 = box_region(box, size)
        if not mask[y0:y1, x0:x1].all():
            return f"kept box {list(map(float, box))} is not fully inside the mask"
        if diff[y0:y1, x0:x1].max() > 0:
            return f"kept box {list(map(float, box))} differs from the source"
    return None


def plan_jobs(n_sources: int, count: int, outputs_per_input: int, seed: int) -> List[Tuple[int, int]]:
    """(source index, draw number) for ``count`` images: every source once, then a second draw, ..."""
    if count < 0:
        raise SynthesisError(f"count must be >= 0, got {count}")
    if count > n_sources * outputs_per_input:
        raise SynthesisError(f"count {count} exceeds {n_sources} training annotations × "
                             f"{outputs_per_input} outputs per input; raise --outputs-per-input")
    order = np.random.default_rng(seed).permutation(n_sources)
    return [(int(order[i % n_sources]), i // n_sources) for i in range(count)]


def _augment(src: SourcePair, cfg, seed: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray, Tuple[float, ...]]:
    """Reflect / rotate / crop a source like training does; returns uint8 image, box mask and box (pixels)."""
    from cxr_keras.records.augment import augment_pair

    size = src.image.shape[0]
    ex = {"image": tf.constant(src.image[:, :, None], tf.float32) / 127.5 - 1.0,
          "mask": tf.constant(src.mask[:, :, None], tf.float32)}
    out = augment_pair(ex, cfg, tf.constant(seed, tf.int64))
    ymin, xmin, ymax, xmax = (float(v) * size for v in out["box"].numpy())
    box = (xmin, ymin, xmax, ymax)
    # A rotated box is no longer axis-aligned: keep its whole bounding box, so the detection box
    # describes only kept (transformed-source) pixels.
    x0, y0, x1, y1 = box_region(box, size)
    mask = np.zeros((size, size), np.uint8)
    mask[y0:y1, x0:x1] = 1
    return to_uint8(out["image"].numpy()[:, :, 0]), mask, box


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if (out_dir / MANIFEST).exists() and not overwrite:
        raise SynthesisError(f"{out_dir}: already holds a synthetic set; choose another --out or pass --overwrite")


def synthesize_pix2pix(run_dir, records_dir, out_dir, *, count: Optional[int] = None, seed: int = 0,
                       augment: Optional[bool] = None, outputs_per_input: Optional[int] = None,
                       batch_size: int = 8, overwrite: bool = False, progress: bool = True,
                       checkpoint: Optional[str] = None, split: str = "train",
                       per_finding: Optional[int] = None) -> Dict:
    """Write SYN/ from a Pix2Pix(-N) run: composites of the training annotations, fidelity-checked.

    ``count`` images (default 688) cycle through the annotations in a seeded order, each source
    giving at most ``outputs_per_input`` dropout draws; ``per_finding`` is a StarGAN option.
    """
    if per_finding is not None:
        raise SynthesisError("--per-finding applies to StarGAN runs; use --count for Pix2Pix")
    from cxr_keras import training
    from cxr_keras.models.pix2pix import Pix2Pix
    from cxr_keras.records.detection import DetectionItem, write_detection_records

    defaults = SynthesisConfig()
    count = defaults.count if count is None else count
    augment = defaults.augment if augment is None else augment
    outputs_per_input = outputs_per_input or defaults.outputs_per_input
    run_dir, records_dir, out_dir = Path(run_dir), Path(records_dir), Path(out_dir)
    _check_out_dir(out_dir, overwrite)
    loaded = training.load_run(run_dir, checkpoint)
    model: Pix2Pix = loaded.model
    size = loaded.cfg.image_size
    sources = load_pairs(records_dir / f"pairs_{split}.tfrecord", size)
    by_image: Dict[str, List[SourcePair]] = defaultdict(list)
    for s in sources:
        by_image[s.image_id].append(s)
    jobs = plan_jobs(len(sources), count, outputs_per_input, seed)
    tf.random.set_seed(seed)  # dropout draws are reproducible for a given seed

    bar = tf.keras.utils.Progbar(len(jobs), verbose=1 if progress else 0, unit_name="image")
    items, det_items, failures = [], [], []
    checked = max_diff = 0
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start:start + batch_size]
        images, masks, boxes_list, kept_list = [], [], [], []
        for j, (si, draw) in enumerate(chunk):
            src = sources[si]
            if augment:
                img, mask, own_box = _augment(src, loaded.cfg.augmentation, (seed, start + j))
                kept, boxes = [src], [own_box]
            else:
                img, mask = src.image, src.mask
                kept = kept_annotations(src, by_image[src.image_id])
                boxes = [k.box for k in kept]
            images.append(img)
            masks.append(mask)
            boxes_list.append(boxes)
            kept_list.append(kept)
        y = tf.constant(np.stack(images)[..., None], tf.float32) / 127.5 - 1.0
        m = tf.constant(np.stack(masks)[..., None], tf.float32)
        out = to_uint8(model.generate(y, m, sample=True).numpy()[..., 0])
        for j, (si, draw) in enumerate(chunk):
            src, kept, boxes = sources[si], kept_list[j], boxes_list[j]
            index = start + j
            name = f"{loaded.name}_{index:05d}_{Path(src.image_id).stem}_a{src.ann_id}_d{draw}.png"
            checked += 1
            inside = masks[j] > 0
            max_diff = max(max_diff, int(np.abs(out[j].astype(np.int16) - images[j].astype(np.int16))[inside].max()))
            reason = check_fidelity(out[j], images[j], masks[j], boxes)
            if reason is None and not augment:  # also against the record's own decoded pixels
                reason = check_fidelity(out[j], src.image, src.mask, boxes)
            if reason is not None:
                failures.append({"file": f"images/{name}", "source_image": src.image_id, "reason": reason})
                print(f"fidelity check failed, not written: {name}: {reason}", file=sys.stderr)
                continue
            png = tf.io.encode_png(out[j][..., None]).numpy()
            atomic_write_bytes(out_dir / "images" / name, png)
            labels = [k.label for k in kept]
            items.append({"file": f"images/{name}", "finding": src.finding, "source_image": src.image_id,
                          "ann_ids": [k.ann_id for k in kept], "boxes": [list(map(float, b)) for b in boxes],
                          "labels": labels, "draw": draw})
            det_items.append(DetectionItem(image=out[j], filename=name, boxes_xyxy=boxes, labels=labels,
                                           source_id=name, png=png))
        bar.update(min(start + batch_size, len(jobs)))

    write_detection_records(out_dir / DETECTION, det_items)
    manifest = {
        "generator": loaded.name, "run": str(run_dir), "checkpoint": loaded.checkpoint, "step": loaded.step,
        "records": str(records_dir), "split": split, "image_size": size, "count": len(items),
        "requested": count, "seed": seed, "augment": augment, "outputs_per_input": outputs_per_input,
        "items": items,
        "fidelity": {"checked": checked, "passed": checked - len(failures), "failed": len(failures),
                     "max_abs_diff_inside_boxes": max_diff, "failures": failures,
                     "rule": "every pixel of the mask and of every kept box equals the source exactly"},
    }
    atomic_write_text(out_dir / MANIFEST, json.dumps(manifest, indent=1))
    return manifest


def synthesize(run_dir, records_dir, out_dir, **options) -> Dict:
    """Dispatch on the run's model (RUN/config.json) to its registered synthesize function."""
    from cxr_keras import training
    from cxr_keras.models import registry

    info = training.read_run_config(run_dir)
    return registry.get(info["model"]).synthesize(run_dir, records_dir, out_dir, **options)
