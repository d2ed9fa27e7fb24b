"""The validation split that chooses checkpoints without looking at the test set.

A seeded, image-level share of the real training record (``det_train``) is held out: the detectors
train on the rest (``det_fit``) and every in-window checkpoint is also scored on the held-out images
(``det_val``); Table 2 then takes, per column, the checkpoint with the best validation total. The
synthetic sets are built from training images, so a synthetic image whose source image or pasted
lesion comes from a held-out image is left out of the synthetic training record as well (otherwise
its lesion pixels would be in the training data). The split is written next to the configs and
recorded in ``val_split.json`` (image names, seed, share, what was left out of each set).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Sequence, Set, Union

import numpy as np

from cxr_keras.io_utils import atomic_path, atomic_write_text, read_json
from cxr_keras.paths import RecordsPaths, SynPaths

PathLike = Union[str, os.PathLike]
FIT_RECORD = "det_fit.tfrecord"  # det_train minus the held-out images
VAL_RECORD = "det_val.tfrecord"
SPLIT_JSON = "val_split.json"
VAL_NAME = "val"  # eval_input_reader name of the validation record in a pipeline config


@dataclass
class ValidationSplit:
    """Where the fit / validation records of one configs folder are, and the synthetic sets to use."""

    fit: Path
    val: Path
    val_images: List[str]
    synthetic: Dict[str, Path] = field(default_factory=dict)  # name -> filtered detection record


def _raw_examples(record: PathLike) -> List[bytes]:
    import tensorflow as tf

    return [raw.numpy() for raw in tf.data.TFRecordDataset(str(record))]


def _example_info(raw: bytes):
    """(file name, labels) of a serialised OD example, without decoding its image."""
    import tensorflow as tf

    feature = tf.train.Example.FromString(raw).features.feature
    name = feature["image/filename"].bytes_list.value
    labels = list(feature["image/object/class/label"].int64_list.value)
    return (name[0].decode() if name else ""), labels


def _write_raw(path: Path, examples: Sequence[bytes]) -> int:
    import tensorflow as tf

    with atomic_path(path) as tmp:
        with tf.io.TFRecordWriter(str(tmp)) as writer:
            for raw in examples:
                writer.write(raw)
    return len(examples)


def choose_validation(names: Sequence[str], labels: Sequence[Sequence[int]], fraction: float,
                      seed: int) -> Set[str]:
    """Seeded image-level choice of ``fraction`` of the images, stratified by each image's first
    finding (so every finding keeps training and validation images when it has enough)."""
    if not 0 < fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    by_label: Dict[int, List[str]] = {}
    for name, labs in zip(names, labels):
        by_label.setdefault(int(labs[0]) if len(labs) else 0, []).append(name)
    chosen: Set[str] = set()
    for label in sorted(by_label):
        group = sorted(by_label[label])
        k = int(round(fraction * len(group)))
        chosen.update(rng.permutation(group)[:k].tolist())
    if not chosen and len(names) > 1:
        chosen.add(sorted(names)[int(rng.integers(len(names)))])
    if len(chosen) >= len(set(names)):
        raise ValueError(f"val_fraction {fraction} leaves no training image out of {len(names)}")
    return chosen


def _ann_images(records: RecordsPaths) -> Dict[int, str]:
    """ann_id -> image of the RECORDS manifest ({} when there is none, e.g. hand-made records)."""
    if not records.manifest.is_file():
        return {}
    data = read_json(records.manifest, ValueError, what=records.manifest.name)
    return {int(a["ann_id"]): str(a["image"]) for a in data.get("annotations", [])}


def synthetic_sources(syn_dir: PathLike, ann_images: Mapping[int, str]) -> Dict[str, Set[str]]:
    """Synthetic file name -> the real images it was made from (source image, pasted lesions)."""
    manifest = SynPaths(syn_dir).manifest
    if not manifest.is_file():
        return {}
    data = read_json(manifest, ValueError, what=manifest.name)
    out = {}
    for item in data.get("items", []):
        images = {str(item["source_image"])} if item.get("source_image") else set()
        images |= {ann_images[int(a)] for a in item.get("ann_ids", []) if int(a) in ann_images}
        out[Path(str(item.get("file", ""))).name] = images
    return out


def carve_validation(records: RecordsPaths, out_dir: PathLike, synthetic: Mapping[str, PathLike],
                     synthetic_records: Mapping[str, Path], fraction: float,
                     seed: int = 0) -> ValidationSplit:
    """Write ``OUT/det_fit``, ``OUT/det_val``, one filtered record per synthetic set and
    ``OUT/val_split.json``; return where they are."""
    out_dir = Path(out_dir)
    raws = _raw_examples(records.det("train"))
    infos = [_example_info(r) for r in raws]
    names = [n for n, _ in infos]
    if len(set(names)) != len(names) or "" in names:
        raise ValueError(f"{records.det('train')}: image/filename must be set and unique per example")
    val = choose_validation(names, [labs for _, labs in infos], fraction, seed)
    fit_path, val_path = out_dir / FIT_RECORD, out_dir / VAL_RECORD
    _write_raw(fit_path, [r for r, n in zip(raws, names) if n not in val])
    _write_raw(val_path, [r for r, n in zip(raws, names) if n in val])
    ann_images = _ann_images(records)
    summary = {}
    for name, syn_dir in synthetic.items():
        sources = synthetic_sources(syn_dir, ann_images)
        syn_raws = _raw_examples(synthetic_records[name])
        keep = [r for r in syn_raws if not (sources.get(_example_info(r)[0], set()) & val)]
        if not keep:
            raise ValueError(f"{synthetic_records[name]}: every synthetic image comes from a held-out image")
        _write_raw(out_dir / f"{name}_fit.tfrecord", keep)
        summary[name] = {"examples": len(syn_raws), "kept": len(keep),
                         "sources_known": bool(sources)}
    atomic_write_text(out_dir / SPLIT_JSON, json.dumps({
        "train_record": str(records.det("train").resolve()), "fraction": fraction, "seed": seed,
        "images": {"fit": len(names) - len(val), "val": len(val)},
        "val_images": sorted(val), "synthetic": summary}, indent=1))
    return ValidationSplit(fit_path, val_path, sorted(val),
                           {n: out_dir / f"{n}_fit.tfrecord" for n in synthetic})
