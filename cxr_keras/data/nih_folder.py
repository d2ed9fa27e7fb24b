"""Write a folder in the NIH ChestX-ray14 layout from any image renderer.

Both the 2D phantoms (``phantoms.PhantomRenderer``) and the CT-projected radiographs use this, so
that every later stage reads their output exactly like the real dataset: the real metadata rows
of a chosen subset of images, with the pictures replaced by the renderer's.

A renderer is a picklable object (it travels to worker processes) with
``__call__(image_name, boxes, rng) -> (uint8 array 1024×1024, boxes_out)``, where ``boxes`` and
``boxes_out`` are lists of ``(finding, x, y, w, h)`` in 1024² pixels. Returned boxes whose label is
not an NIH finding (e.g. the CT renderer's ``lesion_ct``: a real lesion of its source CT) and what an
optional ``renderer.image_info(image_name) -> dict`` says (e.g. ``{"ct_source": ...}``) are recorded
per image in ``render_info.json`` beside the CSVs, never in ``BBox_List_2017.csv``.
"""
from __future__ import annotations

import concurrent.futures as cf
import functools
import gzip
import hashlib
import json
import multiprocessing
import os
import random
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from cxr_keras.config import FINDINGS, HEALTHY
from cxr_keras.data.images import NIH_IMAGE_SIZE, Box, encode_png
from cxr_keras.io_utils import atomic_write_bytes, atomic_write_text, read_json

if TYPE_CHECKING:  # pandas (through nih) is imported lazily: worker processes never need it
    import pandas as pd

Renderer = Callable[[str, List[Box], np.random.Generator], Tuple[np.ndarray, List[Box]]]

BBOX_HEADER = "Image Index,Finding Label,Bbox [x,y,w,h],,,"
BBOX_FILE = "BBox_List_2017.csv"
ENTRY_FILE = "Data_Entry_2017_v2020.csv"
RENDER_INFO_FILE = "render_info.json"  # per image: the renderer's image_info and non-finding boxes
RENDER_INFO_VERSION = 1
PNG_COMPRESSION = 3  # zlib level of the written images (smaller files than the records' level 1)


# -- choosing which real images to imitate -------------------------------------------------------
def choose_subset(
    boxes_df: "pd.DataFrame",
    entries_df: "pd.DataFrame",
    findings: Sequence[str] = FINDINGS,
    limit: Optional[int] = None,
    healthy: int = 0,
    seed: int = 0,
) -> Tuple[List[str], List[str]]:
    """Pick annotated images (round-robin over findings so each is represented) and healthy ones.

    ``boxes_df``/``entries_df`` are ``nih.read_bbox_list``/``nih.read_data_entry`` frames.
    ``limit`` = number of annotated images (None: every image with a box of ``findings``);
    ``healthy`` = number of "No Finding" images, sampled (seeded) from ``entries_df``.
    Both lists come back in choice order, so any prefix of the annotated list is stratified too.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None, got {limit}")
    if healthy < 0:
        raise ValueError(f"healthy must be >= 0, got {healthy}")
    rng = random.Random(seed)
    usable = boxes_df[boxes_df["finding"].isin(findings) & (boxes_df["w"] > 0) & (boxes_df["h"] > 0)]
    per_finding: Dict[str, List[str]] = {}
    for finding in findings:
        images = sorted(set(usable.loc[usable["finding"] == finding, "image"]))
        rng.shuffle(images)
        per_finding[finding] = images
    order = [f for f in findings if per_finding[f]]
    rng.shuffle(order)
    total = len(set(usable["image"]))
    want = total if limit is None else min(limit, total)
    chosen: List[str] = []
    seen = set()
    cursor = {f: 0 for f in order}
    while len(chosen) < want:
        progressed = False
        for finding in order:
            if len(chosen) >= want:
                break
            images = per_finding[finding]
            while cursor[finding] < len(images) and images[cursor[finding]] in seen:
                cursor[finding] += 1
            if cursor[finding] < len(images):
                image = images[cursor[finding]]
                cursor[finding] += 1
                chosen.append(image)
                seen.add(image)
                progressed = True
        if not progressed:
            break
    annotated_any = set(boxes_df["image"])  # never call an image with any box "healthy"
    pool = sorted(
        im for im, labels in zip(entries_df["image"], entries_df["labels"])
        if tuple(labels) == (HEALTHY,) and im not in annotated_any
    )
    healthy_rng = random.Random(f"healthy-{seed}")
    healthy_names = healthy_rng.sample(pool, min(healthy, len(pool)))
    return chosen, healthy_names


# -- rendering, in worker processes --------------------------------------------------------------
def image_rng(seed: int, image_name: str) -> np.random.Generator:
    """The per-image generator: depends only on (seed, name), never on worker count or order."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    digest = hashlib.sha256(image_name.encode("utf-8")).digest()
    return np.random.default_rng([int(seed), int.from_bytes(digest[:8], "little")])


def _check_boxes(image_name: str, boxes_out) -> List[Box]:
    out: List[Box] = []
    for b in boxes_out:
        if len(b) != 5:
            raise ValueError(f"{image_name}: renderer returned box {b!r}, expected (finding, x, y, w, h)")
        finding, x, y, w, h = b
        out.append((str(finding), float(x), float(y), float(w), float(h)))
    return out


def render_one(renderer: Renderer, image_name: str, boxes: List[Box],
               seed: int) -> Tuple[np.ndarray, List[Box]]:
    """Render one image and validate what the renderer returned (uint8 1024×1024, boxes)."""
    image, boxes_out = renderer(image_name, list(boxes), image_rng(seed, image_name))
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.dtype != np.uint8 or image.shape != (NIH_IMAGE_SIZE, NIH_IMAGE_SIZE):
        raise ValueError(
            f"{image_name}: {type(renderer).__name__} returned {image.dtype} {image.shape}, "
            f"expected uint8 ({NIH_IMAGE_SIZE}, {NIH_IMAGE_SIZE})"
        )
    return image, _check_boxes(image_name, boxes_out)


_WORKER_RENDERER: Optional[Renderer] = None


def _init_worker(renderer: Renderer) -> None:
    global _WORKER_RENDERER
    cv2.setNumThreads(1)  # one process per core already
    _WORKER_RENDERER = renderer


def _render_and_write(image_name: str, boxes: List[Box], seed: int, path: str) -> Tuple[str, List[Box]]:
    image, boxes_out = render_one(_WORKER_RENDERER, image_name, boxes, seed)
    atomic_write_bytes(path, encode_png(image, PNG_COMPRESSION))
    return image_name, boxes_out


# -- metadata files ------------------------------------------------------------------------------
def _read_lines(path: Path) -> List[str]:
    from cxr_keras.data import nih

    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as f:
            return [line.rstrip("\r\n") for line in f]
    except OSError as exc:
        raise nih.MetadataError(f"{path}: cannot read ({exc})") from exc


def entry_lines(entry_path: Path, images: Iterable[str]) -> List[str]:
    """The header and the verbatim rows of ``images`` from a Data_Entry CSV (file order)."""
    from cxr_keras.data import nih

    wanted = set(images)
    lines = _read_lines(entry_path)
    if not lines:
        raise nih.MetadataError(f"{entry_path}: empty file")
    rows = [ln for ln in lines[1:] if ln.split(",", 1)[0].strip() in wanted]
    return [lines[0]] + rows


def _fmt(v: float) -> str:
    """Shortest exact text of a coordinate, integers without '.0' (as in the NIH file)."""
    v = float(v)
    return str(int(v)) if v.is_integer() else repr(v)


def bbox_text(image_order: Sequence[str], boxes_by_image: Dict[str, List[Box]]) -> str:
    """BBox_List_2017.csv text: the NIH header and six-field rows, images in ``image_order``."""
    from cxr_keras.data import nih

    out = [BBOX_HEADER]
    for image in image_order:
        for finding, x, y, w, h in boxes_by_image.get(image, []):
            out.append(",".join([image, nih.canonical_finding(finding), _fmt(x), _fmt(y), _fmt(w), _fmt(h)]))
    return "\n".join(out) + "\n"


@functools.lru_cache(maxsize=1)
def _shipped_metadata():
    """(bbox path, entry path, boxes, entries) of the shipped NIH metadata, parsed once per process."""
    from cxr_keras.data import nih

    bbox_path, entry_path = nih.metadata_paths(None)
    return bbox_path, entry_path, nih.read_bbox_list(bbox_path), nih.read_data_entry(entry_path)


def split_finding_boxes(drawn: Dict[str, List[Box]]) -> Tuple[Dict[str, List[Box]], Dict[str, List[Box]]]:
    """Per image: (boxes of NIH findings, for BBox_List_2017.csv; the others, e.g. ``lesion_ct``)."""
    from cxr_keras.data import nih

    findings: Dict[str, List[Box]] = {}
    other: Dict[str, List[Box]] = {}
    for image, boxes in drawn.items():
        findings[image] = [b for b in boxes if nih.canonical_finding(b[0]) in nih.BOX_FINDINGS]
        other[image] = [b for b in boxes if nih.canonical_finding(b[0]) not in nih.BOX_FINDINGS]
    return findings, other


def render_info(renderer: Renderer, names: Sequence[str], other: Dict[str, List[Box]]) -> Dict[str, Dict]:
    """{image: renderer.image_info(image) + its non-finding ``extra_boxes``}; {} when there is nothing."""
    describe = getattr(renderer, "image_info", None)
    info: Dict[str, Dict] = {}
    for name in names:
        entry = dict(describe(name)) if describe is not None else {}
        if other.get(name):
            entry["extra_boxes"] = [{"label": b[0], "box": [float(v) for v in b[1:]]} for b in other[name]]
        if entry:
            info[name] = entry
    return info


def read_render_info(nih_root: os.PathLike) -> Dict[str, Dict]:
    """{image: info} of a rendered NIH folder's ``render_info.json``; {} when there is none (real data)."""
    from cxr_keras.data import nih

    path = Path(nih_root) / RENDER_INFO_FILE
    if not path.is_file():
        return {}
    data = read_json(path, nih.MetadataError, what="render info")
    if not isinstance(data, dict) or not isinstance(data.get("images"), dict):
        raise nih.MetadataError(f"{path}: expected an object with an 'images' mapping")
    return data["images"]


# -- the writer ----------------------------------------------------------------------------------
def _progress(total: int, enabled: bool, desc: str):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is in the lock file
        return None
    return tqdm(total=total, disable=not enabled, file=sys.stderr, desc=desc, unit="img")


def _images_dir(out_dir: Path, names: Sequence[str]) -> Path:
    """``out_dir/images``, created; refused if it holds PNGs this run would not list."""
    images_dir = out_dir / "images"
    if images_dir.is_dir():
        stale = sorted(p.name for p in images_dir.glob("*.png") if p.name not in set(names))
        if stale:
            raise FileExistsError(
                f"{images_dir}: holds {len(stale)} PNG(s) this run would not list (e.g. {stale[0]}); "
                "use an empty or new --out directory"
            )
    images_dir.mkdir(parents=True, exist_ok=True)
    return images_dir


def _render_all(renderer: Renderer, jobs: List[tuple], workers: int, progress: bool) -> Dict[str, List[Box]]:
    """Run ``_render_and_write`` over ``jobs`` (in this process, or ``workers`` spawned ones) → drawn boxes."""
    drawn: Dict[str, List[Box]] = {}
    bar = _progress(len(jobs), progress, f"render {type(renderer).__name__}")
    try:
        if workers <= 1 or len(jobs) <= 1:
            _init_worker(renderer)
            for job in jobs:
                name, boxes_out = _render_and_write(*job)
                drawn[name] = boxes_out
                if bar is not None:
                    bar.update(1)
        else:
            # "spawn": the parent may have TensorFlow threads running, which fork() would copy mid-state.
            ctx = multiprocessing.get_context("spawn")
            with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                        initializer=_init_worker, initargs=(renderer,)) as pool:
                futures = [pool.submit(_render_and_write, *job) for job in jobs]
                try:
                    for fut in cf.as_completed(futures):
                        name, boxes_out = fut.result()
                        drawn[name] = boxes_out
                        if bar is not None:
                            bar.update(1)
                except BaseException:
                    for fut in futures:
                        fut.cancel()
                    raise
    finally:
        if bar is not None:
            bar.close()
    return drawn


def write_nih_folder(
    out_dir: os.PathLike,
    renderer: Renderer,
    limit: Optional[int] = None,
    healthy: int = 0,
    seed: int = 0,
    workers: int = 2,
    progress: bool = True,
    findings: Sequence[str] = FINDINGS,
) -> Dict:
    """Render a chosen subset of the real NIH images into ``out_dir`` in the NIH layout.

    Writes ``images/<name>.png`` (each atomically), then ``render_info.json`` if the renderer
    records anything per image (module doc), ``BBox_List_2017.csv`` with the NIH-finding boxes the
    renderer drew and ``Data_Entry_2017_v2020.csv`` with the real rows of exactly those images —
    CSVs last, so a killed run never lists an image that is not on disk. Output bytes depend only
    on (renderer, limit, healthy, seed), never on ``workers``. Returns a summary of counts.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"{out_dir}: exists and is not a directory")
    _, entry_path, boxes_df, entries_df = _shipped_metadata()
    annotated, healthy_names = choose_subset(boxes_df, entries_df, findings, limit, healthy, seed)
    names = sorted(annotated) + sorted(healthy_names)

    images_dir = _images_dir(out_dir, names)

    real_boxes: Dict[str, List[Box]] = {n: [] for n in names}
    for row in boxes_df[boxes_df["image"].isin(set(annotated))].itertuples(index=False):
        real_boxes[row.image].append((row.finding, float(row.x), float(row.y), float(row.w), float(row.h)))

    jobs = [(n, real_boxes[n], seed, str(images_dir / n)) for n in names]
    drawn, other = split_finding_boxes(_render_all(renderer, jobs, workers, progress))

    info = render_info(renderer, names, other)
    if info:
        atomic_write_text(out_dir / RENDER_INFO_FILE, json.dumps(
            {"version": RENDER_INFO_VERSION, "renderer": type(renderer).__name__, "images": info}, indent=1))
    elif (out_dir / RENDER_INFO_FILE).exists():
        (out_dir / RENDER_INFO_FILE).unlink()  # a previous run's: it would describe other pictures
    atomic_write_text(out_dir / BBOX_FILE, bbox_text(names, drawn))
    entry = entry_lines(entry_path, names)
    atomic_write_text(out_dir / ENTRY_FILE, "\n".join(entry) + "\n")

    per_finding = Counter(b[0] for n in names for b in drawn[n])
    listed = {ln.split(",", 1)[0] for ln in entry[1:]}
    return {
        "out_dir": str(out_dir),
        "renderer": type(renderer).__name__,
        "images": len(names),
        "annotated": len(annotated),
        "healthy": len(healthy_names),
        "boxes": sum(per_finding.values()),
        "per_finding": dict(sorted(per_finding.items())),
        "missing_data_entry": sorted(set(names) - listed),
        "seed": seed,
        **_info_counts(info),
    }


def _info_counts(info: Dict[str, Dict]) -> Dict:
    """Summary of ``render_info``: images per CT source and non-finding boxes per label (if any)."""
    out = {}
    sources = Counter(e["ct_source"] for e in info.values() if "ct_source" in e)
    if sources:
        out["ct_source"] = dict(sorted(sources.items()))
    extra = Counter(b["label"] for e in info.values() for b in e.get("extra_boxes", []))
    if extra:
        out["extra_boxes"] = dict(sorted(extra.items()))
    return out
