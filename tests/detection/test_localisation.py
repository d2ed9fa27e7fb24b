"""The correct-location metric on hand-made boxes (pure numpy, fast)."""
import math

import numpy as np
import pytest

from cxr_keras.detection import localisation as loc
from cxr_keras.detection.inference import ImageResult

FINDINGS = ("A", "B", "C")


def box(y0, x0, y1, x1):
    return np.array([[y0, x0, y1, x1]], float)


# ---- IoU ---------------------------------------------------------------------------------------
def test_iou_identical_and_partial():
    assert loc.iou(box(0, 0, 2, 2), box(0, 0, 2, 2))[0, 0] == pytest.approx(1.0)
    # 2x2 and a 2x2 shifted by one column: intersection 2, union 6
    assert loc.iou(box(0, 0, 2, 2), box(0, 1, 2, 3))[0, 0] == pytest.approx(2 / 6)


def test_iou_touching_is_zero():
    assert loc.iou(box(0, 0, 1, 1), box(0, 1, 1, 2))[0, 0] == 0.0  # shared edge
    assert loc.iou(box(0, 0, 1, 1), box(1, 1, 2, 2))[0, 0] == 0.0  # shared corner


def test_iou_nested_is_area_ratio():
    assert loc.iou(box(0, 0, 4, 4), box(1, 1, 2, 2))[0, 0] == pytest.approx(1 / 16)
    assert loc.iou(box(1, 1, 2, 2), box(0, 0, 4, 4))[0, 0] == pytest.approx(1 / 16)


def test_iou_disjoint_and_zero_area():
    assert loc.iou(box(0, 0, 1, 1), box(5, 5, 6, 6))[0, 0] == 0.0
    point = box(0.5, 0.5, 0.5, 0.5)
    line = box(0, 0.5, 1, 0.5)
    for degenerate in (point, line):
        value = loc.iou(degenerate, box(0, 0, 1, 1))[0, 0]
        assert value == 0.0 and not math.isnan(value)
    assert loc.iou(point, point)[0, 0] == 0.0


def test_iou_pairwise_shape_and_empty():
    a = np.concatenate([box(0, 0, 1, 1), box(0, 0, 2, 2)])
    b = np.concatenate([box(0, 0, 1, 1), box(3, 3, 4, 4), box(0, 0, 2, 2)])
    m = loc.iou(a, b)
    assert m.shape == (2, 3)
    assert m[1, 0] == pytest.approx(0.25) and m[0, 2] == pytest.approx(0.25)
    assert loc.iou(np.zeros((0, 4)), b).shape == (0, 3)


# ---- one image ---------------------------------------------------------------------------------
def test_top1_uses_only_the_best_detection_of_the_finding():
    gt = box(0, 0, 0.5, 0.5)
    good, bad = box(0, 0, 0.5, 0.5), box(0.6, 0.6, 1, 1)
    dets = np.concatenate([bad, good])
    # the best-scoring detection of class 1 misses: top1 says no, any (score >= 0.1) says yes
    ok = loc.correct_location(gt, [1], dets, [1, 1], [0.9, 0.4], 0.1, "top1")
    assert not ok[0]
    assert loc.correct_location(gt, [1], dets, [1, 1], [0.9, 0.4], 0.1, "any", 0.1)[0]
    assert not loc.correct_location(gt, [1], dets, [1, 1], [0.9, 0.4], 0.1, "any", 0.5)[0]
    # swap the scores: now the best detection hits
    assert loc.correct_location(gt, [1], dets, [1, 1], [0.4, 0.9], 0.1, "top1")[0]


def test_detection_of_another_finding_does_not_count():
    gt = box(0, 0, 0.5, 0.5)
    assert not loc.correct_location(gt, [1], gt, [2], [0.99], 0.1)[0]
    assert not loc.correct_location(gt, [1], np.zeros((0, 4)), [], [], 0.1)[0]


def test_threshold_is_strict():
    gt = box(0, 0, 1, 1)
    det = box(0, 0, 1, 0.1)  # IoU exactly 0.1
    assert not loc.correct_location(gt, [1], det, [1], [1.0], 0.1)[0]
    assert loc.correct_location(gt, [1], det, [1], [1.0], 0.09)[0]


def test_two_boxes_of_one_finding_share_the_top_detection():
    gts = np.concatenate([box(0, 0, 0.3, 0.3), box(0.6, 0.6, 0.9, 0.9)])
    det = box(0, 0, 0.3, 0.3)
    assert loc.correct_location(gts, [1, 1], det, [1], [0.8], 0.1).tolist() == [True, False]


def test_bad_lengths_and_mode_are_rejected():
    with pytest.raises(ValueError, match="labels"):
        loc.correct_location(box(0, 0, 1, 1), [1, 2], box(0, 0, 1, 1), [1], [1.0])
    with pytest.raises(ValueError, match="detections disagree"):
        loc.correct_location(box(0, 0, 1, 1), [1], box(0, 0, 1, 1), [1, 1], [1.0])
    with pytest.raises(ValueError, match="mode"):
        loc.correct_location(box(0, 0, 1, 1), [1], box(0, 0, 1, 1), [1], [1.0], mode="best")


# ---- per finding and total ---------------------------------------------------------------------
def result(name, gt_boxes, gt_labels, boxes, classes, scores):
    return ImageResult(name, np.asarray(gt_boxes, np.float32).reshape(-1, 4), np.asarray(gt_labels),
                       np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(classes),
                       np.asarray(scores, np.float32))


def test_counts_per_finding_and_total_over_all_boxes():
    hit = [0, 0, 0.5, 0.5]
    miss = [0.6, 0.6, 1, 1]
    results = [
        result("a", [hit, hit], [1, 2], [hit, miss], [1, 2], [0.9, 0.9]),  # A hit, B miss
        result("b", [hit], [1], [miss], [1], [0.9]),  # A miss
        result("c", [hit], [1], [hit], [1], [0.9]),  # A hit
    ]
    counts = loc.localisation_counts(results, FINDINGS, 0.1)
    assert counts["A"] == (2, 3) and counts["B"] == (0, 1) and counts["C"] == (0, 0)
    assert counts[loc.TOTAL] == (2, 4)
    # total is over boxes (2/4), not the mean of per-finding accuracies ((2/3 + 0) / 2)
    assert loc.accuracy(counts) == pytest.approx(0.5)
    assert math.isnan(loc.accuracy(counts, "C"))


def test_counts_reject_labels_outside_the_finding_list():
    with pytest.raises(ValueError, match="outside"):
        loc.localisation_counts([result("x", [[0, 0, 1, 1]], [4], [], [], [])], FINDINGS)


# ---- windows -----------------------------------------------------------------------------------
def counts(a, b, t=4):
    """A with a/t correct, B with b/t correct."""
    return {"A": (a, t), "B": (b, t), loc.TOTAL: (a + b, 2 * t)}


BY_STEP = {
    400: counts(4, 4),  # outside the window of 1000 ± 500
    500: counts(1, 3),  # total 4: first of the two total maxima
    900: counts(3, 1),  # total 4, best A inside the window
    1200: counts(2, 2),
    1500: counts(0, 3),  # window edge (inclusive): ties B with step 500, earlier wins
    1600: counts(4, 4),  # outside
}


def test_window_bounds_are_inclusive():
    assert loc.windows([1000], 500) == [(1000, 500, 1500)]
    assert loc.in_any_window(500, [1000], 500) and loc.in_any_window(1500, [1000], 500)
    assert not loc.in_any_window(499, [1000], 500) and not loc.in_any_window(1501, [1000], 500)
    with pytest.raises(ValueError):
        loc.windows([1000], -1)


def test_best_in_window_per_finding():
    best = loc.best_in_window(BY_STEP, 1000, 500)
    assert best.scored_steps == [500, 900, 1200, 1500]
    assert best.counts["A"] == (3, 4) and best.steps["A"] == 900
    assert best.counts["B"] == (3, 4) and best.steps["B"] == 500  # tie with 1500: earliest
    assert best.counts[loc.TOTAL] == (4, 8) and best.steps[loc.TOTAL] == 500


def test_best_in_window_by_total_uses_one_checkpoint():
    best = loc.best_in_window(BY_STEP, 1000, 500, select="total")
    assert set(best.steps.values()) == {500}
    assert best.counts["A"] == (1, 4)


def test_empty_window_and_bad_selection():
    assert loc.best_in_window(BY_STEP, 3000, 100) is None
    with pytest.raises(ValueError):
        loc.best_in_window(BY_STEP, 1000, 500, select="mean")


def _scores_run(folder, by_step):
    """A run folder holding only scores.csv (no kept detections): counts without intervals."""
    folder.mkdir(parents=True)
    for step, c in by_step.items():
        loc.append_scores(folder / "scores.csv", step, c, 0.1, "top1", 0.5)
    return folder


def test_table_rows_markdown_and_csv(tmp_path):
    import csv

    from cxr_keras.detection.table2 import Settings, evaluate_runs

    runs = [_scores_run(tmp_path / "ori", BY_STEP), _scores_run(tmp_path / "ori_pix2pix", {1000: counts(4, 0)})]
    written = evaluate_runs(runs, tmp_path / "out", Settings((1000, 3000), 500, select="per_finding",
                                                             coco=False, findings=("A", "B")))
    with open(written["csv"]) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * 2 * 3
    cell = {(r["protocol"], r["window"], r["finding"]): r for r in rows}
    assert cell[("ori", "1000", "A")]["accuracy"] == "0.75"
    assert cell[("ori_pix2pix", "1000", "Total")]["correct"] == "4"
    assert cell[("ori", "3000", "A")]["accuracy"] == ""  # nothing scored in that window
    text = written["markdown"].read_text()
    assert "| Finding | ori @1000 | ori @3000 | ori_pix2pix @1000 | ori_pix2pix @3000 |" in text
    assert "| A | 75.0 (3/4) | – | 100.0 (4/4) | – |" in text
    assert "**Total**" in text and "TEST set" in text  # the paper's per-row choice is labelled
    assert written["csv"].read_text().splitlines()[0].startswith("iou,protocol,seed,window,finding,correct")


def test_scores_csv_round_trip_and_filtering(tmp_path):
    path = tmp_path / "scores.csv"
    loc.append_scores(path, 100, counts(1, 2), 0.1, "top1", 0.5)
    loc.append_scores(path, 200, counts(3, 2), 0.1, "top1", 0.5)
    loc.append_scores(path, 200, counts(0, 0), 0.5, "top1", 0.5)
    got = loc.read_scores(path, 0.1, "top1")
    assert got == {100: counts(1, 2), 200: counts(3, 2)}
    assert loc.read_scores(path, 0.5, "top1") == {200: counts(0, 0)}
    assert loc.read_scores(path, 0.1, "any") == {}
    (tmp_path / "bad.csv").write_text("step,finding\n1,A\n")
    with pytest.raises(ValueError, match="bad.csv"):
        loc.read_scores(tmp_path / "bad.csv")


def test_plot_writes_a_png(tmp_path):
    path = loc.plot_accuracy({"ori": BY_STEP, "x": {1000: counts(4, 0)}}, tmp_path / "acc.png",
                             [1000], 500)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_gives_one_protocols_seeds_one_colour_and_other_line_styles(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    kept = []
    monkeypatch.setattr(plt, "close", kept.append)  # keep the figure to look at its lines
    runs = {"ori (seed 0)": BY_STEP, "ori (seed 1)": BY_STEP, "aug (seed 0)": BY_STEP}
    loc.plot_accuracy(runs, tmp_path / "acc.png", [1000], 500, baseline=0.3,
                      groups={"ori (seed 0)": "ori", "ori (seed 1)": "ori", "aug (seed 0)": "aug"})
    lines = {ln.get_label(): ln for ln in kept[0].axes[0].get_lines()}
    a, b, c = (lines[k] for k in runs)
    assert a.get_color() == b.get_color() != c.get_color()
    assert a.get_linestyle() != b.get_linestyle() and a.get_linestyle() == c.get_linestyle()
    assert lines["prior box"].get_linestyle() == "--"


def test_runs_are_rescored_from_kept_detections(tmp_path):
    """evaluate_runs recomputes any IoU / mode from RUN/detections, else falls back to scores.csv."""
    import json

    from cxr_keras.detection.inference import load_results, save_results

    gt = [0, 0, 0.5, 0.5]
    near = [0, 0, 0.5, 0.2]  # IoU 0.4 with gt
    run_a = tmp_path / "a"
    (run_a / "detections").mkdir(parents=True)
    (run_a / "protocol.json").write_text(json.dumps({"protocol": "ori"}))
    for step, det in ((100, near), (200, [0.6, 0.6, 1, 1])):
        res = [result("x", [gt], [1], [det], [1], [0.9]), result("y", [gt], [2], [], [], [])]
        save_results(run_a / "detections" / f"step_{step:08d}.npz", res)
    back = load_results(run_a / "detections" / "step_00000100.npz")
    assert [r.filename for r in back] == ["x", "y"] and back[1].scores.shape == (0,)
    np.testing.assert_allclose(back[0].boxes, [near])
    assert loc.run_counts(run_a, 0.1, findings=FINDINGS)[100][loc.TOTAL] == (1, 2)
    assert loc.run_counts(run_a, 0.5, findings=FINDINGS)[100][loc.TOTAL] == (0, 2)

    run_b = tmp_path / "pix"  # no protocol.json, no detections: name from folder, scores.csv
    run_b.mkdir()
    loc.append_scores(run_b / "scores.csv", 120, {"A": (1, 1), "B": (0, 1), "C": (0, 0),
                                                  loc.TOTAL: (1, 2)}, 0.1, "top1", 0.5)
    from cxr_keras.detection.table2 import Settings, evaluate_runs

    written = evaluate_runs([run_a, run_b], tmp_path / "out", Settings((100, 200), 50, findings=FINDINGS))
    md = written["markdown"].read_text()
    assert "| Finding | ori @100 | ori @200 | pix @100 | pix @200 |" in md
    # kept detections give intervals over the (two) test images; scores.csv alone gives counts only
    assert "| **Total** | 50.0 (1/2) [0.0, 100.0] | 0.0 (0/2) [0.0, 0.0] | 50.0 (1/2) | – |" in md
    assert written["plot"].is_file() and written["csv"].is_file()
    with pytest.raises(ValueError, match="no rows for IoU 0.5"):
        loc.run_counts(run_b, 0.5, findings=FINDINGS)
    with pytest.raises(FileNotFoundError, match="neither"):
        loc.run_counts(tmp_path / "out", findings=FINDINGS)
