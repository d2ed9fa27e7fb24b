"""How long a GAN run trains and at which learning rate: epochs → steps, constant-then-linear decay, resume.

Length: a Pix2Pix config with ``epochs`` trains ``ceil(epochs × steps_per_epoch)`` steps, where an epoch is
one pass over every training record the model streams: the annotated pairs for Pix2Pix, the annotated
pairs *and* the healthy images for Pix2Pix-N (its batches mix both uniformly). So both models see each
annotated pair ``epochs`` times and Pix2Pix-N takes (pairs + healthy) / pairs times as many steps. The
counts come from the RECORDS manifest when the run starts and are recorded in RUN/config.json.

Learning rate (both Pix2Pix variants and StarGAN): constant until ``decay_start_frac`` of the run, then
linear to 0 at its last step (pix2pix's 100 + 100 epochs, StarGAN's second-half decay). The schedule is a
function of the config, so a resumed run rebuilds the same one. A resume that changes the length
(``--steps``) re-plans only what is left, from the learning rate at the resume step, so it never jumps:
still constant → constant until ``decay_start_frac`` of the new length (or from now if that has passed),
then linear to 0; already decaying → linear from the current value to 0 at the new end; already at 0 →
stays 0. The steps already trained keep their knots in ``lr_knots``.

The schedule objects themselves (``PiecewiseLinear``, ``LinearDecay``, ``learning_rate_schedule(cfg)``)
live with the networks in ``cxr_keras.models.layers`` (models never import gan) and are re-exported here.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import tensorflow as tf

from cxr_keras.models.layers import (  # noqa: F401 (the schedule objects, re-exported)
    Knots, LinearDecay, PiecewiseLinear, default_knots, knots_of, learning_rate_schedule)
from cxr_keras.paths import RecordsPaths


def value_at(knots: Sequence[Sequence[float]], step: float) -> float:
    """The schedule's value at ``step`` (plain Python, for planning and checks; right-continuous at a jump)."""
    if step < knots[0][0]:
        return float(knots[0][1])
    for (x0, y0), (x1, y1) in zip(knots, knots[1:]):
        if step < x1:
            return float(y0 + (y1 - y0) * (step - x0) / (x1 - x0))
    return float(knots[-1][1])


def _between(a: Tuple[float, float], b: Tuple[float, float], c: Tuple[float, float]) -> bool:
    """True if knot ``b`` lies on the straight segment from ``a`` to ``c`` (so it changes nothing)."""
    if not a[0] < b[0] < c[0]:
        return False
    return math.isclose(b[1], a[1] + (c[1] - a[1]) * (b[0] - a[0]) / (c[0] - a[0]), rel_tol=1e-9, abs_tol=1e-15)


def _simplified(knots: List[Tuple[float, float]]) -> Knots:
    """Drop repeated knots and knots lying on the segment between their neighbours."""
    out: List[Tuple[float, float]] = []
    for k in knots:
        if out and out[-1] == k:
            continue
        if len(out) >= 2 and _between(out[-2], out[-1], k):
            out.pop()
        out.append(k)
    return tuple(out)


def resumed_config(cfg, step: int, steps: int):
    """``cfg`` of a run resumed at ``step`` with a new length ``steps``: the learning rate stays continuous.

    The knots before ``step`` are kept; from ``step`` on: constant (if it still was) until
    ``decay_start_frac × steps`` or ``step``, whichever is later, then linear to 0 at ``steps``; linear from
    the current value to 0 at ``steps`` if the decay had begun; 0 if it had ended. ``lr_knots`` is left empty
    when the result is the default schedule of the new length (a run resumed before its decay started).
    """
    new = dataclasses.replace(cfg, steps=steps)
    if steps == cfg.steps or step <= 0:
        return new
    old = knots_of(cfg)
    if step >= steps:  # nothing left to train: keep the schedule used so far for a later extension
        return dataclasses.replace(new, lr_knots=old)
    lr = value_at(old, step)
    if lr <= 0.0:
        print(f"warning: the learning rate reached 0 at step {step}; the steps up to {steps} keep it at 0 "
              f"(start a new run with more epochs to train longer)", file=sys.stderr)
    past = [k for k in old if k[0] < step] + [(float(step), lr)]
    if lr >= max(v for _, v in old):  # still at the base rate: decay over the new second half
        tail = [(max(cfg.decay_start_frac * steps, float(step)), lr), (float(steps), 0.0)]
    else:
        tail = [(float(steps), 0.0)]
    knots = _simplified(past + tail)
    plain = dataclasses.replace(new, lr_knots=())
    return plain if knots == _simplified(list(default_knots(plain))) else dataclasses.replace(new, lr_knots=knots)


# -- epochs → steps ----------------------------------------------------------------------------------
def record_counts(records_dir: os.PathLike, split: str = "train") -> Tuple[int, int]:
    """(annotated pair records, healthy records) of ``split``: from the RECORDS manifest, else counted."""
    paths = RecordsPaths(records_dir)
    written: Dict[str, int] = {}
    if paths.manifest.is_file():
        try:
            written = json.loads(paths.manifest.read_text()).get("records", {}) or {}
        except (OSError, ValueError):
            written = {}

    def count(path) -> int:
        if path.stem in written:
            return int(written[path.stem])
        if not path.is_file():
            return 0
        return sum(1 for _ in tf.data.TFRecordDataset(str(path)))

    return count(paths.pairs(split)), count(paths.healthy(split))


def steps_per_epoch(pairs: int, healthy: int, batch_size: int, use_healthy: bool) -> int:
    """Steps for one pass over the streamed records: the pairs, plus the healthy images for Pix2Pix-N."""
    return max(math.ceil((pairs + (healthy if use_healthy else 0)) / max(batch_size, 1)), 1)


def training_length(cfg, records_dir: os.PathLike, steps: Optional[int] = None):
    """(cfg with its ``steps`` set, what decided them) for a new run: ``steps`` if given, else
    ``ceil(epochs × steps_per_epoch)`` when the config has ``epochs``, else the config's ``steps``."""
    epochs = getattr(cfg, "epochs", None)
    if steps is not None or not epochs:
        return cfg, {"steps": int(cfg.steps), "rule": "--steps" if steps is not None else "config steps"}
    pairs, healthy = record_counts(records_dir)
    if pairs == 0:
        raise ValueError(f"{RecordsPaths(records_dir).pairs('train')}: no annotated training pairs to count "
                         f"epochs over (run scripts/make_tfrecords.py)")
    use_healthy = bool(getattr(cfg, "use_healthy", False))
    per_epoch = steps_per_epoch(pairs, healthy, cfg.batch_size, use_healthy)
    total = max(math.ceil(epochs * per_epoch), 1)
    rule = ("steps = ceil(epochs × ceil((pairs + healthy) / batch)): each pair and healthy image seen epochs times"
            if use_healthy else "steps = ceil(epochs × ceil(pairs / batch)): each pair seen epochs times")
    return dataclasses.replace(cfg, steps=total), {
        "epochs": epochs, "annotated_pairs": pairs, "healthy": healthy if use_healthy else 0,
        "batch_size": cfg.batch_size, "steps_per_epoch": per_epoch, "steps": total, "rule": rule}
