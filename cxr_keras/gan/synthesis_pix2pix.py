"""Pix2Pix(-N) synthesis: composites of the training annotations, each checked against its source.

Every synthetic image is a composite x̃ = x + G(x)·(1 − m) of one training annotation: the box pixels
are copied from the source, the rest is painted. Before an image is written its kept boxes are
compared with the source pixel for pixel (after the same resize / augment); an image that differs is
refused, never written. Output (SYN/): the images, the manifest (source of every image, its boxes,
the fidelity summary) and the TF OD detection record.
"""
from __future__ import annotations

import os
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from cxr_keras.config import SynthesisConfig
from cxr_keras.data.images import box_mask
from cxr_keras.gan import shards
from cxr_keras.gan.synthesis_common import SynthesisError, image_file, to_uint8, write_image, write_manifest
from cxr_keras.paths import RecordsPaths, SynPaths
from cxr_keras.records.augment import augment_pair
from cxr_keras.records.detection import DetectionItem, write_detection_records
from cxr_keras.records.pairs import parse_pair, resize_pair

FIDELITY_RULE = "every pixel of the mask and of every kept box equals the source exactly"


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


def load_pairs(path: os.PathLike, image_size: Optional[int] = None, annotated_only: bool = True) -> List[SourcePair]:
    """Read a pair record into numpy (resized like training when the sizes differ)."""
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


def check_record_size(path: os.PathLike, image_size: int, run_dir: os.PathLike) -> None:
    """Refuse a pair record of another image size than the run's generator: resized boxes and masks
    no longer match pixel for pixel, and the fidelity check would fail for reasons not the generator's."""
    try:
        first = next(iter(tf.data.TFRecordDataset(str(path)).take(1)), None)
    except tf.errors.OpError:
        return  # missing or corrupt: load_pairs says so
    size = None if first is None else int(parse_pair(first)["image"].shape[0])
    if size is not None and size != image_size:
        raise SynthesisError(f"{path}: the records are {size}x{size} px but the run in {run_dir} generates "
                             f"{image_size}x{image_size} px; use records made with make_tfrecords.py "
                             f"--image-size {image_size} (nothing was written)")


def kept_annotations(src: SourcePair, same_image: Sequence[SourcePair]) -> List[SourcePair]:
    """The annotations of the source image whose whole box lies inside this pair's mask."""
    kept = [src]
    size = src.mask.shape[0]
    for other in same_image:
        if other.ann_id != src.ann_id and src.mask[box_mask(other.box, size) > 0].all():
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
        region = box_mask(box, size) > 0
        if not mask[region].all():
            return f"kept box {list(map(float, box))} is not fully inside the mask"
        if diff[region].max() > 0:
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


def augment_source(src: SourcePair, cfg, seed: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray, Tuple[float, ...]]:
    """Reflect / rotate / crop a source like training does; returns uint8 image, box mask and box (pixels)."""
    size = src.image.shape[0]
    ex = {"image": tf.constant(src.image[:, :, None], tf.float32) / 127.5 - 1.0,
          "mask": tf.constant(src.mask[:, :, None], tf.float32)}
    out = augment_pair(ex, cfg, tf.constant(seed, tf.int64))
    ymin, xmin, ymax, xmax = (float(v) * size for v in out["box"].numpy())
    box = (xmin, ymin, xmax, ymax)
    # A rotated box is no longer axis-aligned: keep its whole bounding box, so the detection box
    # describes only kept (transformed-source) pixels.
    return to_uint8(out["image"].numpy()[:, :, 0]), box_mask(box, size), box


@dataclass
class Job:
    """One image to generate: its source, draw number and the (possibly augmented) input."""

    index: int
    src: SourcePair
    draw: int
    image: np.ndarray
    mask: np.ndarray
    kept: List[SourcePair]
    boxes: List[Sequence[float]]


@dataclass
class Tally:
    """What the manifest reports: written items, detection items, fidelity counts and failures."""

    items: List[Dict] = field(default_factory=list)
    det_items: List[DetectionItem] = field(default_factory=list)
    failures: List[Dict] = field(default_factory=list)
    checked: int = 0
    max_diff: int = 0


def make_job(index: int, src: SourcePair, draw: int, same_image: Sequence[SourcePair], augmentation,
             seed: int) -> Job:
    """The input of one image: the source as recorded, or augmented with (seed, index)."""
    if augmentation is not None:
        img, mask, own_box = augment_source(src, augmentation, (seed, index))
        return Job(index, src, draw, img, mask, [src], [own_box])
    kept = kept_annotations(src, same_image)
    return Job(index, src, draw, src.image, src.mask, kept, [k.box for k in kept])


def keep_or_refuse(job: Job, out: np.ndarray, augmented: bool, run_name: str, syn: SynPaths, tally: Tally) -> None:
    """Fidelity-check one generated image; write it (image, manifest item, detection item) or refuse it."""
    src = job.src
    name = f"{run_name}_{job.index:05d}_{Path(src.image_id).stem}_a{src.ann_id}_d{job.draw}.png"
    tally.checked += 1
    inside = job.mask > 0
    tally.max_diff = max(tally.max_diff, int(np.abs(out.astype(np.int16) - job.image.astype(np.int16))[inside].max()))
    reason = check_fidelity(out, job.image, job.mask, job.boxes)
    if reason is None and not augmented:  # also against the record's own decoded pixels
        reason = check_fidelity(out, src.image, src.mask, job.boxes)
    if reason is not None:
        tally.failures.append({"file": image_file(syn, name), "source_image": src.image_id, "reason": reason})
        print(f"fidelity check failed, not written: {name}: {reason}", file=sys.stderr)
        return
    png = write_image(syn, name, out)
    labels = [k.label for k in job.kept]
    tally.items.append({"file": image_file(syn, name), "finding": src.finding, "source_image": src.image_id,
                        "ann_ids": [k.ann_id for k in job.kept], "boxes": [list(map(float, b)) for b in job.boxes],
                        "labels": labels, "draw": job.draw})
    tally.det_items.append(DetectionItem(image=out, filename=name, boxes_xyxy=job.boxes, labels=labels,
                                         source_id=name, png=png))


def synthesize_pix2pix(run, records_dir, out_dir, *, count: Optional[int] = None, seed: int = 0,
                       augment: Optional[bool] = None, outputs_per_input: Optional[int] = None,
                       batch_size: int = 8, progress: bool = True, split: str = "train",
                       per_finding: Optional[int] = None, shard: Optional[shards.Shard] = None) -> Dict:
    """Write SYN/ from a loaded Pix2Pix(-N) run (``gan.runs.LoadedRun``): fidelity-checked composites.

    ``count`` images (default 688) cycle through the annotations in a seeded order, each source
    giving at most ``outputs_per_input`` dropout draws; ``per_finding`` is a StarGAN option.
    ``shard`` (I, N): only shard I's block of batches, for ``gan.shards.merge``.
    """
    if per_finding is not None:
        raise SynthesisError("--per-finding applies to StarGAN runs; use --count for Pix2Pix")
    defaults = SynthesisConfig()
    count = defaults.count if count is None else count
    augment = defaults.augment if augment is None else augment
    outputs_per_input = outputs_per_input or defaults.outputs_per_input
    syn = SynPaths(out_dir)
    check_record_size(RecordsPaths(records_dir).pairs(split), run.cfg.image_size, run.run_dir)
    sources = load_pairs(RecordsPaths(records_dir).pairs(split), run.cfg.image_size)
    by_image: Dict[str, List[SourcePair]] = defaultdict(list)
    for s in sources:
        by_image[s.image_id].append(s)
    jobs = plan_jobs(len(sources), count, outputs_per_input, seed)
    starts = shards.batch_starts(len(jobs), batch_size, shard)

    bar = tf.keras.utils.Progbar(sum(len(jobs[s:s + batch_size]) for s in starts), verbose=1 if progress else 0,
                                 unit_name="image")
    tally = Tally()
    augmentation = run.cfg.augmentation if augment else None
    for start in starts:
        tf.random.set_seed(shards.batch_seed(seed, start))  # dropout draws: from (seed, batch), in any shard
        chunk = [make_job(start + j, sources[si], draw, by_image[sources[si].image_id], augmentation, seed)
                 for j, (si, draw) in enumerate(jobs[start:start + batch_size])]
        y = tf.constant(np.stack([job.image for job in chunk])[..., None], tf.float32) / 127.5 - 1.0
        m = tf.constant(np.stack([job.mask for job in chunk])[..., None], tf.float32)
        out = to_uint8(run.model.generate(y, m, sample=True).numpy()[..., 0])
        for job, image in zip(chunk, out):
            keep_or_refuse(job, image, augment, run.name, syn, tally)
        bar.add(len(chunk))

    write_detection_records(syn.detection, tally.det_items)
    return write_manifest(syn, {
        "generator": run.name, "run": str(run.run_dir), "checkpoint": run.checkpoint, "step": run.step,
        "records": str(Path(records_dir)), "split": split, "image_size": run.cfg.image_size, "count": len(tally.items),
        "requested": count, "seed": seed, "augment": augment, "outputs_per_input": outputs_per_input,
        "items": tally.items,
        "fidelity": {"checked": tally.checked, "passed": tally.checked - len(tally.failures),
                     "failed": len(tally.failures), "max_abs_diff_inside_boxes": tally.max_diff,
                     "failures": tally.failures, "rule": FIDELITY_RULE},
        **shards.manifest_entry(shard, starts, len(jobs)),
    })
