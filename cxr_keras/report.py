"""The run report: sample grids, training curves, fidelity, Table 2, the judge's Table 1, commands, versions.

Reads only what the stages left in RUN_DIR (see ``pipeline.plan``; every location through
``paths.PipelinePaths``) and writes ``report.md`` and a self-contained ``report.html`` (images
embedded), so a run folder can be mailed as one file.
"""
from __future__ import annotations

import base64
import csv
import json
import platform
import re
import time
from importlib import metadata
from pathlib import Path
from typing import Dict, List, Optional

import cv2
import numpy as np

from cxr_keras.config import FINDINGS
from cxr_keras.data.images import encode_png
from cxr_keras.io_utils import atomic_path, atomic_write_bytes, atomic_write_text
from cxr_keras.paths import GENERATORS, PipelinePaths

TILE = 160
STYLE = ("body{font:15px/1.5 system-ui,sans-serif;color:#222;max-width:1100px;margin:2em auto;padding:0 1em}"
         "h1{font-size:1.7em}h2{font-size:1.35em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}"
         "h3{font-size:1.1em;margin-top:1.4em}h4{font-size:1em}"
         "div.table{overflow-x:auto;margin:.8em 0}table{border-collapse:collapse;font-size:.92em}"
         "td,th{border:1px solid #ccc;padding:3px 9px;text-align:left;vertical-align:top}"
         "th{background:#f0f0f0}tr:nth-child(even) td{background:#fafafa}"
         "img{max-width:100%;height:auto}code{background:#f4f4f4;padding:0 .2em}"
         "pre{background:#f4f4f4;padding:.6em .8em;white-space:pre-wrap;overflow-wrap:anywhere}"
         "pre code{padding:0}")
HEADING = re.compile(r"^(#{1,6})\s+(.*)$")


def _json(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _versions() -> Dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("tensorflow", "tf-models-research-object-detection", "tf-models-official", "numpy",
                "opencv-python-headless", "nibabel", "Flask"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def _tile(img: np.ndarray, label: str, box=None) -> np.ndarray:
    """A labelled grayscale tile; ``box`` (xmin, ymin, xmax, ymax) in the image's pixels is outlined."""
    h, w = img.shape[:2]
    t = cv2.cvtColor(cv2.resize(img, (TILE, TILE), interpolation=cv2.INTER_AREA), cv2.COLOR_GRAY2BGR)
    if box is not None:
        x0, y0, x1, y1 = (int(round(v * TILE / s)) for v, s in zip(box, (w, h, w, h)))
        cv2.rectangle(t, (x0, y0), (x1, y1), (0, 200, 255), 1)
    cv2.putText(t, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return t


CT_KEYS = ("ct_source", "ct")  # where a dataset manifest records the CT an image was projected from


def ct_source(item: dict, annotations: Dict[int, dict], by_image: Optional[Dict[str, str]] = None) -> str:
    """The CT (patient) a synthetic item's real image comes from: ``ct_source``/``ct`` of the SYN item or of
    its RECORDS manifest annotation, or the manifest's ``ct_source`` map (image name → CT, written by
    make_tfrecords for a rendered dataset); else the NIH patient id (the image name before '_')."""
    ann = annotations.get(int(item["ann_ids"][0]), {}) if item.get("ann_ids") else {}
    for entry in (item, ann):
        for k in CT_KEYS:
            if entry.get(k) not in (None, ""):
                return str(entry[k])
    name = str(item.get("source_image") or ann.get("image") or item.get("file", ""))
    if (by_image or {}).get(name):
        return str(by_image[name])
    return "patient " + Path(name).stem.split("_")[0]


def pick_rows(items_per_finding: Dict[str, List[dict]], source_of) -> Dict[str, dict]:
    """One item per finding, each from a CT source not shown yet while there are any (else the first)."""
    used: set = set()
    out = {}
    for finding, items in items_per_finding.items():
        if not items:
            continue
        fresh = [it for it in items if source_of(it) not in used]
        out[finding] = (fresh or items)[0]
        used.add(source_of(out[finding]))
    return out


def sample_grid(run: Path) -> Optional[np.ndarray]:
    """Rows = findings, each from a different CT source (patient) where the data allow; columns = real
    y, input x (box only), Pix2Pix, Pix2Pix-N, StarGAN."""
    paths = PipelinePaths(run)
    syn = {g: _json(paths.syn(g).manifest) for g in GENERATORS}
    if not syn.get("pix2pix"):
        return None
    from cxr_keras.records.pairs import read_pairs

    # keyed by annotation: an image with several boxes has one pair (and one mask) per box
    real: Dict[int, dict] = {int(ex["ann_id"]): ex
                             for ex in read_pairs([paths.records.pairs("train")]).as_numpy_iterator()}
    manifest = _json(paths.records.manifest) or {}
    annotations = {int(a["ann_id"]): a for a in manifest.get("annotations", [])
                   if isinstance(a, dict) and "ann_id" in a}
    by_image = manifest.get("ct_source") if isinstance(manifest.get("ct_source"), dict) else {}
    chosen = pick_rows({f: [it for it in syn["pix2pix"]["items"] if it.get("finding") == f
                            and it.get("ann_ids") and int(it["ann_ids"][0]) in real] for f in FINDINGS},
                       lambda it: ct_source(it, annotations, by_image))
    rows = []
    for finding, item in chosen.items():
        ex = real[int(item["ann_ids"][0])]
        y = ((ex["image"][:, :, 0] + 1) * 127.5).round().astype(np.uint8)
        x = (y * ex["mask"][:, :, 0]).astype(np.uint8)
        box = item["boxes"][0] if item.get("boxes") else None
        tiles = [_tile(y, f"real: {finding}", box), _tile(x, "input x (box only)", box)]
        for g in GENERATORS:
            m = syn.get(g)
            cands = [] if not m else [it for it in m["items"] if it.get("finding") == finding and (
                g == "stargan" or it.get("ann_ids", [None])[:1] == item["ann_ids"][:1])]
            if cands:
                img = cv2.imread(str(paths.syn(g).root / cands[0]["file"]), cv2.IMREAD_GRAYSCALE)
                b = cands[0]["boxes"][0] if cands[0].get("boxes") else None
                tiles.append(_tile(img, g, b))
            else:
                tiles.append(_tile(np.zeros((TILE, TILE), np.uint8), f"{g}: n/a"))
        rows.append(np.hstack(tiles))
    return np.vstack(rows) if rows else None


def training_curves(run: Path) -> Optional[Path]:
    """One panel per GAN with its loss columns from ``history.csv``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = PipelinePaths(run)
    runs = [(g, paths.gan(g).history) for g in GENERATORS if paths.gan(g).history.is_file()]
    if not runs:
        return None
    fig, axes = plt.subplots(1, len(runs), figsize=(4.5 * len(runs), 3.2), squeeze=False)
    for ax, (g, path) in zip(axes[0], runs):
        with open(path) as fh:
            rows = list(csv.DictReader(fh))
        if not rows:
            continue
        steps = [float(r["step"]) for r in rows]
        for key in rows[0]:
            if key == "step" or key.startswith("time") or "per_sec" in key or key == "lr":
                continue
            try:
                ax.plot(steps, [float(r[key]) for r in rows], label=key)
            except (TypeError, ValueError):
                continue
        ax.set_yscale("symlog", linthresh=0.1)  # λ·L1 and WGAN losses span decades and signs
        ax.set_title(g)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    out = paths.report_files / "training_curves.png"
    out.parent.mkdir(exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return out


def _cell(value) -> str:
    """A Markdown table cell: a '|' in the text (e.g. '|Δ|') would end the cell, so it is escaped."""
    return str(value).replace("\\|", "|").replace("|", "\\|").replace("\n", " ")


def _table(headers: List[str], rows: List[List]) -> str:
    line = "| " + " | ".join(map(_cell, headers)) + " |\n|" + "---|" * len(headers) + "\n"
    return line + "".join("| " + " | ".join(map(_cell, r)) + " |\n" for r in rows)


def _embed(text: str, level: int, keep_title: bool = False) -> str:
    """A stand-alone Markdown document placed under a report section: when it opens with its own title
    ('# ...'), the title is dropped (the section heading says it) unless ``keep_title``; the headings are
    moved so the top one kept sits at ``level``. Fenced code is left alone."""
    lines = text.strip("\n").splitlines()
    title = HEADING.match(lines[0]) if lines else None
    shift = None
    if title:
        depth = len(title.group(1))
        shift = level - depth if keep_title else level - depth - 1
        lines = lines if keep_title else lines[1:]
    out, fenced = [], False
    for line in lines:
        if line.lstrip().startswith("```"):
            fenced = not fenced
        m = None if fenced else HEADING.match(line)
        if m:
            shift = level - len(m.group(1)) if shift is None else shift
            line = "#" * min(6, max(1, len(m.group(1)) + shift)) + " " + m.group(2)
        out.append(line)
    return "\n".join(out).strip("\n") + "\n"


def _first_text(*paths: Path) -> Optional[str]:
    for p in paths:
        if p.is_file():
            return p.read_text()
    return None


def _fidelity_section(run: Path) -> str:
    paths = PipelinePaths(run)
    rows = []
    for g in GENERATORS:
        m = _json(paths.syn(g).manifest)
        if not m:
            continue
        fid = m.get("fidelity", {})
        rows.append([g, len(m.get("items", [])), fid.get("checked", "n/a"), fid.get("failed", "n/a"),
                     fid.get("max_abs_diff_inside_boxes", fid.get("max_abs_diff", "n/a"))])
    out = "## Fidelity: pathology pixels untouched\n\n"
    if rows:
        out += _table(["generator", "images written", "checked", "failed", "max |Δ| inside boxes"], rows)
    for g in ("pix2pix", "pix2pix_n"):
        text = _first_text(paths.gan(g).eval_md("test"))
        if text:  # its own title ("<model> at step N: painted region vs real ...") becomes the H3
            out += "\n" + _embed(text, 3, keep_title=True)
    return out


def write_report(run: Path) -> Path:
    """Write ``report.md`` and ``report.html`` into the run folder; return the HTML path."""
    from cxr_keras.detection.localisation import table2_files
    from cxr_keras.study.layout import paths as study_paths

    run = Path(run)
    paths = PipelinePaths(run)
    files = paths.report_files
    files.mkdir(exist_ok=True)
    pipe = _json(paths.pipeline_json) or {}
    md = [f"# cxr_keras run report\n\nRun folder: `{run}` · preset `{pipe.get('preset', '?')}` · "
          f"dataset: {pipe.get('nih_root') or 'embedded ' + str(pipe.get('kind', 'ct')) + ' radiographs'} · "
          f"written {time.strftime('%Y-%m-%d %H:%M')}\n"]
    man = _json(paths.records.manifest)
    if man:
        c = man["counts"]
        md.append("## Data\n\n" + _table(
            ["finding", "train", "test", "total"],
            [[f, v["train"], v["test"], v["total"]] for f, v in c["per_finding"].items()]
            + [["**all**", c["train"], c["test"], c["annotations"]]])
            + f"\n{c['images']} images with boxes; healthy {c['healthy']['train']} train / "
              f"{c['healthy']['test']} test; {c['skipped']} inputs skipped.\n")
    grid = sample_grid(run)
    if grid is not None:
        samples = files / "samples.png"
        atomic_write_bytes(samples, encode_png(grid))
        md.append("## Samples per finding\n\nColumns: real image, the generator's input (box only), "
                  "Pix2Pix, Pix2Pix-N (same source and box), StarGAN (a healthy image translated to the "
                  "finding); each row from a different CT source (patient) while the data have one left."
                  f"\n\n![samples]({samples.relative_to(run).as_posix()})\n")
    curves = training_curves(run)
    if curves:
        md.append(f"## Training curves\n\n![curves]({curves.relative_to(run).as_posix()})\n")
    md.append(_fidelity_section(run))
    t2 = _first_text(table2_files(paths.table2)[0])
    if t2:
        md.append("## Table 2: correct-location accuracy (IoU > T)\n\n" + _embed(t2, 3) + "\n")
        for png in sorted(paths.table2.glob("*.png")):
            md.append(f"![{png.stem}]({png.relative_to(run).as_posix()})\n")
    judge = _first_text(study_paths(paths.study).auto_judge_md)
    if judge:
        md.append("## Table 1 by the automatic judge (not radiologists)\n\n" + _embed(judge, 3) + "\n")
    markers = [m for m in map(paths.marker, pipe.get("stages", [])) if m.is_file()]
    stages = [_json(p) or {} for p in sorted(markers, key=lambda p: p.stat().st_mtime)]
    if stages:
        md.append("## Commands\n\n```\n" + "\n\n".join(  # a blank line apart: a wrapped command stays one block
            f"{st.get('command', '')}   # {st.get('seconds', '?')} s" for st in stages) + "\n```\n")
    md.append("## Versions\n\n" + _table(["package", "version"], [[k, v] for k, v in _versions().items()]))
    text = "\n".join(md)
    atomic_write_text(paths.report_md, text)
    atomic_write_text(paths.report_html, _html(text, run))
    return paths.report_html


def _html(md_text: str, run: Path) -> str:
    """Markdown → one self-contained HTML page (images inlined as data URIs) that reads well in a browser:
    wide tables scroll inside their box, long commands wrap, images fit the page."""
    import markdown

    body = markdown.markdown(md_text, extensions=["tables", "fenced_code"])

    def inline(match):
        src = match.group(1)
        path = run / src
        if path.is_file():
            return f'src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}"'
        return match.group(0)

    body = re.sub(r'src="([^"]+\.png)"', inline, body)
    body = body.replace("<table>", '<div class="table"><table>').replace("</table>", "</table></div>")
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>cxr_keras report</title><style>{STYLE}</style></head><body>{body}</body></html>")
