"""Read the NIH ChestX-ray14 metadata, select the paper's six findings, split, sample healthy images.

The split is saved as a manifest (JSON) so that every later stage reuses exactly the same
annotations. Both the torchxrayvision copies of the CSVs and the official ones are accepted.
"""
from __future__ import annotations

import json
import os
import random
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import pandas as pd

from cxr_keras.config import FINDINGS, HEALTHY, DataConfig
from cxr_keras.data.images import NIH_IMAGE_SIZE  # noqa: F401  (nih.NIH_IMAGE_SIZE: the same constant)
from cxr_keras.io_utils import atomic_write_text, read_json

BBOX_NAMES = ("BBox_List_2017.csv", "BBox_List_2017.csv.gz")
ENTRY_NAMES = (
    "Data_Entry_2017_v2020.csv",
    "Data_Entry_2017_v2020.csv.gz",
    "Data_Entry_2017.csv",
    "Data_Entry_2017.csv.gz",
)
# The bbox list says "Infiltrate", Data_Entry says "Infiltration": we use the bbox spelling.
ALIASES = {"Infiltration": "Infiltrate"}
# The eight findings that carry boxes in BBox_List_2017 (the paper keeps six of them).
BOX_FINDINGS = FINDINGS + ("Mass", "Nodule")
MANIFEST_VERSION = 1


class MetadataError(ValueError):
    """A metadata file is missing, unreadable or lacks a column we need."""


def canonical_finding(label: str) -> str:
    """Map a label to the spelling used in the bbox list (``Infiltration`` → ``Infiltrate``)."""
    label = str(label).strip()
    return ALIASES.get(label, label)


def shipped_metadata_dir() -> Path:
    """The public NIH metadata shipped inside the package (from torchxrayvision 1.5.7)."""
    return Path(str(resources.files("cxr_keras.data") / "nih_metadata"))


def _first_existing(root: Path, names: Sequence[str]) -> Optional[Path]:
    for name in names:
        if (root / name).is_file():
            return root / name
    return None


def metadata_paths(nih_root: Optional[os.PathLike] = None) -> Tuple[Path, Path]:
    """Return (bbox_csv, data_entry_csv) under ``nih_root``; the shipped copies when it is None."""
    root = Path(nih_root) if nih_root is not None else shipped_metadata_dir()
    bbox = _first_existing(root, BBOX_NAMES)
    entry = _first_existing(root, ENTRY_NAMES)
    if bbox is None:
        raise MetadataError(f"{root}: no {' or '.join(BBOX_NAMES)} found")
    if entry is None:
        raise MetadataError(f"{root}: no {' or '.join(ENTRY_NAMES)} found")
    return bbox, entry


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise MetadataError(f"{path}: file not found") from None
    except Exception as exc:  # pandas raises many types for malformed files
        raise MetadataError(f"{path}: cannot parse CSV ({exc})") from exc


def read_bbox_list(path: os.PathLike) -> pd.DataFrame:
    """Parse ``BBox_List_2017.csv``: columns image, finding, x, y, w, h (floats, 1024² pixels)."""
    path = Path(path)
    df = _read_csv(path)
    cols = list(df.columns)
    if len(cols) < 6 or cols[0].strip() != "Image Index" or not cols[1].strip().startswith("Finding"):
        raise MetadataError(
            f"{path}: expected header 'Image Index,Finding Label,Bbox [x,y,w,h],,,' "
            f"(six fields), got {','.join(cols)!r}"
        )
    out = pd.DataFrame(
        {
            "image": df.iloc[:, 0].str.strip(),
            "finding": df.iloc[:, 1].map(canonical_finding),
        }
    )
    for i, name in enumerate("xywh"):
        values = pd.to_numeric(df.iloc[:, 2 + i], errors="coerce")
        out[name] = values
    bad = out[["x", "y", "w", "h"]].isna().any(axis=1)
    if bad.any():
        row = int(bad.idxmax()) + 2
        raise MetadataError(f"{path}: line {row}: box coordinates are not numbers")
    return out.reset_index(drop=True)


ENTRY_COLUMNS = {
    "Image Index": "image",
    "Finding Labels": "labels",
    "Patient ID": "patient",
    "Patient Age": "age",
    "Patient Gender": "sex",
    "View Position": "view",
}


def read_data_entry(path: os.PathLike) -> pd.DataFrame:
    """Parse ``Data_Entry_2017[_v2020].csv``: image, labels (tuple), patient, age, sex, view."""
    path = Path(path)
    df = _read_csv(path)
    df = df.loc[:, [c for c in df.columns if not c.startswith("Unnamed")]]  # trailing commas
    df.columns = [c.strip() for c in df.columns]
    if "Patient Sex" in df.columns and "Patient Gender" not in df.columns:
        df = df.rename(columns={"Patient Sex": "Patient Gender"})
    required = ("Image Index", "Finding Labels")
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise MetadataError(f"{path}: missing column(s) {', '.join(missing)}")
    out = pd.DataFrame({new: df[old] if old in df.columns else "" for old, new in ENTRY_COLUMNS.items()})
    out["image"] = out["image"].str.strip()
    out["labels"] = out["labels"].map(
        lambda s: tuple(canonical_finding(x) for x in str(s).split("|") if x.strip())
    )
    return out.reset_index(drop=True)


@dataclass
class Annotation:
    """One pathology box of the selected findings."""

    ann_id: int
    image: str
    finding: str
    label: int  # 1-based class id in FINDINGS order (the label map)
    box: List[float]  # x, y, w, h in original-image pixels
    split: str = ""


@dataclass
class Manifest:
    """The split every stage shares: annotations, healthy images, and what was skipped."""

    annotations: List[Annotation]
    healthy: List[Dict[str, str]]  # {"image": ..., "split": "train" | "test"}
    findings: Tuple[str, ...] = FINDINGS
    config: Dict = field(default_factory=dict)
    skipped: List[Dict[str, str]] = field(default_factory=list)
    nih_root: Optional[str] = None

    # -- views -------------------------------------------------------------------------------
    def split(self, name: str) -> List[Annotation]:
        return [a for a in self.annotations if a.split == name]

    def images(self, split: str) -> Dict[str, List[Annotation]]:
        """Annotations of one split grouped by image, in first-appearance order."""
        out: Dict[str, List[Annotation]] = {}
        for a in self.split(split):
            out.setdefault(a.image, []).append(a)
        return out

    def healthy_images(self, split: str) -> List[str]:
        return [h["image"] for h in self.healthy if h["split"] == split]

    def counts(self) -> Dict:
        per = {f: Counter() for f in self.findings}
        for a in self.annotations:
            per[a.finding][a.split] += 1
        return {
            "annotations": len(self.annotations),
            "images": len({a.image for a in self.annotations}),
            "train": len(self.split("train")),
            "test": len(self.split("test")),
            "per_finding": {f: {"total": sum(c.values()), "train": c["train"], "test": c["test"]}
                            for f, c in per.items()},
            "healthy": {s: len(self.healthy_images(s)) for s in ("train", "test")},
            "skipped": len(self.skipped),
        }

    # -- persistence ---------------------------------------------------------------------------
    def to_json(self) -> Dict:
        return {
            "version": MANIFEST_VERSION,
            "nih_root": self.nih_root,
            "findings": list(self.findings),
            "config": self.config,
            "counts": self.counts(),
            "annotations": [asdict(a) for a in self.annotations],
            "healthy": self.healthy,
            "skipped": self.skipped,
        }

    def save(self, path: os.PathLike, extra: Optional[Dict] = None) -> None:
        data = self.to_json()
        if extra:
            data.update(extra)
        atomic_write_text(path, json.dumps(data, indent=1))

    @classmethod
    def load(cls, path: os.PathLike) -> "Manifest":
        path = Path(path)
        data = read_json(path, MetadataError, "manifest not found (run scripts/make_tfrecords.py)", "manifest")
        if data.get("version") != MANIFEST_VERSION:
            raise MetadataError(f"{path}: unsupported manifest version {data.get('version')!r}")
        return cls(
            annotations=[Annotation(**a) for a in data["annotations"]],
            healthy=list(data["healthy"]),
            findings=tuple(data["findings"]),
            config=data.get("config", {}),
            skipped=list(data.get("skipped", [])),
            nih_root=data.get("nih_root"),
        )


def select_annotations(
    boxes: pd.DataFrame, findings: Sequence[str] = FINDINGS, source: str = "BBox_List_2017.csv"
) -> Tuple[List[Annotation], List[Dict[str, str]]]:
    """Keep the boxes of ``findings``; skip zero-area boxes and unknown labels (with reasons)."""
    keep: List[Annotation] = []
    skipped: List[Dict[str, str]] = []
    for row in boxes.itertuples(index=False):
        where = f"{source}: {row.image}"
        if row.finding not in BOX_FINDINGS and row.finding not in findings:
            skipped.append({"item": where, "reason": f"unknown finding label {row.finding!r}"})
            continue
        if row.finding not in findings:
            continue  # Mass / Nodule: dropped by design, not an error
        if not (row.w > 0 and row.h > 0):
            skipped.append({"item": where, "reason": f"zero-area box {row.w:g}x{row.h:g}"})
            continue
        keep.append(
            Annotation(
                ann_id=len(keep),
                image=row.image,
                finding=row.finding,
                label=list(findings).index(row.finding) + 1,
                box=[float(row.x), float(row.y), float(row.w), float(row.h)],
            )
        )
    return keep, skipped


def split_annotations(
    annotations: List[Annotation], train_frac: float = 0.7, seed: int = 0
) -> List[Annotation]:
    """Split 70/30 by annotation, stratified per finding, seeded, never splitting an image.

    Each finding gets a train quota of floor(train_frac · n). Images are visited in a seeded
    order, those with the most boxes first; an image goes to train when all of its boxes still fit
    their findings' quotas, otherwise to test. Single-box images then fill the quotas exactly.
    """
    if not 0.0 < train_frac < 1.0:
        raise ValueError(f"train_frac must be in (0, 1), got {train_frac}")
    per_finding = Counter(a.finding for a in annotations)
    quota = {f: int(n * train_frac + 1e-9) for f, n in per_finding.items()}
    by_image: Dict[str, List[Annotation]] = defaultdict(list)
    for a in annotations:
        by_image[a.image].append(a)
    order = sorted(by_image)
    random.Random(seed).shuffle(order)
    order.sort(key=lambda im: -len(by_image[im]))  # stable: shuffled within equal sizes
    used = Counter()
    for image in order:
        need = Counter(a.finding for a in by_image[image])
        fits = all(used[f] + n <= quota[f] for f, n in need.items())
        split = "train" if fits else "test"
        if fits:
            used.update(need)
        for a in by_image[image]:
            a.split = split
    return annotations


def sample_healthy(
    entries: pd.DataFrame, n_train: int, n_test: int, seed: int = 0, exclude: Iterable[str] = ()
) -> List[Dict[str, str]]:
    """Draw ``n_train + n_test`` "No Finding" images (seeded); the first n_train are train."""
    excluded = set(exclude)
    pool = sorted(
        im for im, labels in zip(entries["image"], entries["labels"])
        if labels == (HEALTHY,) and im not in excluded
    )
    want = n_train + n_test
    rng = random.Random(seed + 1)
    chosen = rng.sample(pool, min(want, len(pool)))
    # Too few healthy images for both: share what there is in proportion, so the test split is not empty.
    n_tr = n_train if len(chosen) == want else min(n_train, round(len(chosen) * n_train / max(want, 1)))
    return [{"image": im, "split": "train" if i < n_tr else "test"} for i, im in enumerate(chosen)]


def healthy_test_count(cfg: DataConfig) -> int:
    """Healthy test images: enough for the StarGAN reader set (25 per finding), scaled down for small runs."""
    return min(25 * len(cfg.findings), max(1, round(cfg.healthy * (1 - cfg.train_frac) / cfg.train_frac)))


def build_manifest(
    nih_root: Optional[os.PathLike] = None,
    cfg: DataConfig = DataConfig(),
    available: Optional[Iterable[str]] = None,
) -> Manifest:
    """Select, split and sample from the metadata under ``nih_root`` (shipped copy when None).

    ``available``: image names present on disk. Annotations of absent images are skipped with a
    reason before the split, so the split is made over what can actually be used.
    """
    bbox_path, entry_path = metadata_paths(nih_root)
    boxes = read_bbox_list(bbox_path)
    entries = read_data_entry(entry_path)
    anns, skipped = select_annotations(boxes, cfg.findings, source=bbox_path.name)
    if available is not None:
        have = set(available)
        present = []
        for a in anns:
            if a.image in have:
                present.append(a)
            else:
                skipped.append({"item": a.image, "reason": "listed in the bbox CSV but missing on disk"})
        anns = [Annotation(**{**asdict(a), "ann_id": i}) for i, a in enumerate(present)]
        entries = entries[entries["image"].isin(have)]
    split_annotations(anns, cfg.train_frac, cfg.seed)
    annotated = {a.image for a in anns}
    healthy = sample_healthy(entries, cfg.healthy, healthy_test_count(cfg) if cfg.healthy else 0,
                             cfg.seed, exclude=annotated)
    return Manifest(
        annotations=anns,
        healthy=healthy,
        findings=tuple(cfg.findings),
        config=asdict(cfg),
        skipped=skipped,
        nih_root=str(nih_root) if nih_root is not None else None,
    )


def find_images(nih_root: os.PathLike) -> Dict[str, Path]:
    """Index the PNGs of an NIH folder: ``images/*.png`` or ``images_*/images/*.png``."""
    root = Path(nih_root)
    found: Dict[str, Path] = {}
    for pattern in ("images/*.png", "images_*/images/*.png", "images_*/*.png"):
        for p in sorted(root.glob(pattern)):
            found.setdefault(p.name, p)
    return found
