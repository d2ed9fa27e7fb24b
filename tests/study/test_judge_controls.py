"""The automatic judge's controls (issue 12): intervals, halves, twins' folds, the blur, the verdict, and on
tiny records-based studies a judge that catches a blurred set and finds nothing between two real halves."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from cxr_keras.config import FINDINGS, StudyConfig
from cxr_keras.paths import RecordsPaths
from cxr_keras.study import controls as ctl
from cxr_keras.study.judge import inconclusive_reasons, markdown


def test_clopper_pearson_is_exact_and_brackets_the_proportion():
    from scipy.stats import binom

    for k, n in ((0, 10), (3, 10), (10, 10), (31, 60), (57, 60)):
        lo, hi = ctl.clopper_pearson(k, n)
        assert 0 <= lo <= k / n <= hi <= 1
        if k > 0:  # the lower end is where seeing >= k becomes a 2.5 % event
            assert binom.sf(k - 1, n, lo) == pytest.approx(0.025, abs=1e-9)
        if k < n:
            assert binom.cdf(k, n, hi) == pytest.approx(0.025, abs=1e-9)
    assert ctl.clopper_pearson(30, 60)[0] < 0.5 < ctl.clopper_pearson(30, 60)[1]
    assert ctl.clopper_pearson(45, 60)[0] > 0.5  # 75 % of 60 is not chance


def test_halves_are_disjoint_balanced_per_finding_and_seeded():
    ids = [f"{i:016x}" for i in range(23)]
    findings = {i: FINDINGS[j % 3] for j, i in enumerate(ids)}
    a, b = ctl.split_halves(ids, findings, seed=1)
    assert not set(a) & set(b) and set(a) | set(b) == set(ids) and abs(len(a) - len(b)) <= 1
    for f in FINDINGS[:3]:
        na, nb = (sum(findings[i] == f for i in h) for h in (a, b))
        assert abs(na - nb) <= 1
    assert (a, b) == ctl.split_halves(list(reversed(ids)), findings, seed=1)
    assert (a, b) != ctl.split_halves(ids, findings, seed=2)
    # keyed by origin, a rebuilt study (new random ids for the same images) gets the same halves
    origin = {i: f"origin{j}" for j, i in enumerate(ids)}
    renamed = {i: f"{int(i, 16) * 7919 % 10007:016x}" for i in ids}
    a2, b2 = ctl.split_halves([renamed[i] for i in ids], {renamed[i]: findings[i] for i in ids}, seed=1,
                              sort_key={renamed[i]: origin[i] for i in ids})
    a1, b1 = ctl.split_halves(ids, findings, seed=1, sort_key=origin)
    assert (a2, b2) == ([renamed[i] for i in a1], [renamed[i] for i in b1])
    # matched on a number (brightness): each pair of neighbours within a finding is split between halves
    level = {i: float(j) for j, i in enumerate(ids)}
    a, b = ctl.split_halves(ids, findings, seed=3, match=level)
    assert abs(len(a) - len(b)) <= 1 and not set(a) & set(b) and set(a) | set(b) == set(ids)
    for f in FINDINGS[:3]:
        ranked = sorted((i for i in ids if findings[i] == f), key=level.get)
        for p, q in zip(ranked[::2], ranked[1::2]):
            assert (p in a) != (q in a)
    assert abs(np.mean([level[i] for i in a]) - np.mean([level[i] for i in b])) <= 3.0


def test_a_degraded_twin_shares_its_originals_fold():
    folds = ctl.paired_folds(13, 5, seed=0)
    assert len(folds) == 26 and np.array_equal(folds[:13], folds[13:])
    assert sorted(np.bincount(folds[:13]).tolist()) == [2, 2, 3, 3, 3]


def test_blur_sigma_is_given_at_256_pixels():
    def sigma(size):  # the blurred step edge's derivative is the Gaussian: its spread is σ
        img = np.zeros((8, size), np.uint8)
        img[:, size // 2:] = 200
        d = np.diff(ctl.blur(img, 2.0)[4].astype(float))
        x = np.arange(len(d))
        mu = np.sum(d * x) / np.sum(d)
        return np.sqrt(np.sum(d * (x - mu) ** 2) / np.sum(d))

    assert sigma(256) == pytest.approx(2.0, abs=0.15)
    assert sigma(512) == pytest.approx(4.0, abs=0.15)
    flat = np.full((16, 16), 77, np.uint8)
    assert np.array_equal(ctl.blur(flat, 2.0), flat)


def _control(acc, lo, hi, passed, **extra):
    return {"accuracy": acc, "ci95": [lo, hi], "passed": passed, **extra}


def _report(controls, cfg=StudyConfig()):
    reasons = inconclusive_reasons(controls, cfg)
    table = {"readers": ["judge vs stargan"], "findings": ["Effusion"], "sources": ["real", "stargan"],
             "cells": {"Effusion": {s: {"n": 4, "answered": [4], "judged_real": [2]} for s in ("real", "stargan")}},
             "total": {s: {"n": 4, "answered": [4], "judged_real": [2]} for s in ("real", "stargan")}}
    return {"label": "automatic judge, not a radiologist", "table": table, "conclusive": not reasons,
            "inconclusive_reasons": reasons, "controls": controls, "per_source": {}, "notes": [],
            "frd": {"available": False, "message": "the Fréchet Radiomic Distance needs the frd-score package"},
            "config": {"image_size": 224, "max_epochs": 60, "blur_sigma_at_256": 2.0, "control_min_accuracy": 0.95}}


def test_a_failed_or_missing_control_makes_table_1_inconclusive_in_words():
    good = {ctl.REAL_VS_REAL: _control(0.52, 0.39, 0.65, True, halves=[30, 30]),
            ctl.BLURRED: _control(0.99, 0.95, 1.0, True, pairs=60),
            ctl.BOX_ONLY: _control(1.0, 0.97, 1.0, True, pairs=60)}
    assert inconclusive_reasons(good, StudyConfig()) == []
    md = markdown(_report(good))
    assert "passed its controls" in md and "inconclusive" not in md.lower()

    blind = dict(good, **{ctl.BLURRED: _control(0.57, 0.47, 0.66, False, pairs=60)})
    md = markdown(_report(blind))
    assert "**Verdict: inconclusive.**" in md and "## Table 1 (inconclusive)" in md
    assert "blurred with σ = 2 px at 256: accuracy 0.57, below 0.95" in md and "**failed**" in md

    seeing_ghosts = dict(good, **{ctl.REAL_VS_REAL: _control(0.75, 0.62, 0.85, False, halves=[30, 30])})
    (reason,) = inconclusive_reasons(seeing_ghosts, StudyConfig())
    assert "real vs real" in reason and "excludes 0.50" in reason

    missing = {k: v for k, v in good.items() if k != ctl.BOX_ONLY}
    (reason,) = inconclusive_reasons(missing, StudyConfig())
    assert "box only" in reason and "could not run" in reason
    assert "| real vs the generator's input x, box only | catch them (accuracy ≥ 0.95) | n/a | n/a | not run |" \
        in markdown(_report(missing))
    assert "Not computed: the Fréchet Radiomic Distance needs the frd-score package" in markdown(_report(missing))


def textured(rng, size):
    """A 'radiograph' with fine grain (what a blur removes) on a smooth body."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    body = 90 + 60 * np.exp(-((xx - 0.5) ** 2 + (yy - 0.5) ** 2) / rng.uniform(0.05, 0.12))
    grain = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), 0.7)
    return np.clip(body + 25 * grain / grain.std(), 0, 255).astype(np.uint8)


@pytest.fixture
def records_study(tmp_path, write_folder):
    """A study whose real images come from pair records (so every control can run): 24 real, 64 px."""
    from cxr_keras.records.pairs import write_pair_examples
    from cxr_keras.study.build import build_study

    rng = np.random.default_rng(0)
    size, per = 64, 4
    items = [{"image": textured(rng, size), "box": (16, 20, 40, 44), "finding": f, "label": FINDINGS.index(f) + 1,
              "image_id": f"{n:08d}_000.png", "split": "test", "ann_id": n}
             for n, f in enumerate(f for f in FINDINGS for _ in range(per))]
    rec = tmp_path / "rec"
    rec.mkdir()
    write_pair_examples(RecordsPaths(rec).pairs("test"), items)
    syn = write_folder(tmp_path / "syn", "pix2pix", {f: per for f in FINDINGS}, size=size, style="noise")
    out = tmp_path / "study"
    build_study(rec, {"pix2pix": syn}, out, StudyConfig(per_finding=per, image_size=size, border_crop_frac=0.0))
    return out


@pytest.mark.slow
def test_controls_catch_a_blurred_set_and_not_a_real_vs_real_split(records_study):
    from cxr_keras.study.judge import write_auto_judge

    # σ = 8 px at 256 is 2 px on these 64-px images, the blur the study-size control applies at 224
    cfg = StudyConfig(judge_epochs=40, judge_folds=4, judge_batch_size=8, judge_blur_sigma=8.0, judge_frd=False)
    report = write_auto_judge(records_study, cfg)
    c = report["controls"]
    assert report["config"]["image_size"] == 64  # the study's own size
    assert c[ctl.REAL_VS_REAL]["halves"] == [12, 12]
    assert c[ctl.REAL_VS_REAL]["passed"], c[ctl.REAL_VS_REAL]  # its 95 % interval contains 50 %
    assert c[ctl.BLURRED]["pairs"] == 24 and c[ctl.BLURRED]["passed"], c[ctl.BLURRED]
    assert c[ctl.BOX_ONLY]["pairs"] == 24 and c[ctl.BOX_ONLY]["accuracy"] == 1.0
    assert report["conclusive"] and report["per_source"]["pix2pix"]["accuracy"] >= 0.9
    on_disk = json.loads((records_study / "auto_judge.json").read_text())
    assert on_disk["controls"][ctl.BLURRED]["passed"] and "frd" in on_disk

    # a judge that cannot learn (no epochs to speak of) is caught by the blur control, in words
    weak = write_auto_judge(records_study, StudyConfig(judge_epochs=1, judge_folds=2, judge_batch_size=48,
                                                       judge_blur_sigma=8.0, judge_frd=False))
    assert not weak["conclusive"] and not weak["controls"][ctl.BLURRED]["passed"]
    assert "**Verdict: inconclusive.**" in (records_study / "auto_judge.md").read_text()
