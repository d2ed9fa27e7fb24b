"""One GAN run folder (RUN/): what it trains and how, starting or resuming it, and loading it back.

``resolve_run`` decides what a ``train`` call means (a new run, or the continuation of the one in
RUN/, with its config checked) without touching the disk; ``start_run`` writes the run's config;
``load_run`` rebuilds the model of a finished run for synthesis and evaluation.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

import tensorflow as tf

from cxr_keras.config import preset as get_preset
from cxr_keras.gan import checkpoints, distribute, registry, schedule
from cxr_keras.gan.precision import legacy_policy, resolve as resolve_precision, run_policy
from cxr_keras.io_utils import atomic_write_text, read_json
from cxr_keras.paths import RunPaths


class TrainingError(RuntimeError):
    """Training cannot start or continue (explained in the message)."""


class RunExistsError(TrainingError):
    """The output folder already holds a run and ``resume`` was not asked for."""


class DivergedError(TrainingError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


# -- the run's config -------------------------------------------------------------------------------
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
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        kwargs[key] = value
    return cls(**kwargs)


def is_run(run_dir: os.PathLike) -> bool:
    """True if ``run_dir`` holds a run worth keeping: at least one checkpoint.

    A folder with only its config (killed before its first checkpoint) is simply started over.
    Checkpoints are found from their files, so a lost state file does not make a run startable over.
    """
    return bool(checkpoints.find(RunPaths(run_dir).checkpoints))


def read_run_config(run_dir: os.PathLike) -> Dict[str, Any]:
    """The run's config (``RunPaths.config``) as a dict, with ``cfg`` rebuilt as the model's config dataclass."""
    path = RunPaths(run_dir).config
    info = read_json(path, TrainingError, f"not found; {run_dir} is not a training run (scripts/train_gan.py)")
    for key in ("model", "config"):
        if key not in info:
            raise TrainingError(f"{path}: missing {key!r}")
    spec = registry.get(info["model"])
    info["cfg"] = config_from_dict(spec.config_class, info["config"])
    return info


def write_run_config(run_dir: os.PathLike, info: Dict[str, Any]) -> None:
    data = {k: v for k, v in info.items() if k != "cfg"}
    data["config"] = dataclasses.asdict(info["cfg"])
    atomic_write_text(RunPaths(run_dir).config, json.dumps(data, indent=1))


# -- what a train call means -------------------------------------------------------------------------
@dataclass
class RunSetup:
    """A resolved run: its folder, records, model spec and config, and what its config file holds."""

    paths: RunPaths
    records_dir: Path
    spec: registry.ModelSpec
    info: Dict[str, Any]  # the run's config file (``cfg``: the config dataclass)
    resume: bool
    seed: int
    mixed_precision: bool
    policy: str = "float32"  # the Keras dtype policy it trains in (``gan.precision``)

    @property
    def cfg(self):
        return self.info["cfg"]


def _resumed_info(run_dir: Path, model_name: Optional[str], steps: Optional[int]) -> Dict[str, Any]:
    info = read_run_config(run_dir)
    if model_name is not None and model_name != info["model"]:
        raise TrainingError(f"{run_dir}: this run trains {info['model']!r}, not {model_name!r}")
    if steps is not None:  # a new length: the learning rate continues from the step reached (gan.schedule)
        done = max((checkpoints.number(p) for p in checkpoints.find(RunPaths(run_dir).checkpoints)), default=0)
        info["cfg"] = schedule.resumed_config(info["cfg"], done, steps)
    return info


def _new_info(run_dir: Path, model_name: Optional[str], cfg, steps: Optional[int], seed: int, preset: str,
              policy: str) -> Dict[str, Any]:
    if model_name is None:
        raise TrainingError("a model name is needed to start a new run")
    if is_run(run_dir):
        raise RunExistsError(f"{run_dir}: already holds a training run; pass --resume to continue it "
                             "or choose another --out")
    spec = registry.get(model_name)
    if cfg is None:
        cfg = spec.config_from_preset(get_preset(preset))
    if steps is not None:
        cfg = dataclasses.replace(cfg, steps=steps)
    return {"model": model_name, "preset": preset, "seed": seed, "mixed_precision": policy != "float32",
            "precision": policy, "records": None, "tensorflow": tf.__version__, "cfg": cfg,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}


def resolve_run(model_name: Optional[str], records_dir: os.PathLike, run_dir: os.PathLike, cfg=None, *,
                steps: Optional[int] = None, resume: bool = False, seed: int = 0, preset: str = "paper",
                mixed_precision: bool = False, precision: Optional[str] = None) -> RunSetup:
    """A new run (``cfg``, or the ``preset``'s) or the continuation of RUN/ (its config file; only
    ``steps`` may change, and seed and precision are the run's). Checks only; writes nothing.
    ``precision`` (``gan.precision.PRECISIONS``, e.g. ``auto``) wins over the older ``mixed_precision``."""
    run_dir, records_dir = Path(run_dir), Path(records_dir)
    if resume:
        info = _resumed_info(run_dir, model_name, steps)
        seed, policy = info.get("seed", seed), run_policy(info)
    else:
        policy = resolve_precision(precision, model_name or "") if precision else legacy_policy(mixed_precision)
        info = _new_info(run_dir, model_name, cfg, steps, seed, preset, policy)
    if not records_dir.is_dir():
        raise TrainingError(f"{records_dir}: records folder not found (run scripts/make_tfrecords.py)")
    if not resume:  # epochs → steps from the records' counts, recorded in the run's config
        info["cfg"], info["length"] = schedule.training_length(info["cfg"], records_dir, steps)
    info["records"] = str(records_dir)
    return RunSetup(RunPaths(run_dir), records_dir, registry.get(info["model"]), info, resume, seed,
                    policy != "float32", policy)


def start_run(setup: RunSetup) -> None:
    """Create RUN/ and write its config (a new run also drops the history of a start that never
    reached a checkpoint)."""
    setup.paths.root.mkdir(parents=True, exist_ok=True)
    if not setup.resume and setup.paths.history.exists():
        setup.paths.history.unlink()
    write_run_config(setup.paths.root, setup.info)


# -- building and loading ----------------------------------------------------------------------------
def default_strategy() -> tf.distribute.Strategy:
    """MirroredStrategy when several GPUs are visible, else the default (single-device) strategy."""
    return distribute.make_strategy("auto")


def mixed_precision_policy() -> str:
    """``mixed_float16`` on GPU, ``mixed_bfloat16`` on CPU (what ``--mixed-precision`` means)."""
    return legacy_policy(True)


@contextlib.contextmanager
def dtype_policy(enabled) -> Iterator[None]:
    """Build layers under a policy (a Keras policy name, or True: ``mixed_precision_policy()``), then
    restore the previous global policy."""
    previous = tf.keras.mixed_precision.global_policy()
    if enabled:
        tf.keras.mixed_precision.set_global_policy(enabled if isinstance(enabled, str) else mixed_precision_policy())
    try:
        yield
    finally:
        tf.keras.mixed_precision.set_global_policy(previous)


def build(spec: registry.ModelSpec, cfg, strategy=None, mixed_precision=False):
    """The spec's compiled model under ``strategy`` (default: ``default_strategy()``) and precision
    (a Keras policy name, or a bool as ``dtype_policy`` takes it)."""
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
    run_dir: Path


def load_run(run_dir: os.PathLike, checkpoint: Optional[str] = None, strategy=None) -> LoadedRun:
    """Rebuild the model of a run and restore a checkpoint (the latest by default)."""
    paths = RunPaths(run_dir)
    info = read_run_config(paths.root)
    spec = registry.get(info["model"])
    ckpt_path = checkpoint or checkpoints.newest_good(paths.checkpoints)[0]  # damaged newer ones: warned
    if ckpt_path is None:
        intact = " intact" if checkpoints.find(paths.checkpoints) else ""
        raise TrainingError(f"{paths.checkpoints}: no{intact} checkpoint (train first with scripts/train_gan.py)")
    model = build(spec, info["cfg"], strategy, run_policy(info))
    step = tf.Variable(0, dtype=tf.int64, trainable=False)
    make_checkpoint(model, step).restore(ckpt_path).expect_partial()
    return LoadedRun(model, info["cfg"], info["model"], int(step.numpy()), ckpt_path, info, paths.root)
