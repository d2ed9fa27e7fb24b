"""The run report as a reader sees it (issue 12): every Markdown table rendered as a table, embedded
documents' titles folded into their sections, commands wrapped, the sample grid's rows from different CT
sources; and the page in headless Chromium (Debian's chromium driven by Playwright, as the study's test)."""
from __future__ import annotations

import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest

from cxr_keras.config import FINDINGS, StudyConfig
from cxr_keras.paths import PipelinePaths
from cxr_keras.report import _embed, _table, ct_source, pick_rows, sample_grid, write_report
from cxr_keras.study import controls as ctl
from cxr_keras.study.judge import inconclusive_reasons, markdown as judge_markdown

SIZE = 64
CT_LEVEL = {"ct-A": 40, "ct-B": 120, "ct-C": 200}  # each CT source's real images have their own grey
LONG = "/very/long/run/folder/" + "deeply/nested/" * 12


def _judge_md() -> str:
    c = {ctl.REAL_VS_REAL: {"accuracy": 0.5, "ci95": [0.37, 0.63], "passed": True, "halves": [30, 30]},
         ctl.BLURRED: {"accuracy": 0.6, "ci95": [0.5, 0.7], "passed": False, "pairs": 60}}
    cell = {"n": 10, "answered": [10, 10], "judged_real": [7, 6]}
    sources = ("real", "pix2pix", "stargan")
    table = {"readers": ["judge vs pix2pix", "judge vs stargan"], "findings": list(FINDINGS), "sources": list(sources),
             "cells": {f: {s: cell for s in sources} for f in FINDINGS},
             "total": {s: {"n": 60, "answered": [60, 60], "judged_real": [40, 38]} for s in sources}}
    per = {"generated_judged_real": 22, "n_generated": 60, "accuracy": 0.7, "ci95": [0.6, 0.8],
           "balanced_accuracy": 0.7, "p_value": 1e-3, "converged_folds": 5, "folds": 5}
    return judge_markdown({
        "label": "automatic judge, not a radiologist", "table": table, "controls": c,
        "inconclusive_reasons": inconclusive_reasons(c, StudyConfig()), "conclusive": False,
        "per_source": {"pix2pix": per, "stargan": per}, "notes": ["a note"],
        "frd": {"available": True, "version": "v1", "package": "frd-score 1.0.1", "real_halves": 5.1,
                "distances": {"pix2pix": 9.8, "stargan": 12.4}, "errors": {}},
        "config": {"image_size": 224, "max_epochs": 60, "blur_sigma_at_256": 2.0, "control_min_accuracy": 0.95}})


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _records(run: PipelinePaths, with_ct):
    """Pair records: per finding three annotations from CT sources A, B, C (A always listed first); the CT
    recorded per annotation ("annotation"), as make_tfrecords' image → CT map ("map"), or not at all."""
    from cxr_keras.records.pairs import write_pair_examples

    pairs, annotations = [], []
    for fi, f in enumerate(FINDINGS):
        for si, ct in enumerate(CT_LEVEL):
            ann = 3 * fi + si
            img = np.full((SIZE, SIZE), CT_LEVEL[ct], np.uint8)
            # NIH naming, the patient id before '_': one patient per CT, or (CT recorded) one for all
            name = f"{1 if with_ct else si + 1:08d}_{ann:03d}.png"
            pairs.append({"image": img, "box": (20, 20, 44, 44), "finding": f, "label": fi + 1,
                          "image_id": name, "split": "train", "ann_id": ann})
            annotations.append({"ann_id": ann, "image": name, "finding": f, "split": "train",
                                **({"ct_source": ct} if with_ct == "annotation" else {})})
    run.records.root.mkdir(parents=True)
    write_pair_examples(run.records.pairs("train"), pairs)
    per = {f: {"train": 3, "test": 0, "total": 3} for f in FINDINGS}
    ct_map = {p["image_id"]: list(CT_LEVEL)[p["ann_id"] % 3] for p in pairs} if with_ct == "map" else None
    _write_json(run.records.manifest, {"annotations": annotations, "counts": {
        "per_finding": per, "train": 18, "test": 0, "annotations": 18, "images": 18,
        "healthy": {"train": 0, "test": 0}, "skipped": 0}, **({"ct_source": ct_map} if ct_map else {})})
    return annotations


def _syn(run: PipelinePaths, annotations):
    rng = np.random.default_rng(0)
    for g in ("pix2pix", "pix2pix_n", "stargan"):
        syn = run.syn(g)
        syn.images.mkdir(parents=True)
        items = []
        for a in annotations:
            name = f"{g}_{a['ann_id']}.png"
            cv2.imwrite(str(syn.image(name)), rng.integers(0, 255, (SIZE, SIZE), dtype=np.uint8))
            item = {"file": f"images/{name}", "finding": a["finding"]}
            if g != "stargan":
                item.update(source_image=a["image"], ann_ids=[a["ann_id"]], boxes=[[20, 20, 44, 44]])
            items.append(item)
        fid = {"checked": 18, "passed": 18, "failed": 0, "max_abs_diff_inside_boxes": 0} if g != "stargan" else {}
        _write_json(syn.manifest, {"generator": g, "items": items, "fidelity": fid})


@pytest.fixture
def fake_run(tmp_path):
    """A run folder with what every stage leaves for the report (tiny; no training)."""
    run = PipelinePaths(tmp_path / "run")
    _syn(run, _records(run, with_ct="map"))
    stages = ["records", "train_pix2pix", "auto_judge"]
    _write_json(run.pipeline_json, {"preset": "quick", "kind": "ct", "stages": stages})
    for i, s in enumerate(stages):
        _write_json(run.marker(s), {"stage": s, "seconds": 1.5 + i,
                                    "command": f"cxr-keras {s} --out {LONG}{s} --records {LONG}records"})
    for g in ("pix2pix", "pix2pix_n"):
        run.gan(g).root.mkdir(parents=True)
        run.gan(g).history.write_text("step,g_loss,d_loss\n2,1.0,0.5\n4,0.8,0.6\n")
        run.gan(g).eval_md("test").write_text(  # the shape of gan.evaluate's eval_<split>.md
            f"# {g} at step 4: painted region vs real (test split)\n\n| finding | n | L1 | PSNR (dB) | SSIM |\n"
            "|---|---:|---:|---:|---:|\n" + "".join(f"| {f} | 3 | 0.1 | 20.0 | 0.5 |\n" for f in FINDINGS)
            + "\nL1, PSNR and SSIM over the painted pixels.\n")
    run.table2.mkdir(parents=True)
    (run.table2 / "table2.md").write_text("# Table 2\n\nAccuracy (%).\n\n| Finding | ori |\n|---|---:|\n"
                                          "| Effusion | 50.0 |\n| **Total** | 50.0 |\n\n## Per seed\n\nNone.\n")
    _write_json(run.study / "study.json", {})
    (run.study / "auto_judge.md").write_text(_judge_md())
    return run


def _markdown_tables(md: str) -> int:
    """Tables in Markdown: delimiter rows ('|---|---:|') outside fenced code."""
    fenced, n = False, 0
    for line in md.splitlines():
        fenced ^= line.lstrip().startswith("```")
        n += not fenced and bool(re.fullmatch(r"\s*\|(\s*:?-{3,}:?\s*\|)+\s*", line))
    return n


RAW_MARKDOWN = [re.compile(p, re.M) for p in (r"^\s*\|.*\|\s*$", r"\|\s*:?-{3,}", r"^#{1,6} ", r"\*\*",
                                               r"!\[", r"^```")]


class _Outline(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.text, self._skip = [], [], 0

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._skip += tag in ("style", "script")

    def handle_endtag(self, tag):
        self._skip -= tag in ("style", "script")

    def handle_data(self, data):
        if not self._skip:
            self.text.append(data)


def test_table_cells_escape_pipes_and_embedded_titles_fold_into_the_section():
    md = _table(["generator", "max |Δ| inside boxes"], [["pix2pix", "a|b"]])
    assert md.splitlines()[0] == "| generator | max \\|Δ\\| inside boxes |"
    assert "| pix2pix | a\\|b |" in md
    doc = "# Title\n\nText\n\n## Sub\n\n```\n# not a heading\n```\n### Deeper\n"
    assert _embed(doc, 3) == "Text\n\n### Sub\n\n```\n# not a heading\n```\n#### Deeper\n"
    assert _embed(doc, 3, keep_title=True).startswith("### Title\n\nText\n\n#### Sub")
    assert _embed("plain\n\n## A\n", 3) == "plain\n\n### A\n"


def test_grid_rows_come_from_different_ct_sources():
    items = {f: [{"ct": c, "finding": f} for c in ("A", "B", "C")] for f in FINDINGS}
    chosen = pick_rows(items, lambda it: it["ct"])
    assert [chosen[f]["ct"] for f in FINDINGS] == ["A", "B", "C", "A", "A", "A"]  # three sources, then repeats
    anns = {7: {"ann_id": 7, "image": "00000042_001.png", "ct_source": "LIDC-0007"}}
    assert ct_source({"ann_ids": [7]}, anns) == "LIDC-0007"
    assert ct_source({"ann_ids": [7], "ct": "item-ct"}, anns) == "item-ct"
    assert ct_source({"ann_ids": [8], "source_image": "00000042_001.png"}, anns) == "patient 00000042"
    assert ct_source({"ann_ids": [8], "source_image": "00000042_001.png"}, anns,
                     {"00000042_001.png": "lung1"}) == "lung1"  # make_tfrecords' image → CT map


@pytest.mark.parametrize("with_ct", ["annotation", "map", None])
def test_sample_grid_uses_a_new_ct_source_per_row(tmp_path, with_ct):
    run = PipelinePaths(tmp_path / "run")
    _syn(run, _records(run, with_ct))  # without ct_source the patient ids (one per CT here) decide
    grid = sample_grid(run.root)
    assert grid is not None and grid.shape[0] == 160 * len(FINDINGS)
    levels = [int(np.median(grid[160 * r + 40:160 * r + 150, 10:150, 0])) for r in range(len(FINDINGS))]
    assert levels[:3] == [40, 120, 200], levels  # the first three rows: three different CTs


def test_report_renders_every_table_and_no_raw_markdown(fake_run):
    html = write_report(fake_run.root).read_text()
    md = fake_run.report_md.read_text()
    outline = _Outline()
    outline.feed(html)
    text = "".join(outline.text)
    assert outline.tags.count("table") == _markdown_tables(md) >= 8
    for pattern in RAW_MARKDOWN:
        assert not pattern.search(text), (pattern.pattern, pattern.search(text).group(0))
    assert outline.tags.count("h1") == 1  # only the report's own title
    levels = [int(t[1]) for t in outline.tags if re.fullmatch(r"h[1-6]", t)]
    assert all(b <= a + 1 for a, b in zip(levels, levels[1:])), levels  # no level skipped
    for needle in ("## Table 1 by the automatic judge", "### Controls", "### Fréchet Radiomic Distance",
                   "### pix2pix at step 4: painted region vs real", "max \\|Δ\\| inside boxes"):
        assert needle in md, needle
    assert "Verdict: inconclusive." in text and "white-space:pre-wrap" in html


def _chromium() -> str:
    for c in (os.environ.get("CHROMIUM_PATH"), "/usr/bin/chromium", "/usr/bin/chromium-browser",
              shutil.which("chromium")):
        if c and Path(c).is_file():
            return c
    msg = "system Chromium not found (install it with: apt-get update && apt-get install -y chromium)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg)
    pytest.skip(msg)


DOM_CHECK = """() => {
  const text = document.body.innerText;
  const pres = [...document.querySelectorAll('pre')];
  return {
    tables: document.querySelectorAll('table').length,
    rows: [...document.querySelectorAll('table')].map(t => t.rows.length),
    h1: document.querySelectorAll('h1').length,
    text: text,
    preOverflow: pres.map(p => p.scrollWidth - p.clientWidth),
    pageOverflow: document.documentElement.scrollWidth - window.innerWidth,
    images: [...document.images].map(i => i.complete && i.naturalWidth > 0),
    bodyWidth: document.body.getBoundingClientRect().width,
  };
}"""


@pytest.mark.slow
def test_report_reads_well_in_chromium(fake_run):
    sync_api = pytest.importorskip("playwright.sync_api")
    html = write_report(fake_run.root)
    expected_tables = _markdown_tables(fake_run.report_md.read_text())
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"]
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), args=args)
        try:
            page = browser.new_page(viewport={"width": 1024, "height": 768})
            page.goto(html.resolve().as_uri())
            dom = page.evaluate(DOM_CHECK)
        finally:
            browser.close()
    assert dom["tables"] == expected_tables >= 8 and all(r >= 2 for r in dom["rows"])
    for pattern in RAW_MARKDOWN:
        assert not pattern.search(dom["text"]), (pattern.pattern, pattern.search(dom["text"]).group(0))
    assert dom["h1"] == 1
    assert max(dom["preOverflow"]) <= 0, dom["preOverflow"]  # commands wrap inside their box
    assert dom["pageOverflow"] <= 0  # nothing runs off the page
    assert dom["images"] and all(dom["images"])  # samples, curves: inlined and decoded
