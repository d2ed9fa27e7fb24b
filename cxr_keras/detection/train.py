"""Train one detection protocol with the OD API's own loop, scoring checkpoints as they appear.

The training runs in a child process (``python -m cxr_keras.detection.train --child ...``) that
calls ``object_detection.model_lib_v2.train_loop`` with ``num_steps_per_iteration=1`` (so small
step counts are honoured; ``model_main_tf2`` trains in blocks of 100). This parent process watches
the checkpoint folder: a checkpoint inside an evaluation window [s − w, s + w] is scored on the
test record (``inference.CheckpointDetector``) and its detections and counts are kept
(``RUN/detections/step_*.npz``, ``RUN/scores.csv``); every checkpoint but the newest is then
deleted. A checkpoint of the paper's model is ~0.5 GB, so when unscored checkpoints pile up the
child is paused (SIGSTOP) until scoring catches up: the disk never holds more than
``max_checkpoints`` of them. The newest is always kept (resume, export).

RUN layout::

    protocol.json   pipeline.config   train.log   scores.csv   detections/step_00000100.npz
    model/          OD API checkpoints (ckpt-N.*, 'checkpoint') and TensorBoard train/ events
    export/         SavedModel of the final checkpoint (optional, scripts/export_detector.py)
"""
from __future__ import annotations

from cxr_keras.detection import od_compat  # (must precede TensorFlow / protobuf)

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Union

from cxr_keras.config import FINDINGS, DetectionConfig
from cxr_keras.detection import localisation
from cxr_keras.io_utils import atomic_write_text

PathLike = Union[str, os.PathLike]
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")  # see _child_env
STEP_KEY = "step/.ATTRIBUTES/VARIABLE_VALUE"


class TrainingError(RuntimeError):
    """The OD API training process failed; the message carries the end of its log."""


@dataclass
class TrainResult:
    run_dir: Path
    protocol: str
    final_checkpoint: Optional[str]
    final_step: int
    scored_steps: List[int] = field(default_factory=list)
    seconds: float = 0.0


def run_paths(run_dir: PathLike) -> Dict[str, Path]:
    run_dir = Path(run_dir)
    return {"run": run_dir, "model": run_dir / "model", "scores": run_dir / "scores.csv",
            "detections": run_dir / "detections", "log": run_dir / "train.log",
            "protocol": run_dir / "protocol.json", "config": run_dir / "pipeline.config",
            "export": run_dir / "export"}


def list_checkpoints(model_dir: PathLike) -> List[str]:
    """Complete checkpoints of a training folder, oldest first (from its ``checkpoint`` file,
    which TensorFlow rewrites atomically only after a save has finished)."""
    import tensorflow as tf

    model_dir = Path(model_dir)
    state = tf.train.get_checkpoint_state(str(model_dir)) if model_dir.is_dir() else None
    if state is None:
        return []
    out = []
    for p in state.all_model_checkpoint_paths:
        path = p if os.path.isabs(p) else str(model_dir / p)
        if os.path.exists(path + ".index"):
            out.append(path)
    return sorted(set(out), key=_ckpt_number)


def _ckpt_number(prefix: str) -> int:
    try:
        return int(prefix.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return -1


def checkpoint_step(prefix: str) -> int:
    """The training step stored in an OD API checkpoint (its ``ckpt-N`` number is a save count)."""
    import tensorflow as tf

    return int(tf.train.load_variable(prefix, STEP_KEY))


def delete_checkpoint(prefix: str) -> None:
    """Remove the ``.index`` and ``.data-*`` files of one checkpoint."""
    base = Path(prefix)
    for f in base.parent.glob(base.name + ".*"):
        if f.name.startswith(base.name + ".index") or f.name.startswith(base.name + ".data-"):
            f.unlink(missing_ok=True)


def scored_steps(scores_csv: PathLike) -> List[int]:
    p = Path(scores_csv)
    return sorted(localisation.read_scores(p)) if p.is_file() else []


def child_command(pipeline_config: PathLike, model_dir: PathLike, steps: int,
                  checkpoint_every: int) -> List[str]:
    return [sys.executable, "-m", "cxr_keras.detection.train", "--child",
            "--pipeline-config", str(pipeline_config), "--model-dir", str(model_dir),
            "--steps", str(int(steps)), "--checkpoint-every", str(int(checkpoint_every))]


def _child_env() -> Dict[str, str]:
    env = od_compat.child_env()
    # on a GPU the trainer and this scoring process share the card: neither may grab it all
    env.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    return env


def _log_tail(log: Path, lines: int = 25) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class _DiskGuard(threading.Thread):
    """Pause the trainer (SIGSTOP) while ``limit`` checkpoints are on disk, resume (SIGCONT) when
    scoring has deleted some. Runs beside the scorer, so a slow scoring cannot let them pile up."""

    def __init__(self, child: subprocess.Popen, model_dir: Path, limit: int, interval: float):
        super().__init__(daemon=True)
        self.child, self.model_dir, self.limit, self.interval = child, model_dir, limit, interval
        self.paused = False
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set() and self.child.poll() is None:
            on_disk = len(list(self.model_dir.glob("ckpt-*.index")))
            if not self.paused and on_disk >= self.limit:
                self.child.send_signal(signal.SIGSTOP)
                self.paused = True
            elif self.paused and on_disk < self.limit:
                self.child.send_signal(signal.SIGCONT)
                self.paused = False
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        if self.paused and self.child.poll() is None:
            self.child.send_signal(signal.SIGCONT)
            self.paused = False


def train_protocol(
    pipeline_config: PathLike,
    run_dir: PathLike,
    cfg: DetectionConfig = DetectionConfig(),
    protocol: Optional[str] = None,
    steps: Optional[int] = None,
    test_record: Optional[PathLike] = None,
    max_checkpoints: int = 3,
    poll_seconds: float = 5.0,
    guard_seconds: float = 0.2,
    score_limit: Optional[int] = None,
    findings: Sequence[str] = FINDINGS,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train ``pipeline_config`` into ``run_dir`` for ``steps`` (default: the config's num_steps).

    Checkpoints are written every ``cfg.checkpoint_every`` steps; those in the windows
    ``cfg.eval_steps ± cfg.window`` are scored with ``cfg.iou`` / ``cfg.localisation_mode`` on
    ``test_record`` (default: the config's eval input). Re-running resumes from the newest
    checkpoint and skips steps already in ``scores.csv``.
    """
    from cxr_keras.detection.configs import eval_record_path, load_pipeline_configs
    from cxr_keras.detection.inference import CheckpointDetector, save_results

    t0 = time.time()
    paths = run_paths(run_dir)
    pipeline_config = Path(pipeline_config).resolve()
    configs = load_pipeline_configs(pipeline_config)
    steps = int(steps if steps is not None else configs["train_config"].num_steps)
    every = int(cfg.checkpoint_every)
    if steps <= 0 or every <= 0:
        raise ValueError(f"steps ({steps}) and checkpoint_every ({every}) must be positive")
    if steps % every:
        raise ValueError(f"steps ({steps}) must be a multiple of checkpoint_every ({every}): "
                         f"the OD API only saves every checkpoint_every steps, so the final "
                         f"weights would be lost")
    if max_checkpoints < 2:
        raise ValueError("max_checkpoints must be >= 2 (the newest plus one being scored)")
    test_record = Path(test_record) if test_record else eval_record_path(configs)
    if not test_record.is_file():
        raise FileNotFoundError(f"{test_record}: test record (eval_input_reader of "
                                f"{pipeline_config}) does not exist")
    protocol = protocol or pipeline_config.stem
    for key in ("run", "model", "detections"):
        paths[key].mkdir(parents=True, exist_ok=True)
    if pipeline_config != paths["config"].resolve():
        shutil.copyfile(pipeline_config, paths["config"])
    atomic_write_text(paths["protocol"], json.dumps({
        "protocol": protocol, "pipeline_config": str(pipeline_config), "steps": steps,
        "checkpoint_every": every, "eval_steps": list(cfg.eval_steps), "window": cfg.window,
        "iou": cfg.iou, "mode": cfg.localisation_mode, "score_threshold": cfg.score_threshold,
        "test_record": str(test_record.resolve()), "findings": list(findings),
    }, indent=2))

    done = set(scored_steps(paths["scores"]))
    handled: set = set()
    detector: List[CheckpointDetector] = []

    def score(prefix: str, step: int) -> None:
        if not detector:
            detector.append(CheckpointDetector.for_config(paths["config"]))
        t = time.time()
        results = detector[0].restore(prefix).run(test_record, limit=score_limit)
        counts = localisation.localisation_counts(
            results, findings, cfg.iou, cfg.localisation_mode, cfg.score_threshold)
        save_results(paths["detections"] / f"step_{step:08d}.npz", results, step=step,
                     protocol=protocol)
        localisation.append_scores(paths["scores"], step, counts, cfg.iou,
                                   cfg.localisation_mode, cfg.score_threshold)
        done.add(step)
        c, n = counts[localisation.TOTAL]
        log(f"[{protocol}] step {step}: {c}/{n} boxes correctly located "
            f"({len(results)} images, {time.time() - t:.0f} s)")

    def sweep() -> bool:
        """Score at most one new in-window checkpoint, delete all but the newest handled one;
        return True while unhandled checkpoints remain."""
        ckpts = list_checkpoints(paths["model"])
        pending = [p for p in ckpts if p not in handled]
        for prefix in pending:
            step = checkpoint_step(prefix)
            handled.add(prefix)
            if step not in done and localisation.in_any_window(step, cfg.eval_steps, cfg.window):
                score(prefix, step)
                break
        for prefix in ckpts[:-1]:
            if prefix in handled:
                delete_checkpoint(prefix)
        return any(p not in handled for p in list_checkpoints(paths["model"]))

    existing = list_checkpoints(paths["model"])
    if existing and checkpoint_step(existing[-1]) >= steps:
        log(f"[{protocol}] already trained to step {checkpoint_step(existing[-1])}")
        while sweep():
            pass
    else:
        cmd = child_command(paths["config"], paths["model"], steps, every)
        log(f"[{protocol}] training {steps} steps: {' '.join(cmd)}  (log: {paths['log']})")
        with open(paths["log"], "ab") as log_fh:
            child = subprocess.Popen(cmd, stdout=log_fh, stderr=subprocess.STDOUT,
                                     env=_child_env(), cwd=str(od_compat.REPO_ROOT))
        guard = _DiskGuard(child, paths["model"], max_checkpoints, guard_seconds)
        guard.start()
        try:
            while True:
                running = child.poll() is None
                more = sweep()
                if not running and not more:
                    break
                if not more:
                    time.sleep(poll_seconds)
        except BaseException:
            guard.stop()
            if child.poll() is None:
                child.terminate()
                child.wait(timeout=60)
            raise
        guard.stop()
        if child.returncode != 0:
            raise TrainingError(f"OD API training of {protocol} failed (exit {child.returncode}); "
                                f"end of {paths['log']}:\n{_log_tail(paths['log'])}")
    final = list_checkpoints(paths["model"])
    final_prefix = final[-1] if final else None
    final_step = checkpoint_step(final_prefix) if final_prefix else 0
    if final_step != steps:
        raise TrainingError(f"{paths['model']}: newest checkpoint is at step {final_step}, "
                            f"expected {steps}; end of {paths['log']}:\n{_log_tail(paths['log'])}")
    return TrainResult(paths["run"], protocol, final_prefix, final_step, sorted(done),
                       time.time() - t0)


def _child_main(args) -> None:
    """Inside the child: the OD API's own training loop, one step per iteration."""
    od_compat.require_od_api()
    import tensorflow as tf
    from object_detection import model_lib_v2

    tf.config.set_soft_device_placement(True)
    gpus = tf.config.list_physical_devices("GPU")
    strategy = (tf.distribute.MirroredStrategy() if len(gpus) > 1
                else tf.distribute.get_strategy())
    with strategy.scope():
        model_lib_v2.train_loop(
            pipeline_config_path=args.pipeline_config,
            model_dir=args.model_dir,
            train_steps=args.steps,
            checkpoint_every_n=args.checkpoint_every,
            checkpoint_max_to_keep=1_000_000,  # the parent deletes what it no longer needs
            record_summaries=False,  # loss scalars are still written; no per-step images
            num_steps_per_iteration=1,
        )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--pipeline-config", required=True)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--checkpoint-every", type=int, required=True)
    args = parser.parse_args(argv)
    if not args.child:
        parser.error("this entry point is the training child; use scripts/train_detector.py")
    _child_main(args)


if __name__ == "__main__":
    main()
