"""Where each stage keeps its files: one object per folder layout (RECORDS/, RUN/, SYN/, the run folder).

Every reader and writer goes through these; no file name of these folders is spelled anywhere else.
Imports nothing from the package, so any module may use it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple

SPLITS = ("train", "test")
GENERATORS = ("pix2pix", "pix2pix_n", "stargan")


def _path(root: os.PathLike) -> Path:
    return root if isinstance(root, Path) else Path(root)


@dataclass(frozen=True)
class RecordsPaths:
    """RECORDS/: written by make_tfrecords (pairs, healthy and TF OD detection records per split)."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", _path(self.root))

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def label_map(self) -> Path:
        return self.root / "label_map.pbtxt"

    def pairs(self, split: str) -> Path:
        return self.root / f"pairs_{split}.tfrecord"

    def healthy(self, split: str) -> Path:
        return self.root / f"healthy_{split}.tfrecord"

    def det(self, split: str) -> Path:
        return self.root / f"det_{split}.tfrecord"

    def record(self, kind: str, split: str) -> Path:
        """``kind`` is one of pairs / healthy / det."""
        return {"pairs": self.pairs, "healthy": self.healthy, "det": self.det}[kind](split)

    @property
    def record_files(self) -> Tuple[Path, ...]:
        """Every file a complete RECORDS folder holds besides its manifest."""
        return tuple(self.record(k, s) for k in ("pairs", "healthy", "det") for s in SPLITS) + (self.label_map,)

    def has_pairs(self) -> bool:
        return any(self.pairs(s).is_file() for s in SPLITS)


@dataclass(frozen=True)
class RunPaths:
    """RUN/: one GAN training run (config, checkpoints, TensorBoard logs, samples, history, evaluation)."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", _path(self.root))

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def history(self) -> Path:
        return self.root / "history.csv"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    def sample(self, step: int) -> Path:
        return self.samples / f"step_{step:07d}.png"

    def eval_json(self, split: str) -> Path:
        return self.root / f"eval_{split}.json"

    def eval_md(self, split: str) -> Path:
        return self.root / f"eval_{split}.md"


@dataclass(frozen=True)
class SynPaths:
    """SYN/: one synthetic set (images, manifest with sources and fidelity, TF OD detection record)."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", _path(self.root))

    @property
    def images(self) -> Path:
        return self.root / "images"

    def image(self, name: str) -> Path:
        return self.images / name

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def detection(self) -> Path:
        return self.root / "detection.tfrecord"


@dataclass(frozen=True)
class PipelinePaths:
    """RUN_DIR/ of run_pipeline: every stage's folder, the stage logs and markers, the report."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", _path(self.root))

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def records(self) -> RecordsPaths:
        return RecordsPaths(self.root / "records")

    def gan(self, model: str) -> RunPaths:
        return RunPaths(self.root / "gan" / model)

    def syn(self, generator: str) -> SynPaths:
        return SynPaths(self.root / "syn" / generator)

    @property
    def od_configs(self) -> Path:
        return self.root / "od_configs"

    def od_config(self, protocol: str) -> Path:
        return self.od_configs / f"{protocol}.config"

    def detection(self, protocol: str) -> "DetectorRunPaths":
        return DetectorRunPaths(self.root / "detection" / protocol)

    @property
    def table2(self) -> Path:
        return self.root / "table2"

    @property
    def study(self) -> Path:
        return self.root / "study"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def stage_log(self, stage: str) -> Path:
        return self.logs / f"{stage}.log"

    @property
    def stages(self) -> Path:
        return self.root / "stages"

    def marker(self, stage: str) -> Path:
        return self.stages / f"{stage}.json"

    @property
    def pipeline_json(self) -> Path:
        return self.root / "pipeline.json"

    @property
    def lock(self) -> Path:
        """Held (procs.RunLock) while a pipeline works in the folder: its PID, start time, command."""
        return self.root / "pipeline.lock"

    @property
    def report_md(self) -> Path:
        return self.root / "report.md"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    @property
    def report_files(self) -> Path:
        return self.root / "report_files"


@dataclass(frozen=True)
class DetectorRunPaths:
    """DET_RUN/: one detector protocol run (OD API model dir, scored detections, export)."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", _path(self.root))

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def scores(self) -> Path:
        return self.root / "scores.csv"

    @property
    def detections(self) -> Path:
        return self.root / "detections"

    def detection(self, step: int) -> Path:
        return self.detections / f"step_{step:08d}.npz"

    def detection_files(self) -> List[Path]:
        """Every ``detection(step)`` file on disk, in step order."""
        return sorted(self.detections.glob("step_*.npz"))

    @staticmethod
    def detection_step(path: os.PathLike) -> int:
        """The step in a ``detection(step)`` file name (ValueError when it is not one)."""
        return int(Path(path).stem.split("_", 1)[1])

    @property
    def val_detections(self) -> Path:
        """Detections on the validation split (held-out training images) used to choose checkpoints."""
        return self.root / "detections_val"

    def val_detection(self, step: int) -> Path:
        return self.val_detections / self.detection(step).name

    def val_detection_files(self) -> List[Path]:
        return sorted(self.val_detections.glob("step_*.npz"))

    @property
    def log(self) -> Path:
        return self.root / "train.log"

    @property
    def protocol(self) -> Path:
        return self.root / "protocol.json"

    @property
    def config(self) -> Path:
        return self.root / "pipeline.config"

    @property
    def export(self) -> Path:
        return self.root / "export"


def package_env(env=None) -> dict:
    """``env`` (default: this process's) for a child ``python -m cxr_keras...``: the folder this
    cxr_keras was imported from goes first on PYTHONPATH unless it is a site-packages folder, so the
    child runs the same code from any working folder, installed or not."""
    import site

    env = dict(os.environ if env is None else env)
    root = str(Path(__file__).resolve().parents[1])
    sites = site.getsitepackages() + [site.getusersitepackages()]
    if root not in {str(Path(p).resolve()) for p in sites}:
        rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != root]
        env["PYTHONPATH"] = os.pathsep.join([root] + rest)
    return env
