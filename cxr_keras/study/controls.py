"""The automatic judge's controls: is the judge able to see anything, and does it see ghosts?

Two checks run beside Table 1 (issue 12). *Real vs real*: two disjoint halves of the real study
images, labelled as if one half were fake; a judge that finds a difference there (95 % interval of its
accuracy excluding 50 %) is fitting noise. *Real vs degraded real*: the same real radiographs blurred
(Gaussian, σ = 2 px at 256) and as the generator's own input x (box only, the rest black), sent through
the study's own crop and resize; a judge below 95 % accuracy on those is blind. The degraded images
are made from the originals named in the study key (RECORDS pairs, or a real folder's files).
"""
from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np

from cxr_keras.data.images import ImageError, load_gray
from cxr_keras.study.build import study_image
from cxr_keras.study.layout import StudyError

BLURRED, BOX_ONLY, REAL_VS_REAL = "blurred", "box_only", "real_vs_real"
REFERENCE_SIDE = 256  # the blur's σ is given in pixels of a 256×256 image (the records' size)


def clopper_pearson(k: int, n: int, level: float = 0.95) -> Tuple[float, float]:
    """Exact (Clopper–Pearson) interval of a binomial proportion k/n."""
    from scipy.stats import beta

    if n == 0:
        return 0.0, 1.0
    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


def split_halves(ids: Sequence[str], findings: Mapping[str, str], seed: int,
                 sort_key: Optional[Mapping[str, str]] = None,
                 match: Optional[Mapping[str, float]] = None) -> Tuple[List[str], List[str]]:
    """Two disjoint halves of ``ids``, balanced per finding (seeded); sizes differ by at most one.

    ``sort_key`` (id → text, e.g. the image's origin) makes the halves independent of the random ids.
    ``match`` (id → a number, e.g. mean brightness) pairs neighbours in that number within a finding and
    sends one of each pair to either half (a coin flip): a matched randomisation, so that two small
    halves do not differ by chance in what the number measures.
    """
    rng = np.random.default_rng(seed)
    by_finding: Dict[str, List[str]] = defaultdict(list)
    for i in sorted(ids, key=lambda i: (sort_key[i], i) if sort_key else i):
        by_finding[findings[i]].append(i)
    halves: Tuple[List[str], List[str]] = ([], [])
    turn = 0
    for f in sorted(by_finding):
        group = by_finding[f]
        if match is None:
            group = [group[j] for j in rng.permutation(len(group))]
            pairs, rest = [], group
        else:
            group = sorted(group, key=lambda i: match[i])  # stable: ties keep the sort_key order
            pairs, rest = [group[j:j + 2] for j in range(0, len(group) - 1, 2)], group[len(group) // 2 * 2:]
        for pair in pairs:
            flip = int(rng.integers(2))
            halves[flip].append(pair[0])
            halves[1 - flip].append(pair[1])
        for i in rest:
            halves[turn % 2].append(i)
            turn += 1  # dealt on across findings: odd groups do not all favour the same half
    return halves


def paired_folds(n: int, k: int, seed: int) -> np.ndarray:
    """Folds for ``n`` originals followed by their ``n`` degraded twins: a twin shares its original's fold,
    so the judge is never tested on an image whose twin it trained on."""
    rng = np.random.default_rng(seed)
    base = np.empty(n, np.int64)
    base[rng.permutation(n)] = np.arange(n) % k
    return np.concatenate([base, base])


def blur(img: np.ndarray, sigma_at_256: float) -> np.ndarray:
    """Gaussian blur with σ given at 256 px, scaled to the image's own width."""
    sigma = sigma_at_256 * img.shape[1] / REFERENCE_SIDE
    out = cv2.GaussianBlur(img.astype(np.float32), (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _records_originals(wanted: Mapping[str, List[Tuple[str, int]]]) -> Dict[Tuple[str, int], Tuple]:
    """(records file, ann_id) → (uint8 image, uint8 0/1 mask), read from the RECORDS pair files."""
    import tensorflow as tf

    from cxr_keras.records.pairs import read_pairs

    out: Dict[Tuple[str, int], Tuple] = {}
    for path, items in wanted.items():
        anns = {a for _, a in items}
        try:
            for ex in read_pairs([path]).as_numpy_iterator():
                ann = int(ex["ann_id"])
                if ann in anns and (path, ann) not in out:
                    img = np.clip(np.round((ex["image"][:, :, 0] + 1.0) * 127.5), 0, 255).astype(np.uint8)
                    out[(path, ann)] = (img, (ex["mask"][:, :, 0] > 0.5).astype(np.uint8))
        except tf.errors.OpError as exc:
            raise StudyError(f"{path}: cannot read pair records ({type(exc).__name__})") from None
    return out


def load_originals(real_ids: Sequence[str], key: Mapping[str, Mapping]) -> Tuple[Dict[str, Tuple], List[str]]:
    """id → (original uint8 image, 0/1 mask or None) for the real study images; plus notes on what is missing."""
    wanted: Dict[str, List[Tuple[str, int]]] = defaultdict(list)
    out: Dict[str, Tuple] = {}
    notes: List[str] = []
    for i in real_ids:
        origin = key[i].get("origin", {})
        if "records" in origin and "ann_id" in origin:
            wanted[str(origin["records"])].append((i, int(origin["ann_id"])))
        elif "dir" in origin and "file" in origin:
            try:
                out[i] = (load_gray(Path(origin["dir"]) / origin["file"]), None)
            except (ImageError, OSError) as exc:
                notes.append(f"real image {i}: original not readable ({exc})")
        else:
            notes.append(f"real image {i}: the key names no original")
    missing = [p for p in wanted if not os.path.isfile(p)]
    for p in missing:
        notes.append(f"{p}: not found ({len(wanted.pop(p))} real originals unavailable)")
    originals = _records_originals(wanted) if wanted else {}
    for path, items in wanted.items():
        for i, ann in items:
            if (path, ann) in originals:
                out[i] = originals[(path, ann)]
            else:
                notes.append(f"real image {i}: ann_id {ann} not in {path}")
    return out, notes


def degraded_sets(real_ids: Sequence[str], key: Mapping[str, Mapping], study: Mapping,
                  sigma_at_256: float) -> Tuple[Dict[str, Tuple[List[str], List[np.ndarray]]], List[str]]:
    """{"blurred"|"box_only": (real ids, degraded study-sized uint8 images)} and notes.

    Each degraded image goes through the study's own path (``build.study_image``), so it
    differs from its real twin only by the degradation. Box-only needs the box mask (RECORDS only).
    """
    originals, notes = load_originals(real_ids, key)
    crop, size = float(study["border_crop_frac"]), int(study["image_size"])
    common = int(study.get("common_size", 0))
    sets: Dict[str, Tuple[List[str], List[np.ndarray]]] = {BLURRED: ([], []), BOX_ONLY: ([], [])}
    for i in real_ids:
        if i not in originals:
            continue
        img, mask = originals[i]
        sets[BLURRED][0].append(i)
        sets[BLURRED][1].append(study_image(blur(img, sigma_at_256), common, crop, size))
        if mask is not None:
            sets[BOX_ONLY][0].append(i)
            sets[BOX_ONLY][1].append(study_image(img * mask, common, crop, size))
    if len(sets[BOX_ONLY][0]) < len(real_ids):
        notes.append(f"box-only control: {len(sets[BOX_ONLY][0])} of {len(real_ids)} real images have a box mask "
                     "(only RECORDS pairs carry one)")
    return sets, notes
