"""Table 2 on hand-made detections: checkpoint choice without the test set, the prior-box column,
intervals, seeds, differences, and an exact recomputation from the kept detections."""
import csv
import json

import numpy as np
import pytest

from cxr_keras.detection import selection
from cxr_keras.detection.inference import ImageResult, save_results
from cxr_keras.detection.localisation import TOTAL
from cxr_keras.detection.table2 import Settings, evaluate_runs
from cxr_keras.paths import DetectorRunPaths

FINDINGS = ("A", "B")
HIT = [0.1, 0.1, 0.4, 0.4]
MISS = [0.6, 0.6, 0.9, 0.9]


def _images(n):
    """n test images, one box each, findings alternating A, B."""
    return [(f"img{i:03d}.png", np.array([HIT], np.float32), np.array([1 + i % 2])) for i in range(n)]


def _results(images, hits):
    """One detection per image of its own finding: on the box when ``hits[i]``, else elsewhere."""
    return [ImageResult(name, b, lab, np.array([HIT if h else MISS], np.float32), lab.copy(),
                        np.array([0.9], np.float32)) for (name, b, lab), h in zip(images, hits)]


def _run(root, name, protocol, test_hits, val_hits=None, seed=None, n=20):
    """A run folder: test detections per step (and validation ones), as train_detector keeps them."""
    paths = DetectorRunPaths(root / name)
    paths.root.mkdir(parents=True)
    paths.protocol.write_text(json.dumps({"protocol": protocol, "seed": seed}))
    for step, hits in test_hits.items():
        save_results(paths.detection(step), _results(_images(n), hits))
    for step, hits in (val_hits or {}).items():
        save_results(paths.val_detection(step), _results(_images(6), hits))
    return paths.root


def _baseline(root, n=20, hits=None):
    """A prior-box run folder (as train_detector --prior-box writes it)."""
    paths = DetectorRunPaths(root / "prior_box")
    paths.root.mkdir(parents=True)
    paths.protocol.write_text(json.dumps({"protocol": "prior_box", "baseline": True}))
    save_results(paths.detection(0), _results(_images(n), hits if hits is not None else [i < 5 for i in range(n)]))
    return paths.root


def _rows(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def _hits(k, n=20):
    return [i < k for i in range(n)]


def test_validation_chooses_the_checkpoint_not_the_test_set():
    counts = {s: {"A": (c, 4), TOTAL: (c, 4)} for s, c in ((10, 1), (20, 2), (30, 4))}
    val = {s: {"A": (c, 4), TOTAL: (c, 4)} for s, c in ((10, 3), (20, 1), (30, 2))}
    assert selection.choose(counts, 20, 10, "val", val) == {"A": 10, TOTAL: 10}
    assert selection.choose(counts, 20, 10, "total") == {"A": 30, TOTAL: 30}  # peeks at the test set
    assert selection.choose(counts, 20, 10, "fixed") == {"A": 20, TOTAL: 20}
    assert selection.choose(counts, 24, 10, "fixed") == {"A": 20, TOTAL: 20}  # nearest to s
    assert selection.choose(counts, 100, 10, "val", val) is None
    with pytest.raises(ValueError, match="validation"):
        selection.choose(counts, 20, 10, "val", {})


def test_table_has_prior_box_column_intervals_and_differences(tmp_path):
    runs = [_run(tmp_path, "ori", "ori", {10: _hits(8), 20: _hits(12)}, {10: _hits(5, 6), 20: _hits(1, 6)}),
            _run(tmp_path, "ori_pix2pix", "ori_pix2pix", {10: _hits(18), 20: _hits(2)},
                 {10: _hits(6, 6), 20: _hits(0, 6)}),
            _baseline(tmp_path)]
    s = Settings((15,), 5, ious=(0.1, 0.5), draws=400, findings=FINDINGS, coco=False)
    written = evaluate_runs(runs, tmp_path / "out", s)
    md = written["markdown"].read_text()
    assert "| Finding | prior box | ori @15 | ori_pix2pix @15 |" in md
    assert "`--select val`" in md  # both runs were scored on validation images: the default
    rows = {(r["iou"], r["protocol"], r["finding"]): r for r in _rows(written["csv"])}
    ori = rows[("0.1", "ori", TOTAL)]
    assert ori["best_step"] == "10" and ori["correct"] == "8" and ori["total"] == "20"  # val, not test
    assert float(ori["low"]) <= 0.4 <= float(ori["high"]) and ori["select"] == "val"
    assert rows[("0.1", "prior_box", TOTAL)]["correct"] == "5"
    assert "| **Total** | 25.0 (5/20) [" in md and "40.0 (8/20) [" in md
    diffs = {(r["iou"], r["protocol"], r["reference"], r["finding"]): r for r in _rows(written["differences"])}
    gain = diffs[("0.1", "ori_pix2pix", "ori", TOTAL)]
    assert float(gain["difference"]) == pytest.approx(0.5) and gain["shown"] == "yes"
    assert diffs[("0.1", "ori", "prior_box", TOTAL)]["difference"] == "0.15"
    assert "ori_pix2pix − ori @15" in md and "ori − prior box @15" in md and "## IoU > 0.5" in md


def test_an_interval_containing_zero_is_printed_as_not_shown(tmp_path):
    same = {10: [i % 3 == 0 for i in range(20)]}
    other = {10: [i % 3 == 1 for i in range(20)]}
    runs = [_run(tmp_path, "a", "ori", same), _run(tmp_path, "b", "ori_pix2pix", other)]
    written = evaluate_runs(runs, tmp_path / "out", Settings((10,), 0, draws=400, findings=FINDINGS, coco=False))
    assert "fixed" in written["markdown"].read_text()  # no validation detections: the checkpoint at s
    d = [r for r in _rows(written["differences"]) if r["finding"] == TOTAL][0]
    assert d["shown"] == "no" and float(d["low"]) <= 0 <= float(d["high"])
    assert "not shown" in written["markdown"].read_text()


def test_seeds_give_mean_sd_and_a_pooled_difference(tmp_path):
    runs = [_run(tmp_path, f"ori_s{k}", "ori", {10: _hits(6 + 2 * k)}, seed=k) for k in range(3)]
    runs += [_run(tmp_path, f"pix_s{k}", "ori_pix2pix", {10: _hits(14 + k)}, seed=k) for k in range(3)]
    written = evaluate_runs(runs, tmp_path / "out", Settings((10,), 0, draws=300, findings=FINDINGS, coco=False))
    rows = [r for r in _rows(written["csv"]) if r["finding"] == TOTAL and r["protocol"] == "ori"]
    assert [r["seed"] for r in rows] == ["0", "1", "2", "mean"]
    mean = rows[-1]
    assert float(mean["accuracy"]) == pytest.approx(0.4) and float(mean["sd"]) == pytest.approx(0.1)
    d = [r for r in _rows(written["differences"]) if r["finding"] == TOTAL][0]
    assert d["seeds"] == "3" and float(d["difference"]) == pytest.approx(0.35)
    assert "40.0 ± 10.0 [" in written["markdown"].read_text()


def test_table2_is_recomputed_exactly_from_the_kept_detections(tmp_path):
    runs = [_run(tmp_path, "ori", "ori", {10: _hits(8)}, {10: _hits(3, 6)}, seed=0),
            _run(tmp_path, "ori_seed1", "ori", {10: _hits(9)}, {10: _hits(3, 6)}, seed=1),
            _run(tmp_path, "ori_pix2pix", "ori_pix2pix", {10: _hits(11)}, {10: _hits(4, 6)}, seed=0),
            _baseline(tmp_path)]
    s = Settings((10,), 0, ious=(0.1, 0.3), draws=300, findings=FINDINGS, coco=False)
    first = evaluate_runs(runs, tmp_path / "one", s)
    again = evaluate_runs(sorted(runs, reverse=True), tmp_path / "two", s)  # any order of the folders
    for key in ("csv", "differences", "markdown"):
        assert first[key].read_bytes() == again[key].read_bytes(), key


def test_runs_on_different_test_images_are_refused(tmp_path):
    runs = [_run(tmp_path, "a", "ori", {10: _hits(8)}),
            _run(tmp_path, "b", "ori_pix2pix", {10: _hits(8, 18)}, n=18)]
    with pytest.raises(ValueError, match="other test images"):
        evaluate_runs(runs, tmp_path / "out", Settings((10,), 0, draws=100, findings=FINDINGS, coco=False))


def test_coco_map50_through_the_od_api_evaluator(tmp_path):
    from cxr_keras.detection.coco import coco_map50

    images = _images(10)
    perfect = coco_map50(_results(images, [True] * 10), FINDINGS)
    assert perfect == {"A": 1.0, "B": 1.0, TOTAL: 1.0}
    half = coco_map50(_results(images, [i < 5 for i in range(10)]), FINDINGS)
    assert 0 < half[TOTAL] < 1
    runs = [_run(tmp_path, "ori", "ori", {10: _hits(10)}), _baseline(tmp_path)]
    written = evaluate_runs(runs, tmp_path / "out", Settings((10,), 0, draws=100, findings=FINDINGS))
    coco = {(r["protocol"], r["finding"]): r for r in _rows(written["coco"])}
    assert float(coco[("ori", TOTAL)]["map50"]) == pytest.approx(0.5, abs=0.01)
    assert "## COCO mAP@0.5" in written["markdown"].read_text()
