"""StarGAN synthetic set for the reader study: healthy test images translated into each pathology.

Unlike Pix2Pix, StarGAN keeps no box: it repaints the whole image in the target domain, so the
items carry no boxes and no detection record is written. Sources are healthy images of the split
(the test split by default, never seen in training), shuffled with the seed and used in turn
across findings, so with enough healthy images (150 for 25 × 6) every output has its own source.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf

from cxr_keras.config import FINDINGS, SynthesisConfig
from cxr_keras.gan import shards
from cxr_keras.gan.inputs import decode_domain_example
from cxr_keras.gan.synthesis_common import SynthesisError, image_file, to_uint8, write_image, write_manifest
from cxr_keras.models.stargan import DOMAINS
from cxr_keras.paths import RecordsPaths, SynPaths


def load_healthy(path: Path, image_size: int) -> List[Dict]:
    """Healthy images of a record as {"image_id", "image" float [S,S,1] in [-1,1]} (resized)."""
    if not path.is_file():
        raise SynthesisError(f"{path}: healthy record not found (run scripts/make_tfrecords.py)")
    out = []
    try:
        for raw in tf.data.TFRecordDataset(str(path)):
            ex = decode_domain_example(raw, image_size)
            out.append({"image_id": ex["image_id"].numpy().decode(), "image": ex["image"].numpy()})
    except tf.errors.OpError as exc:
        raise SynthesisError(f"{path}: unreadable record ({exc.message})") from None
    if not out:
        raise SynthesisError(f"{path}: no healthy images to translate")
    return out


def per_finding_counts(n_findings: int, per_finding: Optional[int], count: Optional[int]) -> List[int]:
    """Images per finding: ``per_finding`` each, or ``count`` spread evenly (earlier findings +1)."""
    if per_finding is not None and count is not None:
        raise ValueError("give per_finding or count, not both")
    if count is not None:
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        return [count // n_findings + (k < count % n_findings) for k in range(n_findings)]
    per_finding = SynthesisConfig().stargan_per_finding if per_finding is None else per_finding
    if per_finding < 0:
        raise ValueError(f"per_finding must be >= 0, got {per_finding}")
    return [per_finding] * n_findings


def plan_translations(counts: List[int], n_sources: int, seed: int) -> List[Tuple[int, int, int]]:
    """(source index, domain id, index within finding) per output: shuffled sources used in turn."""
    order = np.random.default_rng(seed).permutation(n_sources)
    jobs = []
    for d, n in enumerate(counts, start=1):
        for i in range(n):
            jobs.append((int(order[len(jobs) % n_sources]), d, i))
    return jobs


def synthesize_stargan(run, records_dir, out_dir, *, per_finding: Optional[int] = None,
                       count: Optional[int] = None, seed: int = 0, split: str = "test",
                       batch_size: int = 8, progress: bool = True, augment: bool = False,
                       outputs_per_input: Optional[int] = None, shard: Optional[shards.Shard] = None) -> Dict:
    """Translate healthy ``split`` images of RECORDS into every finding with a loaded StarGAN run → SYN/.

    ``run`` is a ``gan.runs.LoadedRun``. ``per_finding`` images per pathology (default
    SynthesisConfig.stargan_per_finding = 25), or ``count`` in total. Images are written at the
    generator's size. ``augment`` and ``outputs_per_input`` are Pix2Pix options: refused / ignored here.
    ``shard`` (I, N): only shard I's block of batches, for ``gan.shards.merge``.
    """
    if augment:
        raise SynthesisError("--augment applies to Pix2Pix sources only; StarGAN translates whole images")
    try:
        counts = per_finding_counts(len(FINDINGS), per_finding, count)
    except ValueError as exc:
        raise SynthesisError(str(exc)) from None
    if run.name != "stargan":
        raise SynthesisError(f"{run.run_dir}: a {run.name!r} run, not a StarGAN run")
    syn = SynPaths(out_dir)
    sources = load_healthy(RecordsPaths(records_dir).healthy(split), run.cfg.image_size)
    jobs = plan_translations(counts, len(sources), seed)
    reused = len(jobs) > len(sources)
    if reused:
        print(f"synthesize: {len(jobs)} outputs from {len(sources)} healthy {split} images: sources are reused",
              file=sys.stderr)

    starts = shards.batch_starts(len(jobs), batch_size, shard)
    bar = tf.keras.utils.Progbar(sum(len(jobs[s:s + batch_size]) for s in starts), verbose=1 if progress else 0,
                                 unit_name="image")
    items, agree = [], 0
    for start in starts:
        chunk = jobs[start:start + batch_size]
        x = tf.constant(np.stack([sources[si]["image"] for si, _, _ in chunk]), tf.float32)
        fake = run.model.translate(x, tf.constant([d for _, d, _ in chunk], tf.int32))
        predicted = np.argmax(run.model.classify(fake).numpy(), axis=1)
        out = to_uint8(fake.numpy())
        for j, (si, d, i) in enumerate(chunk):
            finding, src_id = DOMAINS[d], sources[si]["image_id"]
            name = f"stargan_{finding}_{i:03d}_{Path(src_id).stem}.png"
            write_image(syn, name, out[j])
            agree += int(predicted[j] == d)
            items.append({"file": image_file(syn, name), "finding": finding, "domain": d, "source_image": src_id,
                          "ann_ids": [], "boxes": [], "labels": [], "classified_as": DOMAINS[int(predicted[j])]})
        bar.add(len(chunk))

    return write_manifest(syn, {
        "generator": "stargan", "run": str(run.run_dir), "checkpoint": run.checkpoint, "step": run.step,
        "records": str(Path(records_dir)), "split": split, "image_size": run.cfg.image_size, "count": len(items),
        "per_finding": dict(zip(FINDINGS, counts)), "seed": seed, "sources": len(sources),
        "sources_reused": reused, "items": items,
        # The critic's own classifier on the outputs: a cheap check that the target domain took.
        "domain_agreement": agree / len(items) if items else None,
        "fidelity": {"checked": 0, "passed": 0, "failed": 0, "failures": [],
                     "rule": "not applicable: StarGAN repaints the whole image (no box is kept)"},
        **shards.manifest_entry(shard, starts, len(jobs)),
    })
