"""Where a study keeps its files, and loaders for the public (study.json) and private (key) parts.

STUDY_DIR/images/<id>.png is the only folder the web app serves; STUDY_DIR/private/ holds the key.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

from cxr_keras.io_utils import read_json

STUDY_VERSION = 1
REAL = "real"
# Opaque image ids are lower-case hex; anything else in a URL is refused before touching the disk.
ID_PATTERN = re.compile(r"^[0-9a-f]{8,64}$")
SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,39}$")


class StudyError(ValueError):
    """A study directory is missing, incomplete or inconsistent."""


@dataclass(frozen=True)
class StudyPaths:
    """File locations inside one STUDY_DIR."""

    root: Path

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def private(self) -> Path:
        return self.root / "private"

    @property
    def key(self) -> Path:
        return self.private / "key.json"

    @property
    def study_json(self) -> Path:
        return self.root / "study.json"

    @property
    def db(self) -> Path:
        return self.root / "study.sqlite"

    @property
    def build_report(self) -> Path:
        return self.root / "build_report.json"

    @property
    def scores(self) -> Path:
        return self.root / "scores"

    @property
    def auto_judge_json(self) -> Path:
        return self.root / "auto_judge.json"

    @property
    def auto_judge_md(self) -> Path:
        return self.root / "auto_judge.md"

    def image(self, image_id: str) -> Path:
        if not ID_PATTERN.match(image_id):
            raise StudyError(f"invalid image id {image_id!r}")
        return self.images / f"{image_id}.png"


def paths(study_dir: os.PathLike) -> StudyPaths:
    return StudyPaths(Path(study_dir))


def _load_json(path: Path, what: str) -> Dict:
    return read_json(path, StudyError, f"{what} not found (run `reader_study.py build` first)", what)


def load_study(study_dir: os.PathLike) -> Dict:
    """The public description: order of image ids, seed, sources, findings, counts (no key)."""
    p = paths(study_dir)
    data = _load_json(p.study_json, "study description")
    if data.get("version") != STUDY_VERSION:
        raise StudyError(f"{p.study_json}: unsupported study version {data.get('version')!r}")
    order = data.get("order")
    if not isinstance(order, list) or not all(isinstance(i, str) and ID_PATTERN.match(i) for i in order):
        raise StudyError(f"{p.study_json}: 'order' must be a list of hex image ids")
    if len(set(order)) != len(order):
        raise StudyError(f"{p.study_json}: 'order' lists an image id twice")
    return data


def load_key(study_dir: os.PathLike) -> Dict[str, Dict]:
    """The private key: image id → {source, finding, origin}."""
    p = paths(study_dir)
    data = _load_json(p.key, "study key")
    items = data.get("items")
    if not isinstance(items, dict):
        raise StudyError(f"{p.key}: expected an 'items' mapping of image id → entry")
    for image_id, entry in items.items():
        if not isinstance(entry, dict) or "source" not in entry or "finding" not in entry:
            raise StudyError(f"{p.key}: entry {image_id!r} lacks 'source' or 'finding'")
    return items


def sources_in_order(study: Dict) -> List[str]:
    return list(study.get("sources", []))
