"""Draw the verification set of the reader study and anonymise it (issue 6, step 1).

Per source (real + each generator) ``per_finding`` images of each finding are drawn with a seed,
brought to one common resolution (every image area-resized down to the smallest native size among
the sources, so a 128-px StarGAN image and a 1024-px real one travel the same down- and up-sampling
path and resolution cannot give a source away), their borders are cropped (GAN border artefacts
would give fakes away), they are resized to ``image_size``, shuffled together, renamed to random opaque ids and written as uncompressed PNGs of one
byte size whatever their source (``STUDY_PNG_COMPRESSION``). The key (id → source, finding,
origin) goes to STUDY_DIR/private/key.json, which the web app never serves.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import random
import secrets
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Mapping, Sequence, Tuple

import cv2
import numpy as np

from cxr_keras.config import FINDINGS, StudyConfig
from cxr_keras.data.images import ImageError, encode_png, load_gray, to_gray_uint8
from cxr_keras.io_utils import atomic_write_text, read_json
from cxr_keras.paths import RecordsPaths, SynPaths
from cxr_keras.study import db as study_db
from cxr_keras.study.layout import REAL, SOURCE_NAME, STUDY_VERSION, StudyError, StudyPaths, paths

REAL_SPLITS = {"test": ("test",), "train": ("train",), "test+train": ("test", "train"),
               "all": ("test", "train")}
# Every served image: 8-bit gray, image_size², stored uncompressed (zlib level 0). A compressed PNG's
# size follows its content (noise compresses badly) and a browser shows it; uncompressed, every study
# image has the same byte count and the same chunks, whatever its source.
STUDY_PNG_COMPRESSION = 0


@dataclass
class Candidate:
    """One image that may enter the study; ``load`` returns it as 2-D uint8."""

    source: str
    finding: str
    key: str  # unique within the source (file or image id)
    group: str  # the underlying radiograph (a real image id / a generated image's source_image)
    origin: Dict
    load: Callable[[], np.ndarray]
    rank: int = 0  # preference within (source, finding): lower first (e.g. test before train)


@dataclass
class SourceCandidates:
    """Everything one input folder offers, plus what had to be skipped and why."""

    source: str
    path: str
    kind: str  # records | folder
    candidates: List[Candidate] = field(default_factory=list)
    skipped: List[Dict[str, str]] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)


# -- reading the inputs --------------------------------------------------------------------------
def parse_generated_arg(values: Sequence[str]) -> Dict[str, Path]:
    """Parse ``NAME=DIR`` pairs (``--generated pix2pix=SYN1 stargan=SYN2``) into an ordered dict."""
    out: Dict[str, Path] = {}
    for v in values:
        name, sep, d = v.partition("=")
        if not sep or not name or not d:
            raise StudyError(f"--generated expects NAME=DIR, got {v!r}")
        check_source_name(name)
        if name in out:
            raise StudyError(f"--generated: source name {name!r} given twice")
        out[name] = Path(d)
    return out


def check_source_name(name: str) -> None:
    if name == REAL:
        raise StudyError(f"generated source may not be called {REAL!r} (reserved for the real images)")
    if not SOURCE_NAME.match(name):
        raise StudyError(f"source name {name!r}: use letters, digits, '_' or '-' (at most 40)")


def _read_manifest(folder: Path) -> Dict:
    path = SynPaths(folder).manifest
    data = read_json(path, StudyError, f"manifest not found ({folder} is not a SYN-like folder)")
    if not isinstance(data, dict) or not isinstance(data.get("items"), list):
        raise StudyError(f"{path}: expected an object with an 'items' list")
    return data


def folder_candidates(source: str, folder: os.PathLike, findings: Sequence[str] = FINDINGS) -> SourceCandidates:
    """Candidates of a SYN-like folder: images/*.png + manifest.json items {file, finding, ...}."""
    folder = Path(folder)
    manifest = SynPaths(folder).manifest
    if not folder.is_dir():
        raise StudyError(f"{folder}: not a directory (source {source!r})")
    data = _read_manifest(folder)
    out = SourceCandidates(source, str(folder), "folder")
    gen = data.get("generator")
    if source != REAL and gen is not None and gen != source:
        out.notes.append(f"{manifest} names generator {gen!r}; used as source {source!r}")
    root = folder.resolve()
    seen = set()
    for i, item in enumerate(data["items"]):
        where = f"{manifest}: item {i}"
        if not isinstance(item, dict) or not isinstance(item.get("file"), str):
            out.skipped.append({"item": where, "reason": "no 'file' string"})
            continue
        finding = item.get("finding")
        if finding not in findings:
            out.skipped.append({"item": f"{where} ({item['file']})",
                                "reason": f"finding {finding!r} is not one of the study findings"})
            continue
        file_path = (folder / item["file"]).resolve()
        if root not in file_path.parents:
            out.skipped.append({"item": f"{where} ({item['file']})", "reason": "file lies outside the folder"})
            continue
        if not file_path.is_file():
            out.skipped.append({"item": f"{where} ({item['file']})", "reason": "file not found"})
            continue
        if item["file"] in seen:
            out.skipped.append({"item": f"{where} ({item['file']})", "reason": "listed twice"})
            continue
        seen.add(item["file"])
        origin = {"dir": str(folder), "file": item["file"]}
        for k in ("source_image", "ann_ids", "split", "image_id"):
            if k in item:
                origin[k] = item[k]
        group = str(item.get("source_image") or item.get("image_id") or item["file"])
        out.candidates.append(Candidate(source, finding, item["file"], group, origin,
                                        load=lambda p=file_path: load_gray(p)))
    return out


def records_candidates(records_dir: os.PathLike, splits: Sequence[str] = ("test", "train"),
                       findings: Sequence[str] = FINDINGS) -> SourceCandidates:
    """Real candidates from RECORDS/pairs_<split>.tfrecord (annotated pairs; one per image)."""
    import tensorflow as tf  # imported only when RECORDS are read: the web app never needs it

    from cxr_keras.records.pairs import read_pairs

    records = RecordsPaths(records_dir)
    out = SourceCandidates(REAL, str(records.root), "records")
    seen = set()
    for rank, split in enumerate(splits):
        path = records.pairs(split)
        if not path.is_file():
            out.notes.append(f"{path}: not found, split {split!r} not used")
            continue
        try:
            for ex in read_pairs([str(path)]).as_numpy_iterator():  # streamed: only uint8 copies kept
                if ex["source"].decode() != "annotated":
                    continue
                finding = ex["finding"].decode()
                image_id = ex["image_id"].decode()
                if finding not in findings:
                    out.skipped.append({"item": f"{path.name}: {image_id}",
                                        "reason": f"finding {finding!r} is not one of the study findings"})
                    continue
                if (image_id, finding) in seen:
                    continue  # a second box of the same finding: same radiograph
                seen.add((image_id, finding))
                img = np.clip(np.round((ex["image"][:, :, 0] + 1.0) * 127.5), 0, 255).astype(np.uint8)
                origin = {"records": str(path), "image_id": image_id, "ann_id": int(ex["ann_id"]),
                          "split": split}
                out.candidates.append(Candidate(REAL, finding, f"{split}:{image_id}:{finding}", image_id,
                                                origin, load=lambda a=img: a, rank=rank))
        except tf.errors.OpError as exc:  # corrupt record: name the file, not a TF stack trace
            raise StudyError(f"{path}: cannot read pair records ({type(exc).__name__}: {exc.message})") from None
    if not any(records.pairs(s).is_file() for s in splits):
        names = ", ".join(records.pairs(s).name for s in splits)
        raise StudyError(f"{records.root}: no {names} (not a RECORDS folder)")
    return out


def real_candidates(real: os.PathLike, splits: Sequence[str] = ("test", "train"),
                    findings: Sequence[str] = FINDINGS) -> SourceCandidates:
    """Real images from a RECORDS folder (pair records) or a SYN-like folder (manifest.json)."""
    real = Path(real)
    records, folder = RecordsPaths(real), SynPaths(real)
    if not real.is_dir():
        raise StudyError(f"{real}: --real must be a RECORDS folder or a folder with {folder.manifest.name}")
    if records.has_pairs():
        return records_candidates(real, splits, findings)
    if folder.manifest.is_file():
        return folder_candidates(REAL, real, findings)
    pairs = "/".join(records.pairs(s).name for s in ("train", "test"))
    raise StudyError(f"{real}: neither {pairs} (RECORDS) nor {folder.manifest.name} (image folder) found")


# -- drawing ---------------------------------------------------------------------------------------
def _rng(seed: int, *parts: str) -> random.Random:
    # str seeds are hashed with SHA-512 by random.seed: stable across runs and PYTHONHASHSEED.
    return random.Random(":".join([str(seed), *parts]))


def draw(cands: Iterable[Candidate], source: str, findings: Sequence[str], per_finding: int, seed: int,
         avoid_groups: Iterable[str] = ()) -> Tuple[List[Candidate], Dict[str, Dict[str, int]]]:
    """Seeded draw of ``per_finding`` candidates per finding for one source.

    Preferences, in order: lower ``rank`` (e.g. test split first), radiographs not yet drawn for this
    source, radiographs not in ``avoid_groups`` (real images whose synthetic versions are in the study:
    a reader seeing both could match them by the untouched box). A real radiograph is never drawn twice.
    """
    by_finding: Dict[str, List[Candidate]] = {f: [] for f in findings}
    for c in cands:
        if c.finding in by_finding:
            by_finding[c.finding].append(c)
    avoid = set(avoid_groups)
    used_groups: set = set()
    chosen: List[Candidate] = []
    stats: Dict[str, Dict[str, int]] = {}
    for finding in findings:
        pool = sorted(by_finding[finding], key=lambda c: c.key)
        _rng(seed, source, finding).shuffle(pool)
        if source == REAL:
            pool = [c for c in pool if c.group not in used_groups]
        pool.sort(key=lambda c: (c.rank, c.group in avoid))  # stable: keeps the shuffle within ties
        picked: List[Candidate] = []
        picked_groups: set = set()
        # first pass: one image per radiograph; second pass fills up with repeats (generated only)
        for c in pool:
            if len(picked) < per_finding and c.group not in picked_groups and c.group not in used_groups:
                picked.append(c)
                picked_groups.add(c.group)
        if source != REAL:
            for c in pool:
                if len(picked) >= per_finding:
                    break
                if c not in picked:
                    picked.append(c)
        used_groups |= {c.group for c in picked}
        chosen.extend(picked)
        stats[finding] = {"wanted": per_finding, "available": len(by_finding[finding]),
                          "drawn": len(picked), "shortfall": per_finding - len(picked),
                          "avoided_overlap": sum(1 for c in picked if c.group in avoid)}
    return chosen, stats


def crop_resize(img: np.ndarray, border_frac: float, size: int) -> np.ndarray:
    """Cut ``border_frac`` of the side from every edge (GAN border artefacts), resize to size×size."""
    img = to_gray_uint8(img)
    h, w = img.shape
    dy, dx = int(round(h * border_frac)), int(round(w * border_frac))
    if 2 * dy >= h or 2 * dx >= w:
        raise ValueError(f"border_crop_frac {border_frac} leaves nothing of a {w}x{h} image")
    img = img[dy:h - dy, dx:w - dx]
    interp = cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_CUBIC
    return cv2.resize(img, (size, size), interpolation=interp)


def to_common_size(img: np.ndarray, common_size: int) -> np.ndarray:
    """Area-resize ``img`` so its longer side is ``common_size`` (never up; 0 leaves it as it is)."""
    img = to_gray_uint8(img)
    h, w = img.shape
    if common_size <= 0 or max(h, w) <= common_size:
        return img
    scale = common_size / max(h, w)
    return cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def study_image(img: np.ndarray, common_size: int, border_frac: float, size: int) -> np.ndarray:
    """What a reader sees of ``img``: common resolution, border crop, study size (one path for all)."""
    return crop_resize(to_common_size(img, common_size), border_frac, size)


def common_size(draws: Mapping[str, Sequence[Candidate]]) -> Tuple[int, Dict[str, int]]:
    """The smallest native size among the sources (one image of each looked at) and each source's size."""
    native: Dict[str, int] = {}
    for source, cands in draws.items():
        if cands:
            try:
                native[source] = int(max(cands[0].load().shape[:2]))
            except ImageError as exc:
                raise StudyError(f"source {source!r}: {exc}") from None
    return (min(native.values()) if native else 0), native


def _new_ids(n: int) -> List[str]:
    ids: set = set()
    while len(ids) < n:
        ids.add(secrets.token_hex(8))
    return list(ids)


# -- the whole step --------------------------------------------------------------------------------
def build_study(real: os.PathLike, generated: Mapping[str, os.PathLike], out: os.PathLike,
                cfg: StudyConfig = StudyConfig(), real_split: str = "test+train",
                findings: Sequence[str] = FINDINGS, force: bool = False) -> Dict:
    """Build STUDY_DIR ``out``; returns the build report (also written to out/build_report.json)."""
    out = Path(out)
    _check_build_args(generated, out, cfg, real_split, force)
    gen_sets = {name: folder_candidates(name, d, findings) for name, d in generated.items()}
    real_set = real_candidates(real, REAL_SPLITS[real_split], findings)

    draws: Dict[str, List[Candidate]] = {}
    stats: Dict[str, Dict] = {}
    gen_groups: set = set()
    for name, s in gen_sets.items():
        draws[name], stats[name] = draw(s.candidates, name, findings, cfg.per_finding, cfg.seed)
        gen_groups |= {c.group for c in draws[name]}
    draws[REAL], stats[REAL] = draw(real_set.candidates, REAL, findings, cfg.per_finding, cfg.seed,
                                    avoid_groups=gen_groups)
    sources = [REAL, *generated]

    items = [c for s in sources for c in draws[s]]
    if not items:
        raise StudyError("no images could be drawn: every source is empty for the study findings")
    common, native = common_size(draws) if cfg.common_resolution else (0, {})
    ids = _new_ids(len(items))
    order_rng = _rng(cfg.seed, "order")
    perm = list(range(len(items)))
    order_rng.shuffle(perm)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        p = paths(tmp)
        key, order = _write_images(p, [items[i] for i in perm], ids, cfg, common)
        counts = {s: {f: stats[s][f]["drawn"] for f in findings} for s in sources}
        created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        study = {
            "version": STUDY_VERSION, "created": created, "seed": cfg.seed,
            "per_finding": cfg.per_finding, "image_size": cfg.image_size,
            "border_crop_frac": cfg.border_crop_frac, "common_size": common, "native_sizes": native,
            "findings": list(findings), "sources": sources,
            "counts": counts, "total": len(order), "order": order,
        }
        atomic_write_text(p.key, json.dumps({"version": STUDY_VERSION, "items": key}, indent=1))
        os.chmod(p.key, 0o600)
        atomic_write_text(p.study_json, json.dumps(study, indent=1))
        shortfalls = [{"source": s, "finding": f, "wanted": cfg.per_finding, "drawn": stats[s][f]["drawn"]}
                      for s in sources for f in findings if stats[s][f]["shortfall"] > 0]
        report = {
            "created": created, "out": str(out), "total": len(order),
            "config": {"per_finding": cfg.per_finding, "image_size": cfg.image_size,
                       "border_crop_frac": cfg.border_crop_frac, "seed": cfg.seed, "real_split": real_split,
                       "common_size": common, "native_sizes": native},
            "inputs": {s.source: {"path": s.path, "kind": s.kind, "candidates": len(s.candidates),
                                  "skipped": s.skipped, "notes": s.notes}
                       for s in [real_set, *gen_sets.values()]},
            "per_source": stats, "shortfalls": shortfalls,
        }
        atomic_write_text(p.build_report, json.dumps(report, indent=1))
        study_db.init_db(p.db)
        _install(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return report


def _check_build_args(generated: Mapping[str, os.PathLike], out: Path, cfg: StudyConfig,
                      real_split: str, force: bool) -> None:
    """Refuse bad arguments, and an existing non-empty ``out`` unless it is a study and ``force``."""
    if not generated:
        raise StudyError("at least one --generated NAME=DIR is needed")
    for name in generated:
        check_source_name(name)
    if real_split not in REAL_SPLITS:
        raise StudyError(f"real split {real_split!r}: choose one of {sorted(REAL_SPLITS)}")
    if cfg.per_finding < 1:
        raise StudyError(f"per_finding must be >= 1, got {cfg.per_finding}")
    if out.exists() and any(out.iterdir()):
        if not force:
            raise StudyError(f"{out}: exists and is not empty (a study with answers?); "
                             "choose a new --out or pass --force to replace it")
        if not paths(out).study_json.is_file():
            raise StudyError(f"{out}: not a study directory (no {paths(out).study_json.name}); "
                             "refusing to replace it")


def _write_images(p: StudyPaths, items: Sequence[Candidate], ids: Sequence[str], cfg: StudyConfig,
                  common: int):
    """Bring ``items`` to the study's path (``study_image``), write them in study order under ``ids``."""
    p.images.mkdir()
    p.private.mkdir(mode=0o700)
    key: Dict[str, Dict] = {}
    order: List[str] = []
    for c, image_id in zip(items, ids):  # written in study order: file times reveal nothing
        try:
            img = study_image(c.load(), common, cfg.border_crop_frac, cfg.image_size)
        except ImageError as exc:
            raise StudyError(f"source {c.source!r}: {exc}") from None
        p.image(image_id).write_bytes(encode_png(img, compression=STUDY_PNG_COMPRESSION))
        key[image_id] = {"source": c.source, "finding": c.finding, "origin": c.origin}
        order.append(image_id)
    return key, order


def _install(tmp: Path, out: Path) -> None:
    """Move the finished study into place; an old study (``--force``) is removed only afterwards."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old.{secrets.token_hex(4)}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def format_report(report: Dict) -> str:
    """A short human-readable summary of a build report."""
    lines = [f"study: {report['out']} ({report['total']} images)"]
    for source, per in report["per_source"].items():
        drawn = sum(v["drawn"] for v in per.values())
        lines.append(f"  {source}: {drawn} drawn")
    for s in report["shortfalls"]:
        lines.append(f"  shortfall: {s['source']}/{s['finding']}: {s['drawn']} of {s['wanted']}")
    for source, inp in report["inputs"].items():
        if inp["skipped"]:
            lines.append(f"  {source}: {len(inp['skipped'])} input item(s) skipped (see build_report.json)")
        for note in inp["notes"]:
            lines.append(f"  {source}: {note}")
    return "\n".join(lines)
