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
    export/         SavedModel of the final checkpoint (optional, ``cxr-keras export_detector``)

(the names live in ``cxr_keras.paths.DetectorRunPaths``). ``train_protocol`` = ``resolve_run``
(check everything first) + ``prepare_run`` + the child and a ``CheckpointWatcher``.
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
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from cxr_keras import procs
from cxr_keras.config import FINDINGS, STRATEGIES, DetectionConfig
from cxr_keras.detection import localisation
from cxr_keras.io_utils import atomic_write_text
from cxr_keras.paths import DetectorRunPaths

PathLike = Union[str, os.PathLike]
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")  # see _child_env
STEP_KEY = "step/.ATTRIBUTES/VARIABLE_VALUE"


class DetectorTrainingError(RuntimeError):
    """The OD API training process failed; the message carries the end of its log."""


@dataclass
class DetectorRunResult:
    """What one protocol's training left: the run folder, its final checkpoint, the scored steps."""

    run_dir: Path
    protocol: str
    final_checkpoint: Optional[str]
    final_step: int
    scored_steps: List[int] = field(default_factory=list)
    seconds: float = 0.0


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
                  checkpoint_every: int, seed: Optional[int] = None, strategy: str = "auto") -> List[str]:
    return [sys.executable, "-m", "cxr_keras.detection.train", "--child",
            "--pipeline-config", str(pipeline_config), "--model-dir", str(model_dir),
            "--steps", str(int(steps)), "--checkpoint-every", str(int(checkpoint_every))] + (
            [] if seed is None else ["--seed", str(int(seed))]) + (
            [] if strategy == "auto" else ["--strategy", strategy])


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


@dataclass(frozen=True)
class DetectorRun:
    """One protocol run, resolved and checked before anything is started or written."""

    paths: DetectorRunPaths
    pipeline_config: Path  # the config given (absolute); RUN/pipeline.config is its copy
    protocol: str
    steps: int
    test_record: Path
    cfg: DetectionConfig
    findings: Tuple[str, ...]
    seed: Optional[int] = None  # training seed (None: TensorFlow's own randomness)
    val_record: Optional[Path] = None  # held-out validation record (eval_input_reader "val")
    strategy: str = "auto"  # the OD API child's tf.distribute strategy (config.STRATEGIES)

    @property
    def every(self) -> int:
        return int(self.cfg.checkpoint_every)


def resolve_run(pipeline_config: PathLike, run_dir: PathLike, cfg: DetectionConfig,
                protocol: Optional[str] = None, steps: Optional[int] = None,
                test_record: Optional[PathLike] = None, max_checkpoints: int = 3,
                findings: Sequence[str] = FINDINGS, seed: Optional[int] = None,
                strategy: str = "auto") -> DetectorRun:
    """Read the config and check the settings (steps a multiple of ``checkpoint_every``, the test
    record present, a known strategy); raise ValueError / FileNotFoundError naming the problem."""
    from cxr_keras.detection.configs import eval_record_path, load_pipeline_configs, val_record_path

    if strategy not in STRATEGIES:
        raise ValueError(f"strategy {strategy!r}: choose one of {', '.join(STRATEGIES)}")
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
    val_record = val_record_path(configs)
    if val_record is not None and not val_record.is_file():
        raise FileNotFoundError(f"{val_record}: validation record (eval_input_reader 'val' of "
                                f"{pipeline_config}) does not exist")
    return DetectorRun(DetectorRunPaths(run_dir), pipeline_config, protocol or pipeline_config.stem,
                       steps, test_record, cfg, tuple(findings), seed, val_record, strategy)


def prepare_run(run: DetectorRun) -> None:
    """Create the run folder, copy the config into it and record the protocol's settings."""
    paths, cfg = run.paths, run.cfg
    for folder in (paths.root, paths.model, paths.detections):
        folder.mkdir(parents=True, exist_ok=True)
    if run.pipeline_config != paths.config.resolve():
        shutil.copyfile(run.pipeline_config, paths.config)
    atomic_write_text(paths.protocol, json.dumps({
        "protocol": run.protocol, "pipeline_config": str(run.pipeline_config), "steps": run.steps,
        "checkpoint_every": run.every, "eval_steps": list(cfg.eval_steps), "window": cfg.window,
        "iou": cfg.iou, "mode": cfg.localisation_mode, "score_threshold": cfg.score_threshold,
        "test_record": str(run.test_record.resolve()), "findings": list(run.findings),
        "seed": run.seed, "val_record": str(run.val_record.resolve()) if run.val_record else None,
    }, indent=2))


class CheckpointWatcher:
    """Scores the in-window checkpoints of ``RUN/model`` as they appear and deletes handled ones.

    A step already in ``scores.csv`` is not scored again (re-runs resume); the newest checkpoint
    is always kept (resume, export).
    """

    def __init__(self, run: DetectorRun, score_limit: Optional[int] = None,
                 log: Callable[[str], None] = print):
        self.run, self.score_limit, self.log = run, score_limit, log
        self.done = set(scored_steps(run.paths.scores))
        self.handled: set = set()
        self._detector = None

    def in_window(self, step: int) -> bool:
        return localisation.in_any_window(step, self.run.cfg.eval_steps, self.run.cfg.window)

    def score(self, prefix: str, step: int) -> None:
        """Detect on the test record with this checkpoint; keep the detections and the counts."""
        from cxr_keras.detection.inference import CheckpointDetector, save_results

        run, cfg = self.run, self.run.cfg
        if self._detector is None:
            self._detector = CheckpointDetector.for_config(run.paths.config)
        t = time.time()
        results = self._detector.restore(prefix).run(run.test_record, limit=self.score_limit)
        counts = localisation.localisation_counts(
            results, run.findings, cfg.iou, cfg.localisation_mode, cfg.score_threshold)
        save_results(run.paths.detection(step), results, step=step, protocol=run.protocol)
        if run.val_record is not None:  # the held-out images that choose the checkpoint (Table 2)
            val = self._detector.run(run.val_record, limit=self.score_limit)
            save_results(run.paths.val_detection(step), val, step=step, protocol=run.protocol, split="val")
        localisation.append_scores(run.paths.scores, step, counts, cfg.iou,
                                   cfg.localisation_mode, cfg.score_threshold)
        self.done.add(step)
        c, n = counts[localisation.TOTAL]
        self.log(f"[{run.protocol}] step {step}: {c}/{n} boxes correctly located "
                 f"({len(results)} images, {time.time() - t:.0f} s)")

    def prune(self, checkpoints: Sequence[str]) -> None:
        """Delete every handled checkpoint but the newest of ``checkpoints``."""
        for prefix in checkpoints[:-1]:
            if prefix in self.handled:
                delete_checkpoint(prefix)

    def poll(self) -> bool:
        """Score at most one new in-window checkpoint, prune; True while unhandled ones remain."""
        checkpoints = list_checkpoints(self.run.paths.model)
        for prefix in [p for p in checkpoints if p not in self.handled]:
            step = checkpoint_step(prefix)
            self.handled.add(prefix)
            if step not in self.done and self.in_window(step):
                self.score(prefix, step)
                break
        self.prune(checkpoints)
        return any(p not in self.handled for p in list_checkpoints(self.run.paths.model))

    def drain(self) -> None:
        """Handle every checkpoint already on disk."""
        while self.poll():
            pass


def _train_and_watch(run: DetectorRun, watcher: CheckpointWatcher, max_checkpoints: int,
                     poll_seconds: float, guard_seconds: float, log: Callable[[str], None]) -> None:
    """Run the OD API child while the watcher scores; the disk guard bounds the checkpoints."""
    paths = run.paths
    cmd = child_command(paths.config, paths.model, run.steps, run.every, run.seed, run.strategy)
    log(f"[{run.protocol}] training {run.steps} steps: {' '.join(cmd)}  (log: {paths.log})")
    with open(paths.log, "ab") as log_fh:  # the trainer dies with this process, even by SIGKILL
        child = procs.start(cmd, env=_child_env(), stdout=log_fh, stderr=subprocess.STDOUT)
    guard = _DiskGuard(child, paths.model, max_checkpoints, guard_seconds)
    guard.start()
    try:
        while True:
            running = child.poll() is None
            more = watcher.poll()
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
        raise DetectorTrainingError(f"OD API training of {run.protocol} failed (exit "
                                    f"{child.returncode}); end of {paths.log}:\n{_log_tail(paths.log)}")


def _train_as_worker(run: DetectorRun, log: Callable[[str], None], t0: float) -> DetectorRunResult:
    """A non-chief worker of a multi-worker run: train beside the chief, leave its folder alone (the
    chief's parent scores, prunes and pauses; this worker's OD API saves into scratch folders)."""
    # the config as given: RUN/pipeline.config is the chief's copy and may not be written yet
    cmd = child_command(run.pipeline_config, run.paths.model, run.steps, run.every, run.seed, run.strategy)
    run.paths.root.mkdir(parents=True, exist_ok=True)
    worker_log = run.paths.root / f"train.worker{os.getpid()}.log"
    log(f"[{run.protocol}] worker of a multi-worker run: {' '.join(cmd)}  (log: {worker_log})")
    with open(worker_log, "ab") as log_fh:
        child = procs.start(cmd, env=_child_env(), stdout=log_fh, stderr=subprocess.STDOUT)
    with procs.forward_signals(child, f"detector worker {run.protocol!r}"):
        code = child.wait()
    if code != 0:
        raise DetectorTrainingError(f"OD API training of {run.protocol} (worker) failed (exit {code}); "
                                    f"end of {worker_log}:\n{_log_tail(worker_log)}")
    return DetectorRunResult(run.paths.root, run.protocol, None, run.steps, [], time.time() - t0)


def _final_checkpoint(run: DetectorRun) -> Tuple[Optional[str], int]:
    """The newest checkpoint and its step, which must be the run's last step."""
    final = list_checkpoints(run.paths.model)
    prefix = final[-1] if final else None
    step = checkpoint_step(prefix) if prefix else 0
    if step != run.steps:
        raise DetectorTrainingError(f"{run.paths.model}: newest checkpoint is at step {step}, expected "
                                    f"{run.steps}; end of {run.paths.log}:\n{_log_tail(run.paths.log)}")
    return prefix, step


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
    seed: Optional[int] = None,
    strategy: str = "auto",
) -> DetectorRunResult:
    """Train ``pipeline_config`` into ``run_dir`` for ``steps`` (default: the config's num_steps).

    Checkpoints are written every ``cfg.checkpoint_every`` steps; those in the windows
    ``cfg.eval_steps ± cfg.window`` are scored with ``cfg.iou`` / ``cfg.localisation_mode`` on
    ``test_record`` (default: the config's eval input). Re-running resumes from the newest
    checkpoint and skips steps already in ``scores.csv``. ``strategy`` is the OD API child's
    (``multi_worker``: the cluster of TF_CONFIG; only the chief's parent scores and prunes).
    """
    t0 = time.time()
    run = resolve_run(pipeline_config, run_dir, cfg, protocol, steps, test_record, max_checkpoints,
                      findings, seed, strategy)
    if strategy == "multi_worker":
        from cxr_keras.gan.distribute import is_chief_process

        if not is_chief_process():
            return _train_as_worker(run, log, t0)
    prepare_run(run)
    from cxr_keras.gan.checkpoints import repair

    # temp folders of killed saves, a damaged newest checkpoint, a lost state file: fixed before the
    # OD API restores tf.train.latest_checkpoint (which would otherwise crash or start from step 0)
    repair(run.paths.model, lambda text: log(f"[{run.protocol}] warning: {text}"))
    watcher = CheckpointWatcher(run, score_limit, log)
    existing = list_checkpoints(run.paths.model)
    if existing and checkpoint_step(existing[-1]) >= run.steps:
        log(f"[{run.protocol}] already trained to step {checkpoint_step(existing[-1])}")
        watcher.drain()
    else:
        _train_and_watch(run, watcher, max_checkpoints, poll_seconds, guard_seconds, log)
    prefix, step = _final_checkpoint(run)
    return DetectorRunResult(run.paths.root, run.protocol, prefix, step, sorted(watcher.done),
                             time.time() - t0)


def _child_main(args) -> None:
    """Inside the child: the OD API's own training loop, one step per iteration."""
    od_compat.require_od_api()
    import tensorflow as tf
    from object_detection import model_lib_v2

    tf.config.set_soft_device_placement(True)
    if args.seed is not None:  # weights, proposal sampling and the input shuffle follow the seed
        tf.keras.utils.set_random_seed(args.seed)
    from cxr_keras.gan.distribute import make_strategy  # as model_main_tf2: every GPU, or TF_CONFIG's cluster

    strategy = make_strategy(args.strategy)
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
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--strategy", choices=STRATEGIES, default="auto")
    args = parser.parse_args(argv)
    if not args.child:
        parser.error("this entry point is the training child; use cxr-keras train_detector")
    procs.exit_with_parent()
    _child_main(args)


if __name__ == "__main__":
    main()
