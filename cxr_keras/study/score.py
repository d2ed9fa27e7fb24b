"""Table 1 of the paper from the readers' answers: "n judged real" per finding × source, R1|R2.

Also per-reader sensitivity / specificity for spotting fakes (a fake is the positive class) and
Cohen's kappa between every pair of readers. The same table code serves the automatic judge.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from itertools import combinations
from typing import Dict, List, Mapping, Optional, Sequence

from cxr_keras.io_utils import atomic_write_text
from cxr_keras.study import db as study_db
from cxr_keras.study.layout import REAL, StudyError, load_key, load_study, paths

Judgements = Mapping[str, Mapping[str, str]]  # reader label → {image id → 'real' | 'fake'}


def judgement_table(key: Mapping[str, Mapping], judgements: Judgements, findings: Sequence[str],
                    sources: Sequence[str]) -> Dict:
    """Counts per finding × source: images shown (n) and, per reader, answered and judged real."""
    readers = list(judgements)
    cells = {f: {s: {"n": 0, "answered": [0] * len(readers), "judged_real": [0] * len(readers)}
                 for s in sources} for f in findings}
    for image_id, entry in key.items():
        f, s = entry["finding"], entry["source"]
        if f not in cells or s not in cells[f]:
            continue
        cell = cells[f][s]
        cell["n"] += 1
        for r, reader in enumerate(readers):
            a = judgements[reader].get(image_id)
            if a is not None:
                cell["answered"][r] += 1
                cell["judged_real"][r] += a == "real"
    total = {s: {"n": sum(cells[f][s]["n"] for f in findings),
                 "answered": [sum(cells[f][s]["answered"][r] for f in findings) for r in range(len(readers))],
                 "judged_real": [sum(cells[f][s]["judged_real"][r] for f in findings) for r in range(len(readers))]}
             for s in sources}
    return {"readers": readers, "findings": list(findings), "sources": list(sources), "cells": cells,
            "total": total}


def reader_metrics(key: Mapping[str, Mapping], answers: Mapping[str, str]) -> Dict:
    """Sensitivity (fakes called fake), specificity (reals called real), accuracy; per generator too."""
    tp = fn = tn = fp = 0
    per_gen: Dict[str, List[int]] = {}
    for image_id, a in answers.items():
        entry = key.get(image_id)
        if entry is None:
            continue
        if entry["source"] == REAL:
            tn += a == "real"
            fp += a == "fake"
        else:
            tp += a == "fake"
            fn += a == "real"
            g = per_gen.setdefault(entry["source"], [0, 0])
            g[0] += a == "fake"
            g[1] += 1
    return {
        "answered": tp + fn + tn + fp, "tp": tp, "fn": fn, "tn": tn, "fp": fp,
        "sensitivity": _ratio(tp, tp + fn), "specificity": _ratio(tn, tn + fp),
        "accuracy": _ratio(tp + tn, tp + fn + tn + fp),
        "sensitivity_per_source": {g: _ratio(v[0], v[1]) for g, v in per_gen.items()},
    }


def cohen_kappa(a: Mapping[str, str], b: Mapping[str, str]) -> Dict:
    """Cohen's kappa over the images both readers answered (None when undefined)."""
    common = sorted(set(a) & set(b))
    n = len(common)
    if n == 0:
        return {"n": 0, "kappa": None, "agreement": None}
    agree = sum(a[i] == b[i] for i in common) / n
    pa = sum(a[i] == "real" for i in common) / n
    pb = sum(b[i] == "real" for i in common) / n
    pe = pa * pb + (1 - pa) * (1 - pb)
    kappa = None if math.isclose(pe, 1.0) else (agree - pe) / (1 - pe)
    return {"n": n, "kappa": kappa, "agreement": agree}


def _ratio(num: int, den: int) -> Optional[float]:
    return num / den if den else None


def score_judgements(key: Mapping[str, Mapping], judgements: Judgements, findings: Sequence[str],
                     sources: Sequence[str]) -> Dict:
    """Table, per-reader metrics and pairwise kappa for any set of judgements (human or automatic)."""
    table = judgement_table(key, judgements, findings, sources)
    metrics = {r: reader_metrics(key, judgements[r]) for r in judgements}
    kappas = [{"readers": [r1, r2], **cohen_kappa(judgements[r1], judgements[r2])}
              for r1, r2 in combinations(list(judgements), 2)]
    return {"table": table, "metrics": metrics, "kappa": kappas, "total_images": len(key)}


def score_study(study_dir: os.PathLike) -> Dict:
    """Score the human readers of STUDY_DIR; readers are labelled R1, R2, ... in registration order."""
    p = paths(study_dir)
    study = load_study(p.root)
    key = load_key(p.root)
    if set(key) != set(study["order"]):
        raise StudyError(f"{p.key}: does not match {p.study_json} (different image ids)")
    by_name = study_db.all_answers(p.db)
    labels = {name: f"R{i + 1}" for i, name in enumerate(by_name)}
    judgements = {labels[name]: ans for name, ans in by_name.items()}
    result = score_judgements(key, judgements, study["findings"], study["sources"])
    result["reader_names"] = {labels[name]: name for name in by_name}
    result["kind"] = "human readers"
    return result


# -- rendering -----------------------------------------------------------------------------------
def md_escape(text: str) -> str:
    """User text (a reader's name, a generator's) safe in a Markdown table cell: one line, with the
    characters that break a table or make links, code, emphasis or HTML backslash-escaped."""
    return re.sub(r"([\\`*\[\]<>|])", r"\\\1", " ".join(str(text).split()))


def _fmt(x: Optional[float], digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _cell_text(cell: Mapping, sep: str, only_answered: bool = False) -> str:
    """'R1|R2 /n'; a reader who judged none of the cell's images shows '-' (or is left out)."""
    parts = [str(c) if a else "-" for c, a in zip(cell["judged_real"], cell["answered"])
             if a or not only_answered]
    return f"{sep.join(parts) if parts else '-'} /{cell['n']}"


def table_rows(table: Mapping, sep: str = "|", only_answered: bool = False) -> List[List[str]]:
    """Rows of Table 1 (header first): finding, then 'R1|R2 /n' per source, then a Total row."""
    rows = [["Finding", *table["sources"]]]
    for f in table["findings"]:
        rows.append([f, *(_cell_text(table["cells"][f][s], sep, only_answered) for s in table["sources"])])
    rows.append(["Total", *(_cell_text(table["total"][s], sep, only_answered) for s in table["sources"])])
    return rows


def table_csv(table: Mapping, only_answered: bool = False) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerows(table_rows(table, "|", only_answered))
    return buf.getvalue()


def long_csv(table: Mapping) -> str:
    """One row per reader × finding × source with plain numbers (for further analysis)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["reader", "finding", "source", "n", "answered", "judged_real"])
    for r, reader in enumerate(table["readers"]):
        for f in table["findings"]:
            for s in table["sources"]:
                c = table["cells"][f][s]
                w.writerow([reader, f, s, c["n"], c["answered"][r], c["judged_real"][r]])
    return buf.getvalue()


def metrics_csv(result: Mapping) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    sources = [s for s in result["table"]["sources"] if s != REAL]
    w.writerow(["reader", "answered", "sensitivity", "specificity", "accuracy",
                *[f"sensitivity_{s}" for s in sources]])
    for r, m in result["metrics"].items():
        w.writerow([r, m["answered"], _fmt(m["sensitivity"], 4), _fmt(m["specificity"], 4),
                    _fmt(m["accuracy"], 4), *[_fmt(m["sensitivity_per_source"].get(s), 4) for s in sources]])
    return buf.getvalue()


def markdown(result: Mapping, title: str = "Table 1: number of images judged real") -> str:
    """Table 1 plus reader metrics and kappa as Markdown ('|' inside cells is escaped)."""
    table = result["table"]
    rows = table_rows(table, "\\|")
    rows = [[md_escape(c) for c in rows[0]]] + [[md_escape(r[0]), *r[1:]] for r in rows[1:]]
    lines = [f"# {title}", ""]
    readers = table["readers"]
    names = result.get("reader_names", {})
    lines.append("Cells: judged real by " + " \\| ".join(readers) + " / images shown."
                 if readers else "No readers have answered yet.")
    lines.append("")
    lines.append("| " + " | ".join(rows[0]) + " |")
    lines.append("|" + "---|" * len(rows[0]))
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    lines += ["", "## Readers (a fake is the positive class)", "",
              "| Reader | Answered | Sensitivity | Specificity | Accuracy |", "|---|---|---|---|---|"]
    for r, m in result["metrics"].items():
        label = f"{r} ({md_escape(names[r])})" if r in names and names[r] != r else r
        lines.append(f"| {label} | {m['answered']} of {result['total_images']} | {_fmt(m['sensitivity'])} | "
                     f"{_fmt(m['specificity'])} | {_fmt(m['accuracy'])} |")
    lines += ["", "## Agreement (Cohen's kappa)", ""]
    if not result["kappa"]:
        lines.append("Needs at least two readers.")
    for k in result["kappa"]:
        lines.append(f"- {k['readers'][0]} vs {k['readers'][1]}: kappa {_fmt(k['kappa'])} "
                     f"(raw agreement {_fmt(k['agreement'])}, {k['n']} images answered by both)")
    return "\n".join(lines) + "\n"


def write_scores(study_dir: os.PathLike) -> Dict:
    """Score STUDY_DIR and write scores/table1.{md,csv}, judgements.csv, metrics.csv, scores.json."""
    p = paths(study_dir)
    result = score_study(p.root)
    out = p.scores
    atomic_write_text(out / "table1.md", markdown(result))
    atomic_write_text(out / "table1.csv", table_csv(result["table"]))
    atomic_write_text(out / "judgements.csv", long_csv(result["table"]))
    atomic_write_text(out / "metrics.csv", metrics_csv(result))
    atomic_write_text(out / "scores.json", json.dumps(result, indent=1))
    return result
