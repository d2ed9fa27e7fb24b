"""One training loop for every GAN of the registry: checkpoints, resume, TensorBoard, history, progress.

The step itself is the model's ``train_step`` compiled by Keras' ``make_train_function`` (a
``tf.function``, with XLA when the model was compiled with ``jit_compile=True``, and
``strategy.run`` under ``tf.distribute``), so ``fit`` and this loop share one code path. The loop
adds what ``fit`` lacks for long GAN runs: a step counter saved with the weights and optimizer
state, ``--resume``, Ctrl-C → checkpoint, and a hard stop on a non-finite loss that keeps the last
good checkpoint.

RUN_DIR layout: config.json, checkpoints/, logs/ (TensorBoard), samples/*.png, history.csv.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import math
import os
import signal
import sys
import threading
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import numpy as np
import tensorflow as tf

from cxr_keras.io_utils import atomic_write_bytes, atomic_write_text, read_json
from cxr_keras.models import registry

CONFIG_FILE = "config.json"
HISTORY_FILE = "history.csv"
CHECKPOINT_DIR = "checkpoints"
LOG_DIR = "logs"
SAMPLES_DIR = "samples"


class TrainingError(RuntimeError):
    """Training cannot start or continue (explained in the message)."""


class RunExistsError(TrainingError):
    """The output folder already holds a run and ``resume`` was not asked for."""


class DivergedError(TrainingError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainResult:
    run_dir: Path
    step: int  # last completed step
    status: str  # "done" | "interrupted"
    checkpoint: Optional[str]
    history: List[Dict[str, float]] = field(default_factory=list)


# -- configs -----------------------------------------------------------------------------------------
def config_from_dict(cls: type, data: Dict[str, Any]):
    """Rebuild a (possibly nested) config dataclass from its ``asdict`` form (lists → tuples)."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    names = {f.name for f in dataclasses.fields(cls)}
    for key, value in data.items():
        if key not in names:
            continue  # a field removed since the run was written: ignore it
        hint = hints.get(key)
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = config_from_dict(hint, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


def is_run(run_dir: os.PathLike) -> bool:
    """True if ``run_dir`` holds a run worth keeping: at least one checkpoint.

    A folder with only a config.json (killed before its first checkpoint) is simply started over.
    """
    return tf.train.latest_checkpoint(str(Path(run_dir) / CHECKPOINT_DIR)) is not None


def read_run_config(run_dir: os.PathLike) -> Dict[str, Any]:
    """RUN/config.json as a dict, with ``cfg`` rebuilt as the model's config dataclass."""
    path = Path(run_dir) / CONFIG_FILE
    info = read_json(path, TrainingError, f"not found; {run_dir} is not a training run (scripts/train_gan.py)")
    for key in ("model", "config"):
        if key not in info:
            raise TrainingError(f"{path}: missing {key!r}")
    spec = registry.get(info["model"])
    info["cfg"] = config_from_dict(spec.config_class, info["config"])
    return info


def write_run_config(run_dir: Path, info: Dict[str, Any]) -> None:
    data = {k: v for k, v in info.items() if k != "cfg"}
    data["config"] = dataclasses.asdict(info["cfg"])
    atomic_write_text(run_dir / CONFIG_FILE, json.dumps(data, indent=1))


# -- environment -------------------------------------------------------------------------------------
def default_strategy() -> tf.distribute.Strategy:
    """MirroredStrategy when several GPUs are visible, else the default (single-device) strategy."""
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def mixed_precision_policy() -> str:
    """``mixed_float16`` on GPU, ``mixed_bfloat16`` on CPU."""
    return "mixed_float16" if tf.config.list_logical_devices("GPU") else "mixed_bfloat16"


@contextlib.contextmanager
def dtype_policy(enabled: bool) -> Iterator[None]:
    """Build layers under a mixed-precision policy, then restore the previous global policy."""
    previous = tf.keras.mixed_precision.global_policy()
    if enabled:
        tf.keras.mixed_precision.set_global_policy(mixed_precision_policy())
    try:
        yield
    finally:
        tf.keras.mixed_precision.set_global_policy(previous)


def build(spec: registry.ModelSpec, cfg, strategy=None, mixed_precision: bool = False):
    with dtype_policy(mixed_precision):
        return spec.build(cfg, strategy or default_strategy())


def make_checkpoint(model, step: tf.Variable) -> tf.train.Checkpoint:
    return tf.train.Checkpoint(step=step, **model.checkpoint_items())


@dataclass
class LoadedRun:
    model: Any
    cfg: Any
    name: str
    step: int
    checkpoint: str
    info: Dict[str, Any]


def load_run(run_dir: os.PathLike, checkpoint: Optional[str] = None, strategy=None) -> LoadedRun:
    """Rebuild the model of a run and restore a checkpoint (the latest by default)."""
    run_dir = Path(run_dir)
    info = read_run_config(run_dir)
    spec = registry.get(info["model"])
    ckpt_path = checkpoint or tf.train.latest_checkpoint(str(run_dir / CHECKPOINT_DIR))
    if ckpt_path is None:
        raise TrainingError(f"{run_dir / CHECKPOINT_DIR}: no checkpoint (train first with scripts/train_gan.py)")
    model = build(spec, info["cfg"], strategy, info.get("mixed_precision", False))
    step = tf.Variable(0, dtype=tf.int64, trainable=False)
    make_checkpoint(model, step).restore(ckpt_path).expect_partial()
    return LoadedRun(model, info["cfg"], info["model"], int(step.numpy()), ckpt_path, info)


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
    strategy: Optional[tf.distribute.Strategy] = None,
    progress: bool = True,
    on_step: Optional[Callable[[int, Dict[str, float], Any], None]] = None,
    on_start: Optional[Callable[[int, Any], None]] = None,
) -> TrainResult:
    """Train ``model_name`` (registry) on RECORDS into RUN_DIR for ``steps`` total steps.

    A new run needs ``cfg`` (the stage dataclass) or takes it from ``preset``; ``resume=True``
    reads RUN_DIR/config.json instead (only ``steps`` may change), restores the latest checkpoint
    (weights, optimizer state, step) and continues. ``on_step(step, losses, model)`` is called
    after every step (tests use it to simulate a crash); ``on_start(step, model)`` once after restore.
    """
    run_dir = Path(run_dir)
    records_dir = Path(records_dir)
    if resume:
        info = read_run_config(run_dir)
        if model_name is not None and model_name != info["model"]:
            raise TrainingError(f"{run_dir}: this run trains {info['model']!r}, not {model_name!r}")
        if steps is not None:
            info["cfg"] = dataclasses.replace(info["cfg"], steps=steps)
        seed = info.get("seed", seed)
        mixed_precision = info.get("mixed_precision", False)
    else:
        if model_name is None:
            raise TrainingError("a model name is needed to start a new run")
        if is_run(run_dir):
            raise RunExistsError(f"{run_dir}: already holds a training run; pass --resume to continue it "
                                 "or choose another --out")
        spec = registry.get(model_name)
        if cfg is None:
            from cxr_keras.config import preset as get_preset

            cfg = spec.config_from_preset(get_preset(preset))
        if steps is not None:
            cfg = dataclasses.replace(cfg, steps=steps)
        info = {"model": model_name, "preset": preset, "seed": seed, "mixed_precision": mixed_precision,
                "records": str(records_dir), "tensorflow": tf.__version__, "cfg": cfg,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    spec = registry.get(info["model"])
    cfg = info["cfg"]
    if not records_dir.is_dir():
        raise TrainingError(f"{records_dir}: records folder not found (run scripts/make_tfrecords.py)")
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume and (run_dir / HISTORY_FILE).exists():
        (run_dir / HISTORY_FILE).unlink()  # from a start that never reached a checkpoint
    info["records"] = str(records_dir)
    write_run_config(run_dir, info)

    strategy = strategy or default_strategy()
    model = build(spec, cfg, strategy, mixed_precision)
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    ckpt = make_checkpoint(model, step)
    manager = tf.train.CheckpointManager(ckpt, str(run_dir / CHECKPOINT_DIR), max_to_keep=cfg.keep_checkpoints)
    if resume and manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        print(f"resumed {manager.latest_checkpoint} at step {int(step.numpy())}", file=sys.stderr)
    elif resume:
        print(f"{run_dir}: no checkpoint yet, starting from step 0", file=sys.stderr)
    start = int(step.numpy())
    total = int(cfg.steps)
    if on_start is not None:
        on_start(start, model)

    history_path = run_dir / HISTORY_FILE
    history = [r for r in read_history(history_path) if r.get("step", 0) <= start]
    # A different data seed after a resume: the shuffled stream does not repeat the first part.
    dataset = spec.dataset(records_dir, cfg, seed + start)
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    sample_batch = first_replica_batch(next(iter(dataset)))
    train_fn = model.make_train_function()
    writer = tf.summary.create_file_writer(str(run_dir / LOG_DIR))

    interactive = sys.stdout.isatty()
    bar = tf.keras.utils.Progbar(total, verbose=1 if progress and interactive else 0, unit_name="step")
    sums: Dict[str, float] = {}
    count = 0
    t_log = time.perf_counter()
    status = "done"
    current = start

    def save(n: int) -> None:
        manager.save(checkpoint_number=n)

    def log(n: int) -> None:
        nonlocal sums, count, t_log
        if not count:
            return
        now = time.perf_counter()
        row = {"step": n, **{k: v / count for k, v in sums.items()},
               "images_per_sec": count * cfg.batch_size / max(now - t_log, 1e-9)}
        with writer.as_default(step=n):
            for k, v in row.items():
                if k != "step":
                    tf.summary.scalar(k, v)
        history.append(row)
        write_history(history_path, history)
        if progress and not interactive:  # a plain line per log step for files and CI logs
            print(f"step {n}/{total} " + " ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "step"),
                  flush=True)
        sums, count, t_log = {}, 0, now

    def images(n: int) -> None:
        grid = model.sample_images(sample_batch)
        with writer.as_default(step=n):
            tf.summary.image("x | composite | y", grid, max_outputs=min(4, int(grid.shape[0])))
        png = tf.io.encode_png(image_grid(grid)).numpy()
        atomic_write_bytes(run_dir / SAMPLES_DIR / f"step_{n:07d}.png", png)

    with _SigintFlag() as sigint:
        try:
            while current < total:
                if sigint.hit:
                    status = "interrupted"
                    break
                logs = train_fn(iterator)
                values = {k: float(v) for k, v in logs.items()}
                bad = [k for k, v in values.items() if not math.isfinite(v)]
                if bad:
                    log(current)
                    last = manager.latest_checkpoint
                    raise DivergedError(
                        f"step {current + 1}: non-finite loss ({', '.join(f'{k}={values[k]}' for k in bad)}); "
                        f"training stopped without saving. Last good checkpoint: "
                        f"{last or 'none'} (resume from it with --resume, perhaps with a lower learning rate)")
                current += 1
                step.assign(current)
                for k, v in values.items():
                    sums[k] = sums.get(k, 0.0) + v
                count += 1
                if current % cfg.log_every == 0 or current == total:
                    log(current)
                if current % cfg.image_every == 0:
                    images(current)
                if current % cfg.checkpoint_every == 0 or current == total:
                    save(current)
                if progress and interactive:
                    bar.update(current, list(values.items()), finalize=current == total)
                if on_step is not None:
                    on_step(current, values, model)
        finally:
            writer.flush()
    if status == "interrupted":
        log(current)
        if manager.latest_checkpoint is None or not manager.latest_checkpoint.endswith(f"-{current}"):
            save(current)
        print(f"interrupted: saved {manager.latest_checkpoint} at step {current}", file=sys.stderr)
    writer.close()
    return TrainResult(run_dir, current, status, manager.latest_checkpoint, history)
