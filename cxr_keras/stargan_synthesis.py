"""StarGAN synthetic set for the reader study: healthy test images translated into each pathology.

Unlike Pix2Pix, StarGAN keeps no box: it repaints the whole image in the target domain, so the
items carry no boxes and no detection record is written. Sources are healthy images of the split
(the test split by default, never seen in training), shuffled with the seed and used in turn
across findings, so with enough healthy images (150 for 25 × 6) every output has its own source.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf

from cxr_keras.config import FINDINGS, SynthesisConfig
from cxr_keras.io_utils import atomic_write_bytes, atomic_write_text


def load_healthy(path: Path, image_size: int) -> List[Dict]:
    """Healthy images of a record as {"image_id", "image" float [S,S,1] in [-1,1]} (resized)."""
    from cxr_keras.models.stargan import decode_domain_example
    from cxr_keras.synthesis import SynthesisError

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


def synthesize_stargan(run_dir, records_dir, out_dir, *, per_finding: Optional[int] = None,
                       count: Optional[int] = None, seed: int = 0, split: str = "test",
                       batch_size: int = 8, overwrite: bool = False, progress: bool = True,
                       checkpoint: Optional[str] = None, augment: bool = False,
                       outputs_per_input: Optional[int] = None) -> Dict:
    """Translate healthy ``split`` images of RECORDS into every finding with a StarGAN run → SYN/.

    ``per_finding`` images per pathology (default SynthesisConfig.stargan_per_finding = 25), or
    ``count`` in total. Images are written at the generator's size. ``augment`` and
    ``outputs_per_input`` are Pix2Pix options: refused / ignored here.
    """
    from cxr_keras import training
    from cxr_keras.models.stargan import DOMAINS
    from cxr_keras.synthesis import MANIFEST, SynthesisError

    if augment:
        raise SynthesisError("--augment applies to Pix2Pix sources only; StarGAN translates whole images")
    try:
        counts = per_finding_counts(len(FINDINGS), per_finding, count)
    except ValueError as exc:
        raise SynthesisError(str(exc)) from None
    run_dir, records_dir, out_dir = Path(run_dir), Path(records_dir), Path(out_dir)
    if (out_dir / MANIFEST).exists() and not overwrite:
        raise SynthesisError(f"{out_dir}: already holds a synthetic set; choose another --out or pass --overwrite")
    loaded = training.load_run(run_dir, checkpoint)
    if loaded.name != "stargan":
        raise SynthesisError(f"{run_dir}: a {loaded.name!r} run, not a StarGAN run")
    model = loaded.model
    size = loaded.cfg.image_size
    sources = load_healthy(records_dir / f"healthy_{split}.tfrecord", size)
    order = np.random.default_rng(seed).permutation(len(sources))

    jobs = []  # (source index, domain id, index within finding)
    k = 0
    for d, n in enumerate(counts, start=1):
        for i in range(n):
            jobs.append((int(order[k % len(sources)]), d, i))
            k += 1
    reused = k > len(sources)
    if reused:
        print(f"synthesize: {k} outputs from {len(sources)} healthy {split} images: sources are reused",
              file=sys.stderr)

    bar = tf.keras.utils.Progbar(len(jobs), verbose=1 if progress else 0, unit_name="image")
    items, agree = [], 0
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start:start + batch_size]
        x = tf.constant(np.stack([sources[si]["image"] for si, _, _ in chunk]), tf.float32)
        domains = tf.constant([d for _, d, _ in chunk], tf.int32)
        fake = model.translate(x, domains)
        predicted = np.argmax(model.classify(fake).numpy(), axis=1)
        out = np.clip(np.round((fake.numpy() + 1.0) * 127.5), 0, 255).astype(np.uint8)
        for j, (si, d, i) in enumerate(chunk):
            finding, src_id = DOMAINS[d], sources[si]["image_id"]
            name = f"stargan_{finding}_{i:03d}_{Path(src_id).stem}.png"
            atomic_write_bytes(out_dir / "images" / name, tf.io.encode_png(out[j]).numpy())
            agree += int(predicted[j] == d)
            items.append({"file": f"images/{name}", "finding": finding, "domain": d, "source_image": src_id,
                          "ann_ids": [], "boxes": [], "labels": [],
                          "classified_as": DOMAINS[int(predicted[j])]})
        bar.update(min(start + batch_size, len(jobs)))

    manifest = {
        "generator": "stargan", "run": str(run_dir), "checkpoint": loaded.checkpoint, "step": loaded.step,
        "records": str(records_dir), "split": split, "image_size": size, "count": len(items),
        "per_finding": dict(zip(FINDINGS, counts)), "seed": seed, "sources": len(sources),
        "sources_reused": reused, "items": items,
        # The critic's own classifier on the outputs: a cheap check that the target domain took.
        "domain_agreement": agree / len(items) if items else None,
        "fidelity": {"checked": 0, "passed": 0, "failed": 0, "failures": [],
                     "rule": "not applicable: StarGAN repaints the whole image (no box is kept)"},
    }
    atomic_write_text(out_dir / MANIFEST, json.dumps(manifest, indent=1))
    return manifest
