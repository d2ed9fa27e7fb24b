"""The stage runner behind ``cxr-keras run_pipeline``: the whole protocol, from nothing to a report.

Stages run as subprocesses of the package's commands (``python -m cxr_keras.cli.NAME``, recorded in
the report in the form a user types: ``cxr-keras NAME ...``), log to ``RUN_DIR/logs/<stage>.log``
and leave ``RUN_DIR/stages/<stage>.json`` when they succeed (``paths.PipelinePaths``). A stage with
that marker is skipped, so a killed run continues where it stopped.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence

from cxr_keras import procs
from cxr_keras.config import PipelineConfig, preset
from cxr_keras.io_utils import atomic_write_text
from cxr_keras.paths import PipelinePaths, RunPaths, package_env

CLI_PACKAGE = "cxr_keras.cli"
COMMAND = "cxr-keras"  # the console command of setup.py: how the report shows each stage
# TensorFlow start-up chatter kept out of the console (it stays in the stage's log).
NOISE = ("tensorflow/", "stream_executor", "cuda", "TensorRT", "rebuild TensorFlow", "AVX", "oneDNN",
         "WARNING:", "warnings.warn", "Warning:")


@dataclass
class Stage:
    """One step of the protocol: a command of ``cxr_keras.cli`` with its arguments, and the folder
    it fills. ``argv[0]`` is the command name (a dotted name is a module run as is)."""

    name: str
    argv: List[str]
    output: Path
    prepare: Optional[Callable[["Stage"], None]] = None  # last-minute tweaks (e.g. --resume)
    env: dict = field(default_factory=dict)

    @property
    def module(self) -> str:
        command = str(self.argv[0])
        return command if "." in command else f"{CLI_PACKAGE}.{command}"

    def args(self) -> List[str]:
        return [str(a) for a in self.argv[1:]]

    def command(self) -> List[str]:
        return [sys.executable, "-m", self.module] + self.args()

    def shown(self) -> str:
        """The command as a user would type it (``cxr-keras NAME ...``)."""
        command = str(self.argv[0])
        head = ["python", "-m", command] if "." in command else [COMMAND, command]
        return " ".join(shlex.quote(c) for c in head + self.args())


class StageFailed(RuntimeError):
    pass


def _resume_if_started(flag: str = "--resume"):
    def prepare(stage: Stage) -> None:
        if RunPaths(stage.output).checkpoints.is_dir() and flag not in stage.argv:
            stage.argv.append(flag)
    return prepare


def plan(cfg: PipelineConfig, out: Path, nih_root: Optional[Path] = None, kind: str = "ct",
         seed: int = 0, seeds: Optional[int] = None, strategy: str = "auto") -> List[Stage]:
    """The ordered stages of the protocol for one preset (``seeds``: detector training seeds per
    protocol, default the preset's; ``strategy``: the GAN and detector trainers' tf.distribute
    strategy, passed on unless ``auto``)."""
    from cxr_keras.detection.stages import strategy_args

    distribute = strategy_args(strategy)
    p, run = cfg.name, PipelinePaths(out)
    data = Path(nih_root) if nih_root else run.data
    rec = run.records.root
    stages: List[Stage] = []
    if nih_root is None:
        argv = ["make_phantoms", "--kind", kind, "--out", data, "--seed", seed,
                "--healthy", cfg.phantom_healthy]
        if cfg.phantom_limit is not None:
            argv += ["--limit", cfg.phantom_limit]
        stages.append(Stage("dataset", argv, data))
    stages.append(Stage("records", [
        "make_tfrecords", "--nih-root", data, "--out", rec, "--image-size", cfg.records.image_size,
        "--healthy", cfg.data.healthy, "--seed", seed, "--train-frac", cfg.data.train_frac], rec))
    for model in ("pix2pix", "pix2pix_n", "stargan"):
        gan = run.gan(model).root
        stages.append(Stage(f"train_{model}", [
            "train_gan", "--model", model, "--records", rec, "--out", gan,
            "--preset", p, "--seed", seed, *distribute], gan, prepare=_resume_if_started()))
    for model in ("pix2pix", "pix2pix_n"):
        gan, syn = run.gan(model).root, run.syn(model).root
        stages.append(Stage(f"synthesize_{model}", [
            "synthesize", "--run", gan, "--records", rec, "--count", cfg.synthesis.count,
            "--outputs-per-input", cfg.synthesis.outputs_per_input, "--out", syn, "--seed", seed], syn))
        stages.append(Stage(f"evaluate_{model}", ["evaluate_gan", "--run", gan, "--records", rec], gan))
    stargan_syn = run.syn("stargan").root
    stages.append(Stage("synthesize_stargan", [
        "synthesize", "--run", run.gan("stargan").root, "--records", rec,
        "--per-finding", cfg.synthesis.stargan_per_finding, "--out", stargan_syn, "--seed", seed],
        stargan_syn))
    stages.append(Stage("od_configs", [
        "make_od_configs", "--records", rec, "--out", run.od_configs, "--preset", p, "--seed", seed,
        "--synthetic", f"pix2pix={run.syn('pix2pix').root}", f"pix2pix_n={run.syn('pix2pix_n').root}"],
        run.od_configs))
    stages += _detection_stages(cfg, run, seeds, strategy)
    study = run.study
    stages.append(Stage("reader_study", [
        "reader_study", "build", "--real", rec, "--generated",
        *(f"{g}={run.syn(g).root}" for g in ("pix2pix", "pix2pix_n", "stargan")),
        "--per-finding", cfg.study.per_finding, "--seed", seed, "--out", study], study))
    stages.append(Stage("auto_judge", [
        "reader_study", "--preset", p, "auto-judge", study, "--epochs", cfg.study.judge_epochs],
        study / "auto_judge.json"))  # --preset: the judge's size, controls and FRD switch follow the preset
    return stages


def _detection_stages(cfg: PipelineConfig, run: PipelinePaths, seeds: Optional[int] = None,
                      strategy: str = "auto") -> List[Stage]:
    """train_detector per training seed and protocol, the prior-box baseline, then Table 2 over
    their runs (``detection/stages.py``)."""
    from cxr_keras.detection.stages import detection_stages

    return [Stage(name, argv, output) for name, argv, output in detection_stages(cfg, run, seeds, strategy)]


def run_stage(out: Path, stage: Stage, index: int, total: int, env: dict) -> float:
    """Run one stage's command, tee its output into its log; raise StageFailed on a non-zero exit."""
    if stage.prepare:
        stage.prepare(stage)
    run = PipelinePaths(out)
    log = run.stage_log(stage.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    shown = stage.shown()
    print(f"[{index}/{total}] {stage.name}: {shown}", flush=True)
    t0 = time.time()
    with open(log, "ab") as fh:
        fh.write(f"\n$ {shown}\n".encode())
        # its own process group, killed with this process; Ctrl-C / SIGTERM passed on (procs)
        proc = procs.start(stage.command(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           env={**env, **stage.env})
        with procs.forward_signals(proc, f"stage {stage.name!r}"):
            for line in proc.stdout:
                fh.write(line)
                fh.flush()
                text = line.decode(errors="replace").rstrip()
                if text and not any(n in text for n in NOISE):
                    print(f"    {text[-160:]}", flush=True)
            code = proc.wait()
    seconds = time.time() - t0
    if code != 0:
        raise StageFailed(f"stage {stage.name!r} failed with exit code {code}; see {log}")
    atomic_write_text(run.marker(stage.name), json.dumps(
        {"stage": stage.name, "command": shown, "seconds": round(seconds, 1),
         "finished": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=1))
    print(f"    done in {seconds:.0f} s", flush=True)
    return seconds


def run_pipeline(out: os.PathLike, preset_name: str = "demo", nih_root: Optional[os.PathLike] = None,
                 kind: str = "ct", seed: int = 0, only: Sequence[str] = (), report: bool = True,
                 seeds: Optional[int] = None, publish: Optional[os.PathLike] = None,
                 strategy: str = "auto") -> Path:
    """Run every unfinished stage of the protocol into ``out``, then write the report (and, with
    ``publish``, copy what a results folder such as docs/results/study/ holds: detection/publish.py).
    ``seeds``: detector training seeds per protocol (default: the preset's); ``strategy``: as ``plan``."""
    out = Path(out).resolve()
    run = PipelinePaths(out)
    cfg = preset(preset_name)
    out.mkdir(parents=True, exist_ok=True)
    stages = plan(cfg, out, Path(nih_root).resolve() if nih_root else None, kind, seed, seeds, strategy)
    unknown = set(only) - {s.name for s in stages}
    if unknown:
        raise ValueError(f"unknown stage(s) {sorted(unknown)}; stages: {[s.name for s in stages]}")
    env = package_env(dict(os.environ, PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION="python",
                           TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1", PYTHONWARNINGS="ignore"))
    t0 = time.time()
    with procs.RunLock(run.lock):  # a second pipeline on this folder refuses (procs.LockedError)
        atomic_write_text(run.pipeline_json, json.dumps(
            {"preset": preset_name, "nih_root": str(nih_root) if nih_root else None, "kind": kind,
             "seed": seed, "seeds": seeds if seeds is not None else cfg.detection.seeds, "strategy": strategy,
             "stages": [s.name for s in stages]}, indent=1))
        for i, stage in enumerate(stages, 1):
            if only and stage.name not in only:
                continue
            if run.marker(stage.name).is_file():
                print(f"[{i}/{len(stages)}] {stage.name}: already complete, skipped", flush=True)
                continue
            run_stage(out, stage, i, len(stages), env)
        if report:
            from cxr_keras.report import write_report

            write_report(out)
            print(f"report: {run.report_html}", flush=True)
        if publish is not None:
            from cxr_keras.detection.publish import publish_run

            print(f"published: {publish_run(out, publish, wall_seconds=time.time() - t0)}", flush=True)
    print(f"pipeline finished in {time.time() - t0:.0f} s", flush=True)
    return out
