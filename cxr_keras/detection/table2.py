"""Table 2: correct-location accuracy per protocol and window, beside the prior-box baseline.

Every cell carries a 95% bootstrap interval over test images; protocols trained with several seeds
show the mean over seeds ± their standard deviation and the interval of the seed mean. Each
protocol's difference from ``ori`` in the same window (and ``ori``'s from the prior box) gets a
paired, seed-pooled bootstrap interval and is marked "not shown" when that interval contains 0.
Next to the accuracy at each IoU threshold: COCO mAP@0.5 through the OD API's own evaluator.
The checkpoint of each column is chosen by ``selection.py``. Everything is recomputed from the runs'
kept detections (``RUN/detections*/step_*.npz``); a run with only ``scores.csv`` gets counts
without intervals.

Outputs (``OUT/``): ``table2.md``, ``table2.csv`` (per seed, plus ``mean`` rows), ``differences.csv``,
``coco.csv`` and ``accuracy_vs_steps.png``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from cxr_keras.config import FINDINGS
from cxr_keras.detection import baseline, localisation as loc, selection, uncertainty
from cxr_keras.io_utils import read_json
from cxr_keras.paths import DetectorRunPaths

PathLike = Union[str, os.PathLike]
REFERENCE = "ori"
BASELINE = baseline.NAME


@dataclass(frozen=True)
class Settings:
    """How Table 2 is computed (the flags of ``cxr-keras evaluate_localisation --runs``)."""

    eval_steps: Tuple[int, ...]
    window: int
    ious: Tuple[float, ...] = (0.1,)
    mode: str = "top1"
    score_threshold: float = 0.5
    select: Optional[str] = None  # None: "val" when every run has validation detections, else "fixed"
    draws: int = uncertainty.DRAWS
    seed: int = 0
    coco: bool = True
    findings: Tuple[str, ...] = FINDINGS

    @property
    def iou(self) -> float:
        """The primary threshold: checkpoints are chosen with it."""
        return self.ious[0]


@dataclass
class Run:
    """One detector run (or the prior-box baseline): its scored steps, read lazily."""

    path: Path
    protocol: str
    seed: Optional[int] = None
    is_baseline: bool = False
    test: Dict[int, Path] = field(default_factory=dict)  # step -> detections .npz
    val: Dict[int, Path] = field(default_factory=dict)
    scores: Dict[float, Dict[int, loc.Counts]] = field(default_factory=dict)  # when no detections
    memory: Dict[Tuple[str, int], list] = field(default_factory=dict)  # results already in memory

    @property
    def steps(self) -> List[int]:
        if self.test or self.memory:
            return sorted(set(self.test) | {s for split, s in self.memory if split == "test"})
        return sorted(next(iter(self.scores.values()), {}))

    def results(self, step: int, split: str = "test") -> Optional[list]:
        from cxr_keras.detection.inference import load_results

        key = (split, step)
        if key not in self.memory:
            files = self.test if split == "test" else self.val
            if step not in files:
                return None
            self.memory[key] = load_results(files[step])
        return self.memory[key]

    def outcomes(self, step: int, s: Settings, iou: float, split: str = "test"):
        results = self.results(step, split)
        if results is None:
            return None
        return uncertainty.outcomes(results, iou, s.mode, s.score_threshold)

    def counts(self, step: int, s: Settings, iou: float, split: str = "test") -> Optional[loc.Counts]:
        results = self.results(step, split)
        if results is not None:
            return loc.localisation_counts(results, s.findings, iou, s.mode, s.score_threshold)
        if split == "test" and step in self.scores.get(iou, {}):
            return self.scores[iou][step]
        return None

    @property
    def label(self) -> str:
        return self.protocol if self.seed is None else f"{self.protocol} (seed {self.seed})"


def load_run(run_dir: PathLike, s: Settings) -> Run:
    """A run folder of train_detector (or its ``--prior-box`` baseline)."""
    paths = DetectorRunPaths(run_dir)
    if not paths.root.is_dir():
        raise FileNotFoundError(f"{paths.root}: run folder does not exist")
    meta = read_json(paths.protocol, ValueError, what=paths.protocol.name) if paths.protocol.is_file() else {}
    if not isinstance(meta, dict):
        raise ValueError(f"{paths.protocol}: unreadable {paths.protocol.name}")
    run = Run(paths.root, str(meta.get("protocol", paths.root.name)), meta.get("seed"),
              bool(meta.get("baseline", False)))
    try:
        run.test = {paths.detection_step(f): f for f in paths.detection_files()}
        run.val = {paths.detection_step(f): f for f in paths.val_detection_files()}
    except ValueError:
        raise ValueError(f"{paths.detections}: expected file names like {paths.detection(5000).name}") from None
    if not run.test:
        for iou in s.ious:
            run.scores[iou] = loc.run_counts(paths.root, iou, s.mode, s.score_threshold, s.findings)
    return run


def _disambiguate(runs: List[Run]) -> List[Run]:
    """Two runs of one protocol and seed (e.g. two folders without a seed) keep apart by folder."""
    seen = set()
    for run in runs:
        if (run.protocol, run.seed) in seen:
            run.protocol = f"{run.protocol} ({run.path.name})"
        seen.add((run.protocol, run.seed))
    return runs


def auto_baseline(runs: Sequence[Run]) -> Tuple[Optional[Run], str]:
    """The prior-box baseline on the runs' test images, priors from the real training record of a
    run's pipeline.config (``ori`` preferred); (None, reason) when no run allows it."""
    for run in sorted(runs, key=lambda r: r.protocol != REFERENCE):
        config = DetectorRunPaths(run.path).config
        if not run.steps or not config.is_file() or run.results(run.steps[0]) is None:
            continue
        try:
            priors, train = baseline.config_priors(config)
        except (FileNotFoundError, ValueError) as exc:
            return None, str(exc)
        base = Run(run.path, BASELINE, None, True)
        base.memory[("test", 0)] = baseline.prior_results(run.results(run.steps[0]), priors)
        return base, f"priors from {train}"
    return None, "no run with detections and a pipeline.config whose training record exists"


def resolve_selection(runs: Sequence[Run], s: Settings) -> str:
    """``s.select``, or ``val`` when every detector run was scored on validation images, else ``fixed``."""
    detectors = [r for r in runs if not r.is_baseline]
    if s.select is not None:
        if s.select not in selection.SELECTIONS:
            raise ValueError(f"unknown checkpoint selection {s.select!r}; choose from {selection.SELECTIONS}")
        return s.select
    return "val" if detectors and all(r.val for r in detectors) else "fixed"


def choose_steps(runs: Sequence[Run], s: Settings, how: str) -> Dict[Tuple[int, int], Optional[Dict[str, int]]]:
    """{(run index, window centre): {row: step}} at the primary IoU."""
    picks = {}
    for i, run in enumerate(runs):
        if run.is_baseline:
            continue
        test = {st: run.counts(st, s, s.iou) for st in run.steps}
        val = {st: run.counts(st, s, s.iou, "val") for st in run.val} if how == "val" else None
        for centre, _, _ in loc.windows(s.eval_steps, s.window):
            try:
                picks[(i, centre)] = selection.choose(test, centre, s.window, how, val)
            except ValueError as exc:
                raise ValueError(f"{run.path}: {exc}") from None
    return picks


@dataclass
class Column:
    """One column of Table 2: a protocol in a window (the baseline: every window), one entry per seed."""

    protocol: str
    window: Optional[int]
    seeds: List[Tuple[Run, Dict[str, int]]]  # (run, {row: chosen step})

    @property
    def name(self) -> str:
        return "prior box" if self.window is None else f"{self.protocol} @{self.window}"


def columns(runs: Sequence[Run], base: Optional[Run], picks, s: Settings) -> List[Column]:
    """The baseline column first, then protocol × window in the order the runs were given."""
    rows = list(s.findings) + [loc.TOTAL]
    out = [Column(BASELINE, None, [(base, {r: 0 for r in rows})])] if base else []
    for protocol in dict.fromkeys(r.protocol for r in runs if not r.is_baseline):
        for centre, _, _ in loc.windows(s.eval_steps, s.window):
            seeds = [(run, picks[(i, centre)]) for i, run in enumerate(runs)
                     if run.protocol == protocol and not run.is_baseline and picks.get((i, centre))]
            seeds.sort(key=lambda entry: -1 if entry[0].seed is None else entry[0].seed)  # any run order
            out.append(Column(protocol, centre, seeds))
    return out


class Scorer:
    """Outcomes, counts and bootstrap intervals of (run, step, IoU), each computed once."""

    def __init__(self, s: Settings):
        self.s = s
        self._outcomes: Dict[tuple, object] = {}
        self._boot: Dict[tuple, dict] = {}
        self.filenames: Optional[List[str]] = None

    def outcomes(self, run: Run, step: int, iou: float):
        key = (id(run), step, iou)
        if key not in self._outcomes:
            self._outcomes[key] = run.outcomes(step, self.s, iou)
            results = run.results(step)
            if results is not None:
                names = [r.filename for r in results]
                if self.filenames is None:
                    self.filenames = names
                elif names != self.filenames:
                    raise ValueError(f"{run.path}: step {step} was scored on other test images than the "
                                     f"other runs (Table 2 compares detectors on one test set)")
        return self._outcomes[key]

    def counts(self, run: Run, step: int, iou: float, row: str) -> Optional[Tuple[int, int]]:
        o = self.outcomes(run, step, iou)
        if o is None:
            counts = run.counts(step, self.s, iou)
            return tuple(counts[row]) if counts and row in counts else None
        select = o.rows(self.s.findings)[row]
        return int(o.correct[select].sum()), int(select.sum())

    def interval(self, entries: Sequence[Tuple[Run, int]], iou: float, row: str):
        """Bootstrap interval of the (seed-mean) accuracy of ``row``: (low, high) or None."""
        outs = [self.outcomes(run, step, iou) for run, step in entries]
        if any(o is None for o in outs):
            return None
        key = (tuple((id(r), st) for r, st in entries), iou)
        if key not in self._boot:
            self._boot[key] = uncertainty.pooled_accuracy(outs, self.s.findings, self.s.draws, self.s.seed)
        return self._boot[key][row]


def _fmt(x) -> object:
    return "" if x is None or (isinstance(x, float) and np.isnan(x)) else round(float(x), 4)


def accuracy_rows(col: Column, iou: float, sc: Scorer, how: str) -> List[dict]:
    """table2.csv rows of one column at one IoU: one per seed and row, plus ``mean`` rows."""
    out = []
    rows = list(sc.s.findings) + [loc.TOTAL]
    if not col.seeds:  # no scored checkpoint in this window
        return [{"iou": iou, "protocol": col.protocol, "seed": "", "window": col.window, "finding": row,
                 "correct": "", "total": "", "accuracy": "", "low": "", "high": "", "sd": "",
                 "best_step": "", "checkpoints": 0, "select": how} for row in rows]
    for run, picked in col.seeds:
        checkpoints = 1 if col.window is None else len(selection.steps_in_window(run.steps, col.window,
                                                                                  sc.s.window))
        for row in rows:
            c_t = sc.counts(run, picked[row], iou, row)
            lo_hi = sc.interval([(run, picked[row])], iou, row) if c_t and c_t[1] else None
            out.append({"iou": iou, "protocol": col.protocol, "seed": "" if run.seed is None else run.seed,
                        "window": "" if col.window is None else col.window, "finding": row,
                        "correct": c_t[0] if c_t else "", "total": c_t[1] if c_t else "",
                        "accuracy": _fmt(c_t[0] / c_t[1]) if c_t and c_t[1] else "",
                        "low": _fmt(lo_hi[0]) if lo_hi else "", "high": _fmt(lo_hi[1]) if lo_hi else "",
                        "sd": "", "best_step": "" if run.is_baseline else picked[row],
                        "checkpoints": checkpoints, "select": "" if run.is_baseline else how})
    if len(col.seeds) > 1:
        out += _mean_rows(col, iou, sc, out, how)
    return out


def _mean_rows(col: Column, iou: float, sc: Scorer, seed_rows: List[dict], how: str) -> List[dict]:
    out = []
    for row in list(sc.s.findings) + [loc.TOTAL]:
        accs = [r["correct"] / r["total"] if r["total"] else "" for r in seed_rows if r["finding"] == row]
        valid = [a for a in accs if a != ""]
        lo_hi = sc.interval([(run, p[row]) for run, p in col.seeds], iou, row) if len(valid) == len(accs) else None
        out.append({"iou": iou, "protocol": col.protocol, "seed": "mean", "window": col.window,
                    "finding": row, "correct": "", "total": "",
                    "accuracy": _fmt(np.mean(valid)) if valid else "",
                    "sd": _fmt(np.std(valid, ddof=1)) if len(valid) > 1 else "",
                    "low": _fmt(lo_hi[0]) if lo_hi else "", "high": _fmt(lo_hi[1]) if lo_hi else "",
                    "best_step": "", "checkpoints": "", "select": how})
    return out


def comparisons(cols: Sequence[Column]) -> List[Tuple[Column, Column]]:
    """(column, reference): every protocol against ori in the same window, then ori against the
    prior box."""
    by_key = {(c.protocol, c.window): c for c in cols}
    out = [(c, by_key[(REFERENCE, c.window)]) for c in cols
           if c.window is not None and c.protocol != REFERENCE and (REFERENCE, c.window) in by_key]
    base = [c for c in cols if c.window is None]
    if base:
        out += [(c, base[0]) for c in cols if c.protocol == REFERENCE and c.window is not None]
    return out


def _pairs(col: Column, ref: Column, row: str) -> List[Tuple[Tuple[Run, int], Tuple[Run, int]]]:
    """(reference, other) entries per seed: the baseline pairs with every seed, detectors by seed."""
    if ref.window is None:
        base, picked = ref.seeds[0]
        return [((base, picked[row]), (run, p[row])) for run, p in col.seeds]
    ref_by_seed = {run.seed: (run, p) for run, p in ref.seeds}
    return [((ref_by_seed[run.seed][0], ref_by_seed[run.seed][1][row]), (run, p[row]))
            for run, p in col.seeds if run.seed in ref_by_seed]


def difference_rows(col: Column, ref: Column, iou: float, sc: Scorer) -> List[dict]:
    """differences.csv rows: accuracy of ``col`` minus ``ref`` per row, paired over test images."""
    out = []
    for row in list(sc.s.findings) + [loc.TOTAL]:
        pairs = _pairs(col, ref, row)
        outs = [(sc.outcomes(*a, iou), sc.outcomes(*b, iou)) for a, b in pairs]
        d = lo = hi = None
        if outs and all(a is not None and b is not None for a, b in outs):
            d, lo, hi = uncertainty.pooled_difference(outs, sc.s.findings, sc.s.draws, sc.s.seed)[row]
        shown = uncertainty.shown((d, lo, hi)) if d is not None else None
        out.append({"iou": iou, "protocol": col.protocol, "reference": ref.protocol,
                    "window": col.window, "finding": row, "difference": _fmt(d), "low": _fmt(lo),
                    "high": _fmt(hi), "shown": "" if shown is None else ("yes" if shown else "no"),
                    "seeds": len(pairs)})
    return out


def coco_rows(col: Column, sc: Scorer) -> List[dict]:
    """coco.csv rows: COCO mAP@0.5 (OD API evaluator) at each seed's column checkpoint, plus means."""
    from cxr_keras.detection.coco import coco_map50

    out, values = [], []
    for run, picked in col.seeds:
        results = run.results(selection.column_step(picked))
        if results is None:
            continue
        maps = coco_map50(results, sc.s.findings)
        values.append(maps)
        out += [{"protocol": col.protocol, "seed": "" if run.seed is None else run.seed,
                 "window": "" if col.window is None else col.window, "finding": row,
                 "map50": _fmt(v), "sd": "", "best_step": "" if run.is_baseline else selection.column_step(picked)}
                for row, v in maps.items()]
    if len(values) > 1:
        for row in values[0]:
            v = np.array([m[row] for m in values], float)
            out.append({"protocol": col.protocol, "seed": "mean", "window": col.window, "finding": row,
                        "map50": _fmt(np.mean(v)), "sd": _fmt(np.std(v, ddof=1)), "best_step": ""})
    return out


# --- markdown -----------------------------------------------------------------------------------
def _pct(x) -> str:
    return f"{100 * float(x):.1f}"


def accuracy_cell(rows: Sequence[dict]) -> str:
    """One cell: "acc (c/t) [low, high]" for one seed, "mean ± sd [low, high]" for several."""
    mean = [r for r in rows if r["seed"] == "mean"]
    r = mean[0] if mean else (rows[0] if len(rows) == 1 else None)
    if r is None or r["accuracy"] == "":
        return "–"
    text = _pct(r["accuracy"])
    text += f" ± {_pct(r['sd'])}" if r["seed"] == "mean" and r["sd"] != "" else ""
    text += f" ({r['correct']}/{r['total']})" if r["seed"] != "mean" else ""
    return text + (f" [{_pct(r['low'])}, {_pct(r['high'])}]" if r["low"] != "" else "")


def difference_cell(r: dict) -> str:
    if r["difference"] == "":
        return "–"
    text = f"{100 * r['difference']:+.1f}"
    if r["low"] == "":
        return text
    text += f" [{100 * r['low']:+.1f}, {100 * r['high']:+.1f}]"
    return text + ("" if r["shown"] == "yes" else " not shown")


def _diff_name(d: dict) -> str:
    ref = "prior box" if d["reference"] == BASELINE else d["reference"]
    return f"{d['protocol']} − {ref} @{d['window']}"


def _grid(head: List[str], names: Sequence[str], cells: Mapping[Tuple[str, str], str]) -> List[str]:
    lines = ["| " + " | ".join(["Finding"] + head) + " |", "|" + "|".join(["---"] + ["---:"] * len(head)) + "|"]
    for f in names:
        label = f"**{f}**" if f == loc.TOTAL else f
        lines.append("| " + " | ".join([label] + [cells.get((h, f), "–") for h in head]) + " |")
    return lines


def _intro(cols: Sequence[Column], s: Settings, how: str, baseline_note: str) -> List[str]:
    seeds = {c.protocol: sorted({"unseeded" if r.seed is None else str(r.seed) for r, _ in c.seeds},
                                key=lambda v: (len(v), v)) for c in cols if c.window is not None}
    several = any(len(v) > 1 for v in seeds.values())
    return [
        f"Correct-location accuracy (%): a ground-truth box counts when the {s.mode} detection of its "
        f"finding has IoU > T. Checkpoint per window [s − {s.window}, s + {s.window}]: "
        f"{selection.DESCRIPTION[how]} (`--select {how}`).",
        "",
        f"[low, high]: 95% bootstrap interval over test images ({s.draws} draws, seed {s.seed})"
        + ("; several seeds: mean ± sd over seeds, interval of the seed mean" if several else "")
        + ". Seeds: " + "; ".join(f"{p} {', '.join(v)}" for p, v in seeds.items()) + ".",
        "",
        "prior box: each finding's mean training box placed on every test image, the finding's only "
        f"detection ({baseline_note}).",
        "",
    ]


def table2_markdown(acc: Sequence[dict], diffs: Sequence[dict], coco: Sequence[dict],
                    cols: Sequence[Column], s: Settings, how: str, baseline_note: str) -> str:
    """The whole ``table2.md``: accuracy and differences per IoU, then COCO mAP@0.5."""
    names = list(s.findings) + [loc.TOTAL]
    head = [c.name for c in cols]
    lines = ["# Table 2: correct-location accuracy", ""] + _intro(cols, s, how, baseline_note)
    for iou in s.ious:
        cells = {(c.name, f): accuracy_cell([r for r in acc if r["iou"] == iou and r["protocol"] == c.protocol
                                             and r["window"] == ("" if c.window is None else c.window)
                                             and r["finding"] == f]) for c in cols for f in names}
        lines += [f"## IoU > {iou}", ""] + _grid(head, names, cells) + [""]
        ds = [d for d in diffs if d["iou"] == iou]
        if ds:
            dhead = list(dict.fromkeys(_diff_name(d) for d in ds))
            dcells = {(_diff_name(d), d["finding"]): difference_cell(d) for d in ds}
            lines += [f"Differences at IoU > {iou} (percentage points; paired bootstrap over test images, "
                      "pooled over seeds; \"not shown\": the 95% interval contains 0):", ""]
            lines += _grid(dhead, names, dcells) + [""]
    if coco:
        cells = {(c.name, f): _coco_cell([r for r in coco if r["protocol"] == c.protocol and r["finding"] == f
                                          and r["window"] == ("" if c.window is None else c.window)])
                 for c in cols for f in names}
        lines += ["## COCO mAP@0.5 (%)", "",
                  "The OD API's `CocoDetectionEvaluator` (pycocotools) at each column's checkpoint; per finding: "
                  "that finding's boxes and detections alone; Total: the mean over findings with test boxes.", ""]
        lines += _grid(head, names, cells) + [""]
    return "\n".join(lines)


def _coco_cell(rows: Sequence[dict]) -> str:
    mean = [r for r in rows if r["seed"] == "mean"]
    r = mean[0] if mean else (rows[0] if len(rows) == 1 else None)
    if r is None or r["map50"] == "":
        return "–"
    return _pct(r["map50"]) + (f" ± {_pct(r['sd'])}" if r["sd"] != "" else "")


# --- files --------------------------------------------------------------------------------------
ACCURACY_FIELDS = ["iou", "protocol", "seed", "window", "finding", "correct", "total", "accuracy", "low",
                   "high", "sd", "best_step", "checkpoints", "select"]
DIFFERENCE_FIELDS = ["iou", "protocol", "reference", "window", "finding", "difference", "low", "high",
                     "shown", "seeds"]
COCO_FIELDS = ["protocol", "seed", "window", "finding", "map50", "sd", "best_step"]


def output_files(out_dir: PathLike) -> Dict[str, Path]:
    """Where ``evaluate_runs`` writes (the names of the Table 2 folder)."""
    out = Path(out_dir)
    md, csv_path = loc.table2_files(out)
    return {"markdown": md, "csv": csv_path, "differences": out / "differences.csv",
            "coco": out / "coco.csv", "plot": out / "accuracy_vs_steps.png"}


def _write_csv(path: Path, fields: Sequence[str], rows: Sequence[dict]) -> None:
    import csv
    import io

    from cxr_keras.io_utils import atomic_write_text

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def _plot(runs: Sequence[Run], base_rows: Sequence[dict], s: Settings, path: Path) -> Path:
    detectors = sorted((r for r in runs if not r.is_baseline), key=lambda r: (r.protocol, r.seed or 0))
    curves = {run.label: {st: run.counts(st, s, s.iou) for st in run.steps} for run in detectors}
    total = [r for r in base_rows if r["finding"] == loc.TOTAL and r["iou"] == s.iou and r["accuracy"] != ""]
    return loc.plot_accuracy(curves, path, s.eval_steps, s.window,
                             title=f"Correct-location accuracy, IoU > {s.iou}",
                             baseline=float(total[0]["accuracy"]) if total else None,
                             groups={run.label: run.protocol for run in detectors})


def evaluate_runs(run_dirs: Sequence[PathLike], out_dir: PathLike, s: Settings) -> Dict[str, Path]:
    """Table 2 of ``run_dirs`` into ``out_dir`` (see the module docstring); returns the paths."""
    runs = [load_run(r, s) for r in run_dirs]
    bases = [r for r in runs if r.is_baseline]
    if len(bases) > 1:
        raise ValueError(f"more than one prior-box run: {[str(r.path) for r in bases]}")
    detectors = _disambiguate([r for r in runs if not r.is_baseline])
    base, note = (bases[0], f"run folder {bases[0].path.name}/") if bases else auto_baseline(detectors)
    how = resolve_selection(detectors, s)
    cols = columns(detectors, base, choose_steps(detectors, s, how), s)
    sc = Scorer(s)
    acc = [row for iou in s.ious for c in cols for row in accuracy_rows(c, iou, sc, how)]
    diffs = [row for iou in s.ious for c, ref in comparisons(cols) for row in difference_rows(c, ref, iou, sc)]
    coco = [row for c in cols for row in coco_rows(c, sc)] if s.coco else []
    files = output_files(out_dir)
    from cxr_keras.io_utils import atomic_write_text

    atomic_write_text(files["markdown"], table2_markdown(acc, diffs, coco, cols, s, how, note))
    _write_csv(files["csv"], ACCURACY_FIELDS, acc)
    _write_csv(files["differences"], DIFFERENCE_FIELDS, diffs)
    _write_csv(files["coco"], COCO_FIELDS, coco)
    _plot(detectors, [r for r in acc if r["protocol"] == BASELINE], s, files["plot"])
    return files
