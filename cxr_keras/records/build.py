"""Build every record of a dataset: NIH folder → manifest → pair, healthy and detection records.

Images are decoded and resized on worker threads (both cores); the main thread writes the
records. Unusable inputs are skipped with their reason in the manifest, which is written last:
its presence means the folder is complete. File names: ``cxr_keras.paths.RecordsPaths``.
"""
from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
from tqdm import tqdm

from cxr_keras.config import DataConfig, RecordsConfig
from cxr_keras.data import nih
from cxr_keras.data.images import clip_box, encode_png, load_resized, scale_box
from cxr_keras.data.nih_folder import read_render_info
from cxr_keras.paths import SPLITS, RecordsPaths
from cxr_keras.records.detection import DetectionItem, write_detection_records, write_label_map
from cxr_keras.records.pairs import pair_example, write_examples

# File names of a complete RECORDS folder besides its manifest (relative to the folder).
RECORD_FILES = tuple(p.name for p in RecordsPaths(Path()).record_files)


def _load_and_encode(job):
    path, img, shape, err = load_resized(job)
    return path, img, shape, err, (encode_png(img) if img is not None else None)


def load_images(paths: List[str], size: int, workers: int, progress: bool = True):
    """Decode, resize and re-encode images on ``workers`` threads.

    Yields (path, uint8 or None, (h, w), error, PNG bytes).

    OpenCV releases the GIL while decoding and resizing, so threads use every core without the
    start-up and pickling costs of processes (and without forking a process that holds TensorFlow).
    """
    jobs = [(p, size) for p in paths]
    bar = tqdm(total=len(jobs), desc="images", unit="img", disable=not progress, file=sys.stderr)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for res in pool.map(_load_and_encode, jobs):
            bar.update()
            yield res
    bar.close()


def _clip_boxes(manifest: nih.Manifest, loaded: Dict[str, Tuple[np.ndarray, Tuple[int, int]]],
                bad: Dict[str, str], size: int) -> Tuple[Dict[int, List[float]], int]:
    """Clip boxes to their (original) image and scale them to ``size``: {ann_id: xyxy px}, number clipped.

    Drops (from ``manifest``) the annotations and healthy images of unreadable images, and boxes left
    empty (recorded as skipped).
    """
    kept: List[nih.Annotation] = []
    boxes_px: Dict[int, List[float]] = {}
    clipped = 0
    for a in manifest.annotations:
        if a.image in bad:
            continue
        _, (h, w) = loaded[a.image]
        xyxy = clip_box(a.box, w, h)
        if xyxy is None:
            manifest.skipped.append({"item": a.image, "reason": f"box {a.box} lies outside the {w}x{h} image"})
            continue
        x, y, bw, bh = a.box
        if xyxy != (x, y, x + bw, y + bh):
            clipped += 1
        boxes_px[a.ann_id] = scale_box(xyxy, w, h, size)
        kept.append(a)
    manifest.annotations = kept
    manifest.healthy = [h for h in manifest.healthy if h["image"] not in bad]
    return boxes_px, clipped


def _write_records(paths: RecordsPaths, manifest: nih.Manifest, loaded, pngs: Dict[str, bytes],
                   boxes_px: Dict[int, List[float]], size: int) -> Dict[str, int]:
    """The pair, healthy and detection records of each split and the label map → {record file stem: count}."""
    written = {}
    for split in SPLITS:
        anns = manifest.split(split)
        written[paths.pairs(split).stem] = write_examples(paths.pairs(split), (
            pair_example(pngs[a.image], size, a.image, "annotated", split, boxes_px[a.ann_id],
                         a.label, a.finding, a.ann_id) for a in anns))
        written[paths.healthy(split).stem] = write_examples(paths.healthy(split), (
            pair_example(pngs[n], size, n, "healthy", split) for n in manifest.healthy_images(split)))
        written[paths.det(split).stem] = write_detection_records(paths.det(split), (
            DetectionItem(image=loaded[name][0], filename=name, png=pngs[name],
                          boxes_xyxy=[boxes_px[a.ann_id] for a in group], labels=[a.label for a in group])
            for name, group in manifest.images(split).items()))
    write_label_map(paths.label_map, manifest.findings)
    return written


def build_records(
    nih_root: os.PathLike,
    out_dir: os.PathLike,
    data_cfg: DataConfig = DataConfig(),
    rec_cfg: RecordsConfig = RecordsConfig(),
    progress: bool = True,
) -> Dict:
    """Write RECORDS/ for the NIH folder ``nih_root`` (see docs/interfaces.md); return the manifest dict."""
    t0 = time.time()
    nih_root, out_dir = Path(nih_root), Path(out_dir)
    if not nih_root.is_dir():
        raise FileNotFoundError(f"{nih_root}: NIH folder not found")
    on_disk = nih.find_images(nih_root)
    if not on_disk:
        raise FileNotFoundError(f"{nih_root}: no PNG images under images/ or images_*/images/")
    manifest = nih.build_manifest(nih_root, data_cfg, available=on_disk.keys())
    size = rec_cfg.image_size

    needed = list(dict.fromkeys([a.image for a in manifest.annotations] + [h["image"] for h in manifest.healthy]))
    loaded: Dict[str, Tuple[np.ndarray, Tuple[int, int]]] = {}
    pngs: Dict[str, bytes] = {}
    bad: Dict[str, str] = {}
    name_of = {str(on_disk[n]): n for n in needed}
    for path, img, shape, err, png in load_images([str(on_disk[n]) for n in needed], size, rec_cfg.workers,
                                                  progress):
        if err is None:
            loaded[name_of[path]] = (img, shape)
            pngs[name_of[path]] = png
        else:
            bad[name_of[path]] = err
    for name, err in bad.items():
        manifest.skipped.append({"item": name, "reason": err})

    boxes_px, clipped = _clip_boxes(manifest, loaded, bad, size)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = RecordsPaths(out_dir)
    written = _write_records(paths, manifest, loaded, pngs, boxes_px, size)
    extra = {
        "nih_root": str(nih_root.resolve()),
        "image_size": size,
        "records": written,
        "clipped_boxes": clipped,
        "seconds": round(time.time() - t0, 1),
    }
    info = read_render_info(nih_root)  # a rendered folder: the source CT of every image
    ct_source = {n: info[n]["ct_source"] for n in needed if n in loaded and "ct_source" in info.get(n, {})}
    if ct_source:
        extra["ct_source"] = ct_source
    manifest.save(paths.manifest, extra=extra)
    return {**manifest.to_json(), **extra}


def records_complete(out_dir: os.PathLike) -> bool:
    """True when ``out_dir`` holds a finished build (manifest written last, every record present)."""
    paths = RecordsPaths(out_dir)
    return paths.manifest.is_file() and all(p.is_file() for p in paths.record_files)
