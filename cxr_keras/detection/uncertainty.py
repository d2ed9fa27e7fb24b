"""Bootstrap intervals for correct-location accuracy, resampling test *images* (pure numpy).

Boxes of one image are not independent (same detector output, same anatomy), so the unit of
resampling is the image: each draw takes as many images as the test set has, with replacement, and
recounts every row (each finding and the total). A paired interval for the difference between two
detectors resamples the same images for both, which removes the between-image variance they share.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, Optional, Sequence, Tuple

import numpy as np

from cxr_keras.config import FINDINGS
from cxr_keras.detection.localisation import TOTAL, correct_location

DRAWS = 2000
LEVEL = 0.95


@dataclass(frozen=True)
class Outcomes:
    """Every ground-truth box of a test set: its image, its finding (1-based) and whether it was found."""

    image: np.ndarray  # int64 [G], index of the box's image
    label: np.ndarray  # int64 [G]
    correct: np.ndarray  # bool [G]
    n_images: int

    def rows(self, findings: Sequence[str] = FINDINGS) -> Dict[str, np.ndarray]:
        """Row name → boolean [G] selecting that row's boxes (TOTAL selects all)."""
        out = {f: self.label == i for i, f in enumerate(findings, 1)}
        out[TOTAL] = np.ones(len(self.label), bool)
        return out


def outcomes(results: Iterable, iou_threshold: float = 0.1, mode: str = "top1",
             score_threshold: float = 0.0) -> Outcomes:
    """Per-box outcomes of per-image results (``inference.ImageResult``), in image order."""
    image, label, correct = [], [], []
    n = 0
    for n, r in enumerate(results, 1):
        labels = np.asarray(r.gt_labels, np.int64).reshape(-1)
        ok = correct_location(r.gt_boxes, labels, r.boxes, r.classes, r.scores, iou_threshold,
                              mode, score_threshold)
        image.append(np.full(len(labels), n - 1, np.int64))
        label.append(labels)
        correct.append(ok)
    cat = (lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt))
    return Outcomes(cat(image, np.int64), cat(label, np.int64), cat(correct, bool), n)


def _image_counts(o: Outcomes, select: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Per-image (correct, total) of the selected boxes: two int arrays of length n_images."""
    correct = np.bincount(o.image[select], weights=o.correct[select], minlength=o.n_images)
    total = np.bincount(o.image[select], minlength=o.n_images)
    return correct, total.astype(np.float64)


def _resample_weights(n_images: int, draws: int, seed: int) -> np.ndarray:
    """[draws, n_images] multiplicities of a with-replacement resample of the images."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n_images, size=(draws, n_images))
    weights = np.zeros((draws, n_images), np.float64)
    np.add.at(weights, (np.repeat(np.arange(draws), n_images), picks.ravel()), 1.0)
    return weights


def _interval(values: np.ndarray, level: float) -> Tuple[float, float]:
    values = values[np.isfinite(values)]
    if not len(values):
        return float("nan"), float("nan")
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def bootstrap_accuracy(o: Outcomes, findings: Sequence[str] = FINDINGS, draws: int = DRAWS,
                       seed: int = 0, level: float = LEVEL) -> Dict[str, Tuple[float, float]]:
    """Percentile interval of each row's accuracy (row → (low, high), fractions in [0, 1])."""
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    if o.n_images == 0:
        return {row: (float("nan"), float("nan")) for row in list(findings) + [TOTAL]}
    weights = _resample_weights(o.n_images, draws, seed)
    out = {}
    for row, select in o.rows(findings).items():
        c, t = _image_counts(o, select)
        with np.errstate(invalid="ignore", divide="ignore"):
            acc = (weights @ c) / (weights @ t)
        out[row] = _interval(acc, level)
    return out


def pooled_accuracy(seeds: Sequence[Outcomes], findings: Sequence[str] = FINDINGS, draws: int = DRAWS,
                    seed: int = 0, level: float = LEVEL) -> Dict[str, Tuple[float, float]]:
    """Interval of the mean accuracy over training seeds: one image resample shared by all seeds
    (the seeds score the same test images). With one seed it is ``bootstrap_accuracy``."""
    if not seeds:
        raise ValueError("pooled_accuracy needs the outcomes of at least one seed")
    n = seeds[0].n_images
    if any(o.n_images != n or not np.array_equal(o.label, seeds[0].label) for o in seeds):
        raise ValueError("every seed must be scored on the same test images")
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    if n == 0:
        return {row: (float("nan"), float("nan")) for row in list(findings) + [TOTAL]}
    weights = _resample_weights(n, draws, seed)
    out = {}
    for row in seeds[0].rows(findings):
        boot = []
        for o in seeds:
            c, t = _image_counts(o, o.rows(findings)[row])
            with np.errstate(invalid="ignore", divide="ignore"):
                boot.append((weights @ c) / (weights @ t))
        out[row] = _interval(np.mean(boot, axis=0), level)
    return out


def paired_difference(a: Outcomes, b: Outcomes, findings: Sequence[str] = FINDINGS,
                      draws: int = DRAWS, seed: int = 0,
                      level: float = LEVEL) -> Dict[str, Tuple[float, float, float]]:
    """Accuracy of ``b`` minus ``a`` on the same test images: row → (difference, low, high)."""
    if a.n_images != b.n_images or not np.array_equal(a.label, b.label) or not np.array_equal(a.image, b.image):
        raise ValueError("paired bootstrap needs both detectors scored on the same test images")
    weights = _resample_weights(a.n_images, draws, seed) if a.n_images else np.zeros((0, 0))
    out = {}
    rows_a, rows_b = a.rows(findings), b.rows(findings)
    for row in rows_a:
        ca, t = _image_counts(a, rows_a[row])
        cb, _ = _image_counts(b, rows_b[row])
        total = t.sum()
        diff = float((cb.sum() - ca.sum()) / total) if total else float("nan")
        with np.errstate(invalid="ignore", divide="ignore"):
            draws_diff = (weights @ (cb - ca)) / (weights @ t) if len(weights) else np.zeros(0)
        out[row] = (diff, *_interval(draws_diff, level))
    return out


def pooled_difference(pairs: Sequence[Tuple[Outcomes, Outcomes]], findings: Sequence[str] = FINDINGS,
                      draws: int = DRAWS, seed: int = 0,
                      level: float = LEVEL) -> Dict[str, Tuple[float, float, float]]:
    """Paired difference pooled over seeds: the same image resample applied to every seed's pair.

    Each pair is (reference, other) of one training seed on one test set; the statistic is the
    mean over seeds of the accuracy difference.
    """
    if not pairs:
        raise ValueError("pooled_difference needs at least one (reference, other) pair")
    n = pairs[0][0].n_images
    if any(a.n_images != n or b.n_images != n for a, b in pairs):
        raise ValueError("every seed must be scored on the same test images")
    weights = _resample_weights(n, draws, seed)
    out = {}
    for row in pairs[0][0].rows(findings):
        diffs, boot = [], []
        for a, b in pairs:
            ca, t = _image_counts(a, a.rows(findings)[row])
            cb, _ = _image_counts(b, b.rows(findings)[row])
            diffs.append((cb.sum() - ca.sum()) / t.sum() if t.sum() else np.nan)
            with np.errstate(invalid="ignore", divide="ignore"):
                boot.append((weights @ (cb - ca)) / (weights @ t))
        out[row] = (float(np.mean(diffs)), *_interval(np.mean(boot, axis=0), level))
    return out


def shown(interval: Tuple[float, float, float]) -> Optional[bool]:
    """True when a difference's interval excludes 0 (None when it could not be computed)."""
    _, lo, hi = interval
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return None
    return bool(lo > 0 or hi < 0)
