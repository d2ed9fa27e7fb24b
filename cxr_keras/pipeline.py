"""The stage runner behind ``scripts/run_pipeline.py``: the whole protocol, from nothing to a report.

Stages run as subprocesses of the public scripts (each one a command a user could type, recorded
in the report), log to ``RUN_DIR/logs/<stage>.log`` and leave ``RUN_DIR/stages/<stage>.json`` when
they succeed. A stage with that marker is skipped, so a killed run continues where it stopped.
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

from cxr_keras.config import PipelineConfig, preset
from cxr_keras.io_utils import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
# TensorFlow start-up chatter kept out of the console (it stays in the stage's log).
NOISE = ("tensorflow/", "stream_executor", "cuda", "TensorRT", "rebuild TensorFlow", "AVX", "oneDNN",
         "WARNING:", "warnings.warn", "Warning:")


@dataclass
class Stage:
    """One step of the protocol: a script invocation and the folder it fills."""

    name: str
    argv: List[str]
    output: Path
    prepare: Optional[Callable[["Stage"], None]] = None  # last-minute tweaks (e.g. --resume)
    env: dict = field(default_factory=dict)

    def command(self) -> List[str]:
        return [sys.executable, str(SCRIPTS / self.argv[0])] + [str(a) for a in self.argv[1:]]


class StageFailed(RuntimeError):
    pass


def _resume_if_started(flag: str = "--resume"):
    def prepare(stage: Stage) -> None:
        if (stage.output / "checkpoints").is_dir() and flag not in stage.argv:
            stage.argv.append(flag)
    return prepare


def plan(cfg: PipelineConfig, out: Path, nih_root: Optional[Path] = None, kind: str = "ct",
         seed: int = 0) -> List[Stage]:
    """The ordered stages of the protocol for one preset."""
    p = cfg.name
    data = Path(nih_root) if nih_root else out / "data"
    rec, gan, syn, det = out / "records", out / "gan", out / "syn", out / "detection"
    stages: List[Stage] = []
    if nih_root is None:
        argv = ["make_phantoms.py", "--kind", kind, "--out", data, "--seed", seed,
                "--healthy", cfg.phantom_healthy]
        if cfg.phantom_limit is not None:
            argv += ["--limit", cfg.phantom_limit]
        stages.append(Stage("dataset", argv, data))
    stages.append(Stage("records", [
        "make_tfrecords.py", "--nih-root", data, "--out", rec, "--image-size", cfg.records.image_size,
        "--healthy", cfg.data.healthy, "--seed", seed, "--train-frac", cfg.data.train_frac], rec))
    for model in ("pix2pix", "pix2pix_n", "stargan"):
        stages.append(Stage(f"train_{model}", [
            "train_gan.py", "--model", model, "--records", rec, "--out", gan / model,
            "--preset", p, "--seed", seed], gan / model, prepare=_resume_if_started()))
    for model in ("pix2pix", "pix2pix_n"):
        stages.append(Stage(f"synthesize_{model}", [
            "synthesize.py", "--run", gan / model, "--records", rec, "--count", cfg.synthesis.count,
            "--outputs-per-input", cfg.synthesis.outputs_per_input, "--out", syn / model, "--seed", seed],
            syn / model))
        stages.append(Stage(f"evaluate_{model}", [
            "evaluate_gan.py", "--run", gan / model, "--records", rec], gan / model))
    stages.append(Stage("synthesize_stargan", [
        "synthesize.py", "--run", gan / "stargan", "--records", rec,
        "--per-finding", cfg.synthesis.stargan_per_finding, "--out", syn / "stargan", "--seed", seed],
        syn / "stargan"))
    stages.append(Stage("od_configs", [
        "make_od_configs.py", "--records", rec, "--out", out / "od_configs", "--preset", p,
        "--synthetic", f"pix2pix={syn / 'pix2pix'}", f"pix2pix_n={syn / 'pix2pix_n'}"], out / "od_configs"))
    protocol_runs = []
    for protocol in cfg.detection.protocols:
        run = det / protocol
        protocol_runs.append(run)
        stages.append(Stage(f"detector_{protocol}", [
            "train_detector.py", "--protocol", protocol, "--config",
            out / "od_configs" / f"{protocol}.config", "--out", run, "--preset", p], run))
    d = cfg.detection
    stages.append(Stage("table2", [
        "evaluate_localisation.py", "--runs", *protocol_runs, "--iou", d.iou,
        "--steps", ",".join(str(s) for s in d.eval_steps), "--window", d.window,
        "--mode", d.localisation_mode, "--score-threshold", d.score_threshold,
        "--out", out / "table2"], out / "table2"))
    study = out / "study"
    stages.append(Stage("reader_study", [
        "reader_study.py", "build", "--real", rec, "--generated",
        f"pix2pix={syn / 'pix2pix'}", f"pix2pix_n={syn / 'pix2pix_n'}", f"stargan={syn / 'stargan'}",
        "--per-finding", cfg.study.per_finding, "--seed", seed, "--out", study], study))
    stages.append(Stage("auto_judge", [
        "reader_study.py", "auto-judge", study, "--epochs", cfg.study.judge_epochs], study / "auto_judge"))
    return stages


def _marker(out: Path, stage: Stage) -> Path:
    return out / "stages" / f"{stage.name}.json"


def run_stage(out: Path, stage: Stage, index: int, total: int, env: dict) -> float:
    """Run one stage's command, tee its output into its log; raise StageFailed on a non-zero exit."""
    if stage.prepare:
        stage.prepare(stage)
    cmd = stage.command()
    log = out / "logs" / f"{stage.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    shown = " ".join(shlex.quote(c) for c in [Path(cmd[0]).name, os.path.relpath(cmd[1], REPO)] + cmd[2:])
    print(f"[{index}/{total}] {stage.name}: {shown}", flush=True)
    t0 = time.time()
    with open(log, "ab") as fh:
        fh.write(f"\n$ {shown}\n".encode())
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env={**env, **stage.env}, cwd=REPO)
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
    atomic_write_text(_marker(out, stage), json.dumps(
        {"stage": stage.name, "command": shown, "seconds": round(seconds, 1),
         "finished": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=1))
    print(f"    done in {seconds:.0f} s", flush=True)
    return seconds


def run_pipeline(out: os.PathLike, preset_name: str = "demo", nih_root: Optional[os.PathLike] = None,
                 kind: str = "ct", seed: int = 0, only: Sequence[str] = (), report: bool = True) -> Path:
    """Run every unfinished stage of the protocol into ``out``, then write the report."""
    out = Path(out).resolve()
    cfg = preset(preset_name)
    out.mkdir(parents=True, exist_ok=True)
    stages = plan(cfg, out, Path(nih_root).resolve() if nih_root else None, kind, seed)
    unknown = set(only) - {s.name for s in stages}
    if unknown:
        raise ValueError(f"unknown stage(s) {sorted(unknown)}; stages: {[s.name for s in stages]}")
    env = dict(os.environ, PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION="python", TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONUNBUFFERED="1", PYTHONWARNINGS="ignore")
    atomic_write_text(out / "pipeline.json", json.dumps(
        {"preset": preset_name, "nih_root": str(nih_root) if nih_root else None, "kind": kind,
         "seed": seed, "stages": [s.name for s in stages]}, indent=1))
    t0 = time.time()
    for i, stage in enumerate(stages, 1):
        if only and stage.name not in only:
            continue
        if _marker(out, stage).is_file():
            print(f"[{i}/{len(stages)}] {stage.name}: already complete, skipped", flush=True)
            continue
        run_stage(out, stage, i, len(stages), env)
    if report:
        from cxr_keras.report import write_report

        write_report(out)
        print(f"report: {out / 'report.html'}", flush=True)
    print(f"pipeline finished in {time.time() - t0:.0f} s", flush=True)
    return out
