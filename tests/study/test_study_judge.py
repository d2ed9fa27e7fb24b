"""The automatic judge: out-of-fold real/fake judgements per generator in the Table-1 shape."""
from __future__ import annotations

import json

import numpy as np
import pytest

from cxr_keras.config import FINDINGS, StudyConfig
from cxr_keras.study.judge import binomial_p_value, markdown, stratified_folds, write_auto_judge
from cxr_keras.study.layout import paths


def test_stratified_folds_balance_classes():
    y = np.array([0] * 12 + [1] * 11)
    folds = stratified_folds(y, 5, seed=0)
    for f in range(5):
        assert 2 <= np.sum((folds == f) & (y == 0)) <= 3
        assert 2 <= np.sum((folds == f) & (y == 1)) <= 3
    assert len(set(np.bincount(folds).tolist()) - {4, 5}) == 0
    assert not np.array_equal(folds, stratified_folds(y, 5, seed=1))


def test_binomial_p_value():
    assert binomial_p_value(10, 10) == pytest.approx(1 / 1024)
    assert binomial_p_value(0, 10) == 1.0
    assert binomial_p_value(5, 10) == pytest.approx(638 / 1024)
    assert 0 < binomial_p_value(700, 1200) < 1e-8  # no float overflow for large n


@pytest.mark.slow
def test_auto_judge_spots_obvious_fakes(study):
    cfg = StudyConfig(judge_epochs=15, judge_folds=3, judge_batch_size=4, judge_image_size=32, judge_filters=4)
    report = write_auto_judge(study, cfg)
    on_disk = json.loads((paths(study).root / "auto_judge.json").read_text())
    assert on_disk["label"] == "automatic judge, not a radiologist"
    assert set(on_disk["per_source"]) == {"pix2pix", "stargan"}
    for gen, n in (("pix2pix", 12), ("stargan", 11)):
        s = report["per_source"][gen]
        assert s["n_real"] == 12 and s["n_generated"] == n and s["folds"] == 3
        # checkerboard "fakes" against smooth "reals": the judge must see through them
        assert s["accuracy"] >= 0.8 and s["generated_judged_real"] <= 3
    table = report["table"]
    assert table["readers"] == ["judge vs pix2pix", "judge vs stargan"]
    cell = table["cells"]["Pneumonia"]["stargan"]
    assert cell["n"] == 1 and cell["answered"] == [0, 1]
    assert table["total"]["real"]["answered"] == [12, 12]
    md = (paths(study).root / "auto_judge.md").read_text()
    assert md == markdown(report) and "not a radiologist" in md
    # real images from a folder have no box mask: the box-only control cannot run, so no verdict either way
    assert report["controls"]["real_vs_real"]["halves"] == [6, 6] and "box_only" not in report["controls"]
    assert not report["conclusive"] and "**Verdict: inconclusive.**" in md
    assert any("box only" in r and "could not run" in r for r in report["inconclusive_reasons"])
    if report["frd"]["available"]:  # frd-score installed: striped fakes are further from the reals than a half
        d = report["frd"]["distances"]
        assert set(d) == {"pix2pix", "stargan"} and min(d.values()) > report["frd"]["real_halves"], report["frd"]
    else:
        assert "frd-score" in report["frd"]["message"]
    assert all(f"| {f} |" in md for f in FINDINGS)


@pytest.mark.slow
def test_auto_judge_near_chance_when_fakes_look_real(tmp_path, write_folder):
    from cxr_keras.study.build import build_study

    counts = {f: 3 for f in FINDINGS}
    real = write_folder(tmp_path / "real", None, counts, seed=1, style="smooth", prefix="r")
    twin = write_folder(tmp_path / "twin", "pix2pix", counts, seed=2, style="smooth", prefix="t")
    study = tmp_path / "study"
    build_study(real, {"pix2pix": twin}, study, StudyConfig(per_finding=3, image_size=48))
    cfg = StudyConfig(judge_epochs=15, judge_folds=3, judge_batch_size=4, judge_image_size=32, judge_filters=4)
    s = write_auto_judge(study, cfg)["per_source"]["pix2pix"]
    # same generator of images on both sides: a leak-free judge cannot do much better than a coin
    assert s["n_real"] == s["n_generated"] == 18
    assert s["accuracy"] < 0.75 and s["p_value"] > 0.01
