"""The detection part of ``run_pipeline``'s plan: detectors per seed and protocol, the prior-box
baseline, Table 2. Plain (name, argv, output folder) triples; ``pipeline.py`` makes them stages.

Seed k of protocol P trains into ``detection/P`` (k = 0) or ``detection/P_seedK``; seeds run in
the outer loop, so a run cut short still has complete comparisons for its first seeds.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

from cxr_keras.config import PipelineConfig
from cxr_keras.detection.baseline import NAME as BASELINE
from cxr_keras.paths import PipelinePaths

StageSpec = Tuple[str, List, Path]


def run_name(protocol: str, seed_index: int) -> str:
    """The run folder (and stage) name of one protocol and training seed."""
    return protocol if seed_index == 0 else f"{protocol}_seed{seed_index}"


def strategy_args(strategy: str) -> List[str]:
    """The ``--strategy`` flag a trainer stage gets: none for ``auto`` (each command's default)."""
    return [] if strategy == "auto" else ["--strategy", strategy]


def detection_stages(cfg: PipelineConfig, run: PipelinePaths, seeds: Optional[int] = None,
                     strategy: str = "auto") -> List[StageSpec]:
    """train_detector per seed and protocol (``strategy`` passed on unless auto), the prior box
    (``train_detector --prior-box``), Table 2."""
    d = cfg.detection
    n_seeds = int(seeds if seeds is not None else d.seeds)
    if n_seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {n_seeds}")
    specs: List[StageSpec] = []
    runs = []
    for k in range(n_seeds):
        for protocol in d.protocols:
            det = run.detection(run_name(protocol, k)).root
            runs.append(det)
            specs.append((f"detector_{run_name(protocol, k)}", [
                "train_detector", "--protocol", protocol, "--config", run.od_config(protocol),
                "--out", det, "--preset", cfg.name, "--seed", k,
                *strategy_args(strategy)], det))
    prior = run.detection(BASELINE).root
    specs.append((BASELINE, ["train_detector", "--prior-box", "--config", run.od_config(d.protocols[0]),
                             "--out", prior], prior))
    specs.append(("table2", [
        "evaluate_localisation", "--runs", *runs, prior, "--iou", ",".join(str(t) for t in d.ious),
        "--steps", ",".join(str(s) for s in d.eval_steps), "--window", d.window,
        "--mode", d.localisation_mode, "--score-threshold", d.score_threshold, "--select", d.select,
        "--draws", d.draws, "--out", run.table2], run.table2))
    return specs
