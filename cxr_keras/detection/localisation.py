"""Correct-location accuracy (ChestX-ray8 / Xing, Ge et al. Table 2), pure numpy.

A ground-truth box counts as correctly located when a detection *of the same finding* in the same
image overlaps it with IoU > T (T = 0.1 in the paper). Which detections are considered:

* ``top1`` (default): only the highest-scoring detection of that finding in the image; with no
  detection of the finding the box is missed. This is one box per finding, as a CAM-style
  localisation would give, so it does not reward flooding the image with boxes.
* ``any``: every detection of that finding with score >= ``score_threshold``.

Accuracy per finding = correct boxes / ground-truth boxes of that finding; the total is over all
ground-truth boxes (not a mean of per-finding values). ``best_in_window`` picks a window's best
checkpoint on the scored set, per row or per column; which checkpoint Table 2 reports is decided in
``selection.py``, the table itself is built in ``table2.py``.
"""
from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from cxr_keras.config import FINDINGS
from cxr_keras.io_utils import atomic_path, atomic_write_text, read_json
from cxr_keras.paths import DetectorRunPaths

PathLike = Union[str, os.PathLike]
MODES = ("top1", "any")
SELECTIONS = ("per_finding", "total")
TOTAL = "Total"
Counts = Dict[str, Tuple[int, int]]  # finding -> (correct, total); includes TOTAL


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes ``a`` [N,4] and ``b`` [M,4] (ymin, xmin, ymax, xmax) → [N, M].

    Boxes with zero (or negative) area have IoU 0 with everything, touching boxes 0.
    """
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    ih = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iw = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ih * iw
    union = area_a[:, None] + area_b[None, :] - inter
    valid = (area_a[:, None] > 0) & (area_b[None, :] > 0) & (union > 0)
    return np.where(valid, inter / np.where(union > 0, union, 1.0), 0.0)


def correct_location(gt_boxes, gt_labels, boxes, classes, scores, iou_threshold: float = 0.1,
                     mode: str = "top1", score_threshold: float = 0.0) -> np.ndarray:
    """Boolean [G]: is each ground-truth box of one image correctly located (IoU > threshold)?"""
    if mode not in MODES:
        raise ValueError(f"unknown localisation mode {mode!r}; choose from {MODES}")
    gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    gt_labels = np.asarray(gt_labels).reshape(-1)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    classes = np.asarray(classes).reshape(-1)
    scores = np.asarray(scores, np.float64).reshape(-1)
    if not len(gt_boxes) == len(gt_labels):
        raise ValueError(f"{len(gt_boxes)} ground-truth boxes but {len(gt_labels)} labels")
    if not len(boxes) == len(classes) == len(scores):
        raise ValueError(f"detections disagree: {len(boxes)} boxes, {len(classes)} classes, "
                         f"{len(scores)} scores")
    out = np.zeros(len(gt_labels), bool)
    for label in np.unique(gt_labels):
        of_label = np.flatnonzero(classes == label)
        if mode == "top1":
            chosen = of_label[np.argmax(scores[of_label])][None] if len(of_label) else of_label
        else:
            chosen = of_label[scores[of_label] >= score_threshold]
        if not len(chosen):
            continue
        rows = np.flatnonzero(gt_labels == label)
        out[rows] = (iou(gt_boxes[rows], boxes[chosen]) > iou_threshold).any(axis=1)
    return out


def localisation_counts(results: Iterable, findings: Sequence[str] = FINDINGS,
                        iou_threshold: float = 0.1, mode: str = "top1",
                        score_threshold: float = 0.0) -> Counts:
    """(correct, total) per finding and in total over per-image results (``inference.ImageResult``).

    Ground-truth labels are 1-based indices into ``findings``.
    """
    correct = np.zeros(len(findings), np.int64)
    total = np.zeros(len(findings), np.int64)
    for r in results:
        labels = np.asarray(r.gt_labels).reshape(-1)
        if labels.size and (labels.min() < 1 or labels.max() > len(findings)):
            raise ValueError(f"{r.filename}: ground-truth label outside 1..{len(findings)}")
        ok = correct_location(r.gt_boxes, labels, r.boxes, r.classes, r.scores, iou_threshold,
                              mode, score_threshold)
        np.add.at(total, labels - 1, 1)
        np.add.at(correct, labels[ok] - 1, 1)
    counts = {f: (int(c), int(t)) for f, c, t in zip(findings, correct, total)}
    counts[TOTAL] = (int(correct.sum()), int(total.sum()))
    return counts


def accuracy(counts: Counts, finding: str = TOTAL) -> float:
    """correct / total of one row (NaN when the row has no ground truth)."""
    c, t = counts[finding]
    return c / t if t else float("nan")


def windows(eval_steps: Sequence[int], window: int) -> List[Tuple[int, int, int]]:
    """(centre, low, high) for each evaluation step: the closed interval [s − w, s + w]."""
    if window < 0:
        raise ValueError(f"window must be >= 0, got {window}")
    return [(int(s), int(s) - int(window), int(s) + int(window)) for s in eval_steps]


def in_any_window(step: int, eval_steps: Sequence[int], window: int) -> bool:
    return any(lo <= step <= hi for _, lo, hi in windows(eval_steps, window))


@dataclass
class WindowBest:
    """The best scores of one run in one window, per row, and the checkpoint each came from."""

    centre: int
    counts: Counts  # row -> (correct, total) at the selected checkpoint
    steps: Dict[str, int]  # row -> selected checkpoint step
    scored_steps: List[int]  # every checkpoint step found in the window


def best_in_window(by_step: Mapping[int, Counts], centre: int, window: int,
                   select: str = "per_finding") -> Optional[WindowBest]:
    """Pick the best checkpoint(s) of ``by_step`` in [centre − window, centre + window].

    Ties go to the earliest step. Returns None when no scored checkpoint lies in the window.
    """
    if select not in SELECTIONS:
        raise ValueError(f"unknown selection {select!r}; choose from {SELECTIONS}")
    steps = sorted(s for s in by_step if centre - window <= s <= centre + window)
    if not steps:
        return None
    rows = list(by_step[steps[0]])

    def best_step(row: str) -> int:
        values = [accuracy(by_step[s], row) for s in steps]
        values = [-1.0 if np.isnan(v) else v for v in values]
        return steps[int(np.argmax(values))]  # argmax returns the first (earliest) maximum

    if select == "total":
        chosen = best_step(TOTAL)
        picked = {row: chosen for row in rows}
    else:
        picked = {row: best_step(row) for row in rows}
    return WindowBest(centre, {row: tuple(by_step[picked[row]][row]) for row in rows}, picked, steps)


def table2_files(out_dir: PathLike, stem: str = "table2") -> Tuple[Path, Path]:
    """Where ``write_table2`` puts the markdown and the CSV table."""
    return Path(out_dir) / f"{stem}.md", Path(out_dir) / f"{stem}.csv"


def counts_markdown(counts: Counts, title: str) -> str:
    """A one-column accuracy table (for a single detector, e.g. an exported SavedModel)."""
    lines = [title, "", "| Finding | Accuracy (%) | Correct | Total |", "|---|---:|---:|---:|"]
    for row, (c, t) in counts.items():
        acc = f"{100 * c / t:.1f}" if t else "–"
        lines.append(f"| {'**Total**' if row == TOTAL else row} | {acc} | {c} | {t} |")
    return "\n".join(lines) + "\n"


def plot_accuracy(runs: Mapping[str, Mapping[int, Counts]], path: PathLike,
                  eval_steps: Sequence[int] = (), window: int = 0,
                  title: str = "Correct-location accuracy", baseline: Optional[float] = None,
                  groups: Optional[Mapping[str, str]] = None) -> Path:
    """PNG of total accuracy against training step, one line per run, windows shaded; the
    prior-box baseline's total accuracy (a fraction) as a dashed line. Runs of one group (run label →
    group, e.g. one protocol's seeds) share a colour and differ in line style and marker."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 4), dpi=120)
    for _, lo, hi in windows(eval_steps, window):
        ax.axvspan(lo, hi, color="0.9", zorder=0)
    groups = {label: (groups or {}).get(label, label) for label in runs}
    colours = {g: f"C{i}" for i, g in enumerate(dict.fromkeys(groups.values()))}
    seen: Dict[str, int] = {}
    for label, by_step in runs.items():
        steps = sorted(by_step)
        acc = [100 * accuracy(by_step[s]) for s in steps]
        k = seen[groups[label]] = seen.get(groups[label], -1) + 1
        ax.plot(steps, acc, color=colours[groups[label]], linestyle=("-", ":", "-.")[k % 3],
                marker="osD^"[k % 4], markersize=3, label=label)
    if baseline is not None:
        ax.axhline(100 * baseline, color="0.3", linestyle="--", linewidth=1, label="prior box")
    ax.set_xlabel("training step")
    ax.set_ylabel("accuracy, all findings (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)  # beside the curves, not on them
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


# --- RUN/scores.csv: one row per (checkpoint step, finding) ------------------------------------
SCORE_FIELDS = ["step", "finding", "correct", "total", "iou", "mode", "score_threshold"]


def append_scores(path: PathLike, step: int, counts: Counts, iou_threshold: float, mode: str,
                  score_threshold: float) -> None:
    """Append one checkpoint's counts to ``scores.csv`` (rewritten atomically)."""
    path = Path(path)
    old = path.read_text() if path.exists() else ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SCORE_FIELDS)
    if not old:
        writer.writeheader()
    for finding, (c, t) in counts.items():
        writer.writerow({"step": int(step), "finding": finding, "correct": c, "total": t,
                         "iou": iou_threshold, "mode": mode, "score_threshold": score_threshold})
    atomic_write_text(path, old + buf.getvalue())


def read_scores(path: PathLike, iou_threshold: Optional[float] = None, mode: Optional[str] = None,
                score_threshold: Optional[float] = None) -> Dict[int, Counts]:
    """``scores.csv`` → {step: counts}, keeping only rows of the given metric settings."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no scores file")
    out: Dict[int, Counts] = {}
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"step", "finding", "correct", "total"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
        for line, row in enumerate(reader, start=2):
            try:
                if iou_threshold is not None and not np.isclose(float(row["iou"]), iou_threshold):
                    continue
                if mode is not None and row["mode"] != mode:
                    continue
                if (mode == "any" and score_threshold is not None
                        and not np.isclose(float(row["score_threshold"]), score_threshold)):
                    continue
                out.setdefault(int(row["step"]), {})[row["finding"]] = (int(row["correct"]),
                                                                      int(row["total"]))
            except (TypeError, ValueError, KeyError) as exc:
                raise ValueError(f"{path}:{line}: bad scores row {row} ({exc})") from exc
    return out


# --- RUN folders of train.py ---------------------------------------------------------------------
def run_protocol_name(run_dir: PathLike) -> str:
    """The protocol of a run: ``RUN/protocol.json`` or else the folder name."""
    meta = DetectorRunPaths(run_dir).protocol
    if meta.is_file():
        data = read_json(meta, ValueError, what=meta.name)
        if not isinstance(data, dict) or "protocol" not in data:
            raise ValueError(f"{meta}: unreadable {meta.name} (no 'protocol' key)")
        return str(data["protocol"])
    return Path(run_dir).name


def run_counts(run_dir: PathLike, iou_threshold: float = 0.1, mode: str = "top1",
               score_threshold: float = 0.0, findings: Sequence[str] = FINDINGS) -> Dict[int, Counts]:
    """{step: counts} of one run: recomputed from ``detections/step_*.npz`` (any IoU / mode), or
    read from ``scores.csv`` when the detections are gone (then only its own settings exist)."""
    from cxr_keras.detection.inference import load_results

    paths = DetectorRunPaths(run_dir)
    if not paths.root.is_dir():
        raise FileNotFoundError(f"{paths.root}: run folder does not exist")
    files = paths.detection_files()
    if files:
        out = {}
        for f in files:
            try:
                step = paths.detection_step(f)
            except ValueError:
                raise ValueError(f"{f}: expected a name like {paths.detection(5000).name}") from None
            out[step] = localisation_counts(load_results(f), findings, iou_threshold, mode,
                                            score_threshold)
        return out
    scores = paths.scores
    if not scores.is_file():
        raise FileNotFoundError(f"{paths.root}: neither {paths.detections.name}/ files nor "
                                f"{scores.name} (not a run of cxr-keras train_detector?)")
    out = read_scores(scores, iou_threshold, mode, score_threshold)
    if not out:
        raise ValueError(f"{scores}: no rows for IoU {iou_threshold}, mode {mode} (and no "
                         f"detections/ to recompute from)")
    return out
