"""One training loop for every GAN of the registry: checkpoints, resume, TensorBoard, history, progress.

The step itself is the model's ``train_step`` compiled by Keras' ``make_train_function`` (a
``tf.function``, with XLA when the model was compiled with ``jit_compile=True``, and
``strategy.run`` under ``tf.distribute``), so ``fit`` and this loop share one code path. The loop
adds what ``fit`` lacks for long GAN runs: a step counter saved with the weights and optimizer
state, ``--resume``, Ctrl-C → checkpoint, and a hard stop on a non-finite loss that keeps the last
good checkpoint. Logged losses are the means of the model's ``metrics`` trackers over each log window.

RUN/ layout: ``cxr_keras.paths.RunPaths`` (config, checkpoints, TensorBoard logs, samples, history).
"""
from __future__ import annotations

import csv
import io
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import tensorflow as tf

from cxr_keras.data.images import encode_png
from cxr_keras.gan import distribute
from cxr_keras.gan.runs import (DivergedError, RunSetup, build, default_strategy, make_checkpoint,
                                resolve_run, start_run)
from cxr_keras.io_utils import atomic_write_bytes, atomic_write_text


@dataclass
class TrainResult:
    run_dir: Path
    step: int  # last completed step
    status: str  # "done" | "interrupted"
    checkpoint: Optional[str]
    history: List[Dict[str, float]] = field(default_factory=list)


# -- history, images ---------------------------------------------------------------------------------
def read_history(path: Path) -> List[Dict[str, float]]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def write_history(path: Path, rows: List[Dict[str, float]]) -> None:
    keys: List[str] = ["step"]
    for row in rows:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: (int(v) if k == "step" else f"{v:.6g}") for k, v in row.items()})
    atomic_write_text(path, buf.getvalue())


def image_grid(images: tf.Tensor) -> np.ndarray:
    """Stack a [B, H, W, 1] batch in [0, 1] vertically into one uint8 [B·H, W, 1] image."""
    arr = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
    arr = arr.reshape((-1,) + arr.shape[2:])
    return np.round(arr * 255.0).astype(np.uint8)


def first_replica_batch(batch):
    """A plain batch from a (possibly per-replica) distributed one."""
    return tf.nest.map_structure(
        lambda t: t.values[0] if hasattr(t, "values") else t, batch)


class _SigintFlag:
    """Turn Ctrl-C into a flag checked between steps (so the step counter and weights stay in sync)."""

    def __init__(self):
        self.hit = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.hit:  # second Ctrl-C: give up immediately
            raise KeyboardInterrupt
        self.hit = True
        print("\nCtrl-C: finishing this step and saving a checkpoint (press again to abort)", file=sys.stderr)

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


# -- the loop ----------------------------------------------------------------------------------------
class Trainer:
    """One run being trained: the model, its step counter and checkpoints, the data stream, the writers.

    ``restore()`` once, then ``run()`` calls ``step()`` until ``cfg.steps``, with ``log``, ``sample`` and
    ``save`` at their intervals.
    """

    def __init__(self, setup: RunSetup, strategy: Optional[tf.distribute.Strategy] = None, progress: bool = True):
        self.setup, self.paths, self.cfg = setup, setup.paths, setup.cfg
        self.strategy = strategy or default_strategy()
        self.chief = distribute.is_chief(self.strategy)  # the one process that writes files (multi-worker)
        self.model = build(setup.spec, self.cfg, self.strategy, setup.policy)
        self.counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.checkpoint = make_checkpoint(self.model, self.counter)
        # verified restore with fallback, no save over a later checkpoint (gan.checkpoints)
        self.manager = distribute.checkpoint_store(self.checkpoint, self.paths.checkpoints,
                                                   self.cfg.keep_checkpoints, self.strategy)
        self.progress, self.interactive = progress, sys.stdout.isatty()
        self.total = int(self.cfg.steps)
        self.current = 0
        self.window = 0  # steps since the last log row
        self.history: List[Dict[str, float]] = []

    def restore(self) -> int:
        """Restore the latest checkpoint of a resumed run (weights, optimizer state, step); return the step."""
        latest = self.manager.restore() if self.setup.resume else None
        if latest:
            print(f"resumed {latest} at step {int(self.counter.numpy())}", file=sys.stderr)
        elif self.setup.resume:
            print(f"{self.paths.root}: no checkpoint yet, starting from step 0", file=sys.stderr)
        self.current = int(self.counter.numpy())
        return self.current

    def _open(self) -> None:
        """The history so far, the data stream, the compiled step and the writers, from the current step."""
        self.history = [r for r in read_history(self.paths.history) if r.get("step", 0) <= self.current]
        # A different data seed after a resume: the shuffled stream does not repeat the first part.
        def stream():
            return self.setup.spec.dataset(self.setup.records_dir, self.cfg, self.setup.seed + self.current)

        self.iterator = iter(distribute.distribute_batches(self.strategy, stream()))  # replica r: r-th slice
        # The sample batch from a stream of its own: a second pass over the training one would share its
        # reshuffle seeds and make the training order after the first epoch depend on a prefetching race.
        self.sample_batch = first_replica_batch(next(iter(stream())))
        self.train_fn = self.model.make_train_function()
        self.writer = distribute.summary_writer(self.paths.logs, self.chief)
        shown = self.progress and self.interactive and self.chief
        self.bar = tf.keras.utils.Progbar(self.total, verbose=1 if shown else 0,
                                          unit_name="step")
        self.model.reset_metrics()
        self.t_log = time.perf_counter()

    def step(self) -> Dict[str, float]:
        """One compiled train step; its losses. A non-finite loss logs the window (that step included)
        and raises ``DivergedError`` without saving, so the last good checkpoint stays the latest."""
        values = {k: float(v) for k, v in self.train_fn(self.iterator).items()}
        self.window += 1
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if bad:
            self.log(self.current + 1)
            raise DivergedError(
                f"step {self.current + 1}: non-finite loss ({', '.join(f'{k}={values[k]}' for k in bad)}); "
                f"training stopped without saving. Last good checkpoint: {self.manager.latest_checkpoint or 'none'} "
                f"(resume from it with --resume, perhaps with a lower learning rate)")
        self.current += 1
        self.counter.assign(self.current)
        return values

    def log(self, n: int) -> None:
        """Row ``n`` of the history and TensorBoard: the loss means of the window, images/s; reset the window."""
        if not self.window:
            return
        now = time.perf_counter()
        row = {"step": n, **{m.name: float(m.result()) for m in self.model.metrics},
               "images_per_sec": self.window * self.cfg.batch_size / max(now - self.t_log, 1e-9)}
        with self.writer.as_default(step=n):
            for k, v in row.items():
                if k != "step":
                    tf.summary.scalar(k, v)
        self.history.append(row)
        if self.chief:
            write_history(self.paths.history, self.history)
        if self.progress and self.chief and not self.interactive:  # a plain line per log step for files and CI logs
            print(f"step {n}/{self.total} " + " ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "step"),
                  flush=True)
        self.model.reset_metrics()
        self.window, self.t_log = 0, now

    def sample(self, n: int) -> None:
        """The model's sample grid of the fixed batch: a TensorBoard image and ``RunPaths.sample(n)``."""
        if not self.chief:
            return
        grid = self.model.sample_images(self.sample_batch)
        with self.writer.as_default(step=n):
            tf.summary.image("x | composite | y", grid, max_outputs=min(4, int(grid.shape[0])))
        atomic_write_bytes(self.paths.sample(n), encode_png(image_grid(grid)))

    def save(self, n: int) -> None:
        self.manager.save(checkpoint_number=n)

    def _after_step(self, values: Dict[str, float]) -> None:
        n, cfg = self.current, self.cfg
        if n % cfg.log_every == 0 or n == self.total:
            self.log(n)
        if n % cfg.image_every == 0:
            self.sample(n)
        if n % cfg.checkpoint_every == 0 or n == self.total:
            self.save(n)
        if self.progress and self.interactive:
            self.bar.update(n, list(values.items()), finalize=n == self.total)

    def _interrupted(self) -> None:
        """Ctrl-C: log the partial window and checkpoint the current step (unless just saved)."""
        self.log(self.current)
        latest = self.manager.latest_checkpoint
        if latest is None or not latest.endswith(f"-{self.current}"):
            self.save(self.current)
        print(f"interrupted: saved {self.manager.latest_checkpoint} at step {self.current}", file=sys.stderr)

    def run(self, on_step: Optional[Callable[[int, Dict[str, float], Any], None]] = None) -> TrainResult:
        """Train up to ``cfg.steps`` (Ctrl-C stops cleanly between steps); ``on_step(step, losses, model)``."""
        self._open()
        status = "done"
        with _SigintFlag() as sigint:
            try:
                while self.current < self.total:
                    if sigint.hit:
                        status = "interrupted"
                        break
                    values = self.step()
                    self._after_step(values)
                    if on_step is not None:
                        on_step(self.current, values, self.model)
            finally:
                self.writer.flush()
        if status == "interrupted":
            self._interrupted()
        self.writer.close()
        return TrainResult(self.paths.root, self.current, status, self.manager.latest_checkpoint, self.history)


def train(
    model_name: Optional[str],
    records_dir: os.PathLike,
    run_dir: os.PathLike,
    cfg=None,
    *,
    steps: Optional[int] = None,
    resume: bool = False,
    seed: int = 0,
    preset: str = "paper",
    mixed_precision: bool = False,
    precision: Optional[str] = None,
    strategy=None,
    progress: bool = True,
    on_step: Optional[Callable[[int, Dict[str, float], Any], None]] = None,
    on_start: Optional[Callable[[int, Any], None]] = None,
) -> TrainResult:
    """Train ``model_name`` (registry) on RECORDS into RUN_DIR for ``steps`` total steps.

    A new run needs ``cfg`` (the stage dataclass) or takes it from ``preset``; ``resume=True``
    reads the run's config instead (only ``steps`` may change), restores the latest checkpoint
    (weights, optimizer state, step) and continues. ``on_step(step, losses, model)`` is called
    after every step (tests use it to simulate a crash); ``on_start(step, model)`` once after restore.
    ``precision``: ``gan.precision.PRECISIONS`` (None: float32, or the older ``mixed_precision``);
    ``strategy``: a ``tf.distribute.Strategy`` or a ``gan.distribute.STRATEGIES`` name (only the chief writes).
    """
    if strategy is None or isinstance(strategy, str):
        strategy = distribute.make_strategy(strategy or "auto")
    setup = resolve_run(model_name, records_dir, run_dir, cfg, steps=steps, resume=resume, seed=seed,
                        preset=preset, mixed_precision=mixed_precision, precision=precision)
    if distribute.is_chief(strategy):
        start_run(setup)
    trainer = Trainer(setup, strategy, progress)
    start = trainer.restore()
    if on_start is not None:
        on_start(start, trainer.model)
    return trainer.run(on_step)
