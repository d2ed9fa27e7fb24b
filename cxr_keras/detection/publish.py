"""Copy what a results folder (e.g. ``docs/results/study/``) holds from a finished pipeline run.

    python -m cxr_keras.detection.publish --run runs/study --out docs/results/study

Written: ``README.md`` (command, preset, seeds, wall time and stage times, versions, how to
recompute Table 2), ``report.md`` with its PNGs, ``table2/`` (table2.md, the CSVs, the plot),
``det/<run>/`` (protocol.json, scores.csv and the raw detections of every scored checkpoint,
test and validation, as compressed .npz, each < 5 MiB), ``od_configs/`` (pipeline configs,
protocols.json, val_split.json). Table 2 is then recomputed from ``det/*`` alone and must match
``table2/table2.csv`` byte for byte (``README.md`` says so).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

from cxr_keras import procs
from cxr_keras.detection.table2 import output_files
from cxr_keras.io_utils import atomic_write_text, read_json
from cxr_keras.paths import DetectorRunPaths, PipelinePaths, package_env

PathLike = Union[str, os.PathLike]
MAX_NPZ = 5 * 2 ** 20
PACKAGES = ("tensorflow", "tf-models-research-object-detection", "tf-models-official", "numpy", "pycocotools")


class PublishError(ValueError):
    """The run folder is incomplete or a file is too large to publish."""


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def _table2_argv(run: PipelinePaths) -> Tuple[List[str], List[Path]]:
    """The table2 stage's evaluate_localisation flags other than --runs / --out, and its --runs."""
    marker = read_json(run.marker("table2"), PublishError, "table2 stage not finished", "stage marker")
    words = shlex.split(marker["command"])[2:]  # drop "cxr-keras evaluate_localisation"
    out, runs, flag = [], [], None
    for w in words:
        if w.startswith("--"):
            flag = w
        if flag == "--runs":
            runs += [] if w == "--runs" else [Path(w)]
        elif flag != "--out":
            out.append(w)
    return out, runs


def _copy_runs(run: PipelinePaths, runs: List[Path], det_out: Path) -> List[str]:
    """det/<name>/: the files Table 2 was computed from (no checkpoints), for exactly the runs of the
    table2 stage (not other folders a stopped run may have left under detection/); return the names."""
    names = []
    for folder in sorted(runs, key=lambda f: f.name):
        if not folder.is_dir():
            raise PublishError(f"{folder}: a run of the table2 stage is missing")
        paths, dst = DetectorRunPaths(folder), DetectorRunPaths(det_out / folder.name)
        files = paths.detection_files() + paths.val_detection_files()
        if not files:
            continue
        for f in files:
            if f.stat().st_size >= MAX_NPZ:
                raise PublishError(f"{f}: {f.stat().st_size / 2 ** 20:.1f} MiB, over the 5 MiB limit")
            _copy(f, dst.root / f.relative_to(paths.root))
        for f in (paths.protocol, paths.scores, paths.config):
            if f.is_file():
                _copy(f, dst.root / f.name)
        names.append(folder.name)
    return names


def _report(run: PipelinePaths, out: Path) -> None:
    """report.md and the PNGs it links, the links kept relative."""
    text = run.report_md.read_text()
    for link in re.findall(r"\]\(([^)]+\.png)\)", text):
        if (run.root / link).is_file():
            _copy(run.root / link, out / link)
    atomic_write_text(out / "report.md", text.replace(str(run.root), "RUN_DIR"))


def _verify(out: Path, names: List[str], flags: List[str]) -> bool:
    """Recompute Table 2 from det/* only; True when table2.csv comes out byte for byte the same."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "cxr_keras.cli.evaluate_localisation", "--runs",
               *(str(out / "det" / n) for n in names), *flags, "--out", tmp]
        proc = procs.run(cmd, env=package_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise PublishError(f"recomputing Table 2 from {out / 'det'} failed:\n{proc.stderr[-2000:]}")
        return (Path(tmp) / "table2.csv").read_bytes() == (out / "table2" / "table2.csv").read_bytes()


def _stage_times(run: PipelinePaths, stages: List[str]) -> Dict[str, float]:
    out = {}
    for name in stages:
        marker = run.marker(name)
        if marker.is_file():
            out[name] = float(read_json(marker, PublishError, what=marker.name).get("seconds", 0))
    return out


def _preset_seeds(name) -> Optional[int]:
    from cxr_keras.config import PRESETS

    return PRESETS[name]().detection.seeds if name in PRESETS else None


def _readme(run: PipelinePaths, pipe: dict, names: List[str], flags: List[str], same: bool,
            wall_seconds: Optional[float], out: Path) -> str:
    times = _stage_times(run, pipe.get("stages", []))
    versions = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    preset_seeds = _preset_seeds(pipe.get("preset"))
    command = (f"cxr-keras run_pipeline --preset {pipe.get('preset')} --out runs/{run.root.name} --seed "
               f"{pipe.get('seed', 0)}"
               + (f" --seeds {pipe.get('seeds')}" if pipe.get("seeds") not in (None, preset_seeds) else "")
               + (f" --nih-root {pipe['nih_root']}" if pipe.get("nih_root")
                  else f" --kind {pipe.get('kind', 'ct')}")
               + f" --publish {out.as_posix()}")
    lines = [f"# Results: preset `{pipe.get('preset')}`", "",
             "Run with (one command; `make venv` first):", "", f"    {command}", "",
             f"Data seed {pipe.get('seed', 0)}; detector training seeds 0..{int(pipe.get('seeds') or 1) - 1} per "
             f"protocol; dataset: {pipe.get('nih_root') or 'embedded ' + str(pipe.get('kind', 'ct'))}.", "",
             f"Wall time: {sum(times.values()) / 60:.1f} min summed over the stages"
             + (f"; {wall_seconds / 60:.1f} min for the last invocation" if wall_seconds else "") + ".", "",
             "| stage | seconds |", "|---|---:|"] + [f"| {k} | {v:.0f} |" for k, v in times.items()]
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".", "",
              "Table 2 (`table2/`) is recomputed from the raw detections in `det/` alone with", "",
              "    python scripts/evaluate_localisation.py --runs " + f"{out.as_posix()}/det/* "
              + " ".join(shlex.quote(f) for f in flags) + f" --out {out.as_posix()}/table2", "",
              "Checked when published: table2.csv recomputed from det/* is "
              f"{'identical' if same else 'DIFFERENT'}.",
              "", "Runs: " + ", ".join(f"`det/{n}`" for n in names) + ". `report.md`: the run's report.", ""]
    return "\n".join(lines)


def publish_run(run_dir: PathLike, out_dir: PathLike, wall_seconds: Optional[float] = None) -> Path:
    """Write the results folder ``out_dir`` from the finished run ``run_dir``; return ``out_dir``."""
    run, out = PipelinePaths(Path(run_dir).resolve()), Path(out_dir)
    pipe = read_json(run.pipeline_json, PublishError, "not a run_pipeline folder", "pipeline.json")
    flags, table2_runs = _table2_argv(run)
    if not run.report_md.is_file():
        raise PublishError(f"{run.report_md}: no report (run the pipeline without --no-report)")
    names = _copy_runs(run, table2_runs, out / "det")
    for name, path in output_files(run.table2).items():
        if path.is_file():
            _copy(path, out / "table2" / path.name)
    for f in sorted(run.od_configs.glob("*.config")) + sorted(run.od_configs.glob("*.json")):
        _copy(f, out / "od_configs" / f.name)
    _report(run, out)
    same = _verify(out, names, flags)
    atomic_write_text(out / "README.md", _readme(run, pipe, names, flags, same, wall_seconds, out))
    atomic_write_text(out / "pipeline.json", json.dumps(pipe, indent=1))
    if not same:
        raise PublishError(f"{out}: Table 2 recomputed from det/* differs from {run.table2}/table2.csv")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="a finished run_pipeline folder")
    p.add_argument("--out", required=True, help="results folder, e.g. docs/results/study")
    a = p.parse_args(argv)
    try:
        print(f"published: {publish_run(a.run, a.out)}")
    except (PublishError, OSError) as exc:
        sys.exit(f"publish: {exc}")


if __name__ == "__main__":
    sys.exit(main())
