"""Prior-box baseline on hand-made boxes; bootstrap intervals: coverage, pairing, pooling."""
import numpy as np
import pytest

from cxr_keras.detection import baseline, uncertainty
from cxr_keras.detection.inference import ImageResult
from cxr_keras.detection.localisation import TOTAL, localisation_counts

EMPTY = (np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, np.float32))


def gt(name, boxes, labels):
    return ImageResult(name, np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64), *EMPTY)


def test_prior_boxes_are_per_finding_means():
    train = [gt("a", [[0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.9, 0.9]], [1, 2]),
             gt("b", [[0.3, 0.3, 0.5, 0.5]], [1])]
    priors = baseline.prior_boxes(train)
    assert sorted(priors) == [1, 2]
    np.testing.assert_allclose(priors[1], [0.2, 0.2, 0.4, 0.4])
    np.testing.assert_allclose(priors[2], [0.5, 0.5, 0.9, 0.9])


def test_prior_results_score_a_fixed_box_on_every_image():
    priors = {1: np.array([0.2, 0.2, 0.4, 0.4]), 2: np.array([0.5, 0.5, 0.9, 0.9])}
    test = [gt("near", [[0.22, 0.22, 0.42, 0.42]], [1]),   # overlaps its finding's prior
            gt("far", [[0.7, 0.0, 0.9, 0.1]], [1]),         # does not
            gt("two", [[0.5, 0.5, 0.9, 0.9]], [2])]
    results = baseline.prior_results(test, priors)
    assert all(len(r.scores) == 2 for r in results)  # one top-1 box per finding with a prior
    counts = localisation_counts(results, findings=("A", "B"))
    assert counts["A"] == (1, 2) and counts["B"] == (1, 1) and counts[TOTAL] == (2, 3)


def test_prior_boxes_reject_labels_outside_findings():
    with pytest.raises(ValueError, match="label outside"):
        baseline.prior_boxes([gt("x", [[0, 0, 1, 1]], [7])])


def simulated(rng, n_images, p, boxes_per_image=2):
    """Outcomes with a true per-box hit rate p (findings 1..2)."""
    labels = rng.integers(1, 3, size=n_images * boxes_per_image)
    return uncertainty.Outcomes(np.repeat(np.arange(n_images), boxes_per_image), labels,
                                rng.random(len(labels)) < p, n_images)


def test_bootstrap_interval_covers_true_rate_about_95_percent():
    rng = np.random.default_rng(0)
    hits = 0
    trials = 200
    for t in range(trials):
        o = simulated(rng, 120, 0.4)
        lo, hi = uncertainty.bootstrap_accuracy(o, findings=("A", "B"), draws=1000, seed=t)[TOTAL]
        hits += lo <= 0.4 <= hi
    assert 0.90 <= hits / trials <= 0.99, hits / trials


def test_paired_difference_of_identical_detectors_is_zero_centred():
    o = simulated(np.random.default_rng(1), 80, 0.5)
    diff, lo, hi = uncertainty.paired_difference(o, o, findings=("A", "B"), draws=500)[TOTAL]
    assert diff == 0 and lo == 0 and hi == 0
    assert uncertainty.shown((diff, lo, hi)) is False


def test_paired_difference_detects_a_clear_gain_and_not_noise():
    rng = np.random.default_rng(2)
    a = simulated(rng, 150, 0.3)
    better = uncertainty.Outcomes(a.image, a.label, a.correct | (rng.random(len(a.label)) < 0.4), a.n_images)
    d = uncertainty.paired_difference(a, better, findings=("A", "B"), draws=1000)[TOTAL]
    assert d[0] > 0 and uncertainty.shown(d) is True
    same_rate = uncertainty.Outcomes(a.image, a.label, rng.random(len(a.label)) < 0.3, a.n_images)
    # an independent detector of the same rate: the interval should usually contain 0
    assert d[1] <= d[0] <= d[2]
    d2 = uncertainty.paired_difference(a, same_rate, findings=("A", "B"), draws=1000)[TOTAL]
    assert d2[1] <= d2[0] <= d2[2]


def test_paired_difference_refuses_other_test_sets():
    rng = np.random.default_rng(3)
    with pytest.raises(ValueError, match="same test images"):
        uncertainty.paired_difference(simulated(rng, 10, 0.5), simulated(rng, 11, 0.5))


def test_pooled_difference_averages_seeds():
    rng = np.random.default_rng(4)
    a1, a2 = simulated(rng, 60, 0.3), simulated(rng, 60, 0.3)
    b1 = uncertainty.Outcomes(a1.image, a1.label, np.ones_like(a1.correct), 60)
    b2 = uncertainty.Outcomes(a2.image, a2.label, a2.correct, 60)
    pooled = uncertainty.pooled_difference([(a1, b1), (a2, b2)], findings=("A", "B"), draws=300)[TOTAL]
    expected = ((1 - a1.correct.mean()) + 0) / 2
    assert pooled[0] == pytest.approx(expected)
    assert pooled[1] <= pooled[0] <= pooled[2]


def test_outcomes_follow_correct_location():
    results = [ImageResult("a", np.array([[0, 0, .5, .5]], np.float32), np.array([1]),
                           np.array([[0, 0, .5, .5]], np.float32), np.array([1]), np.array([.9], np.float32)),
               ImageResult("b", np.array([[0, 0, .5, .5]], np.float32), np.array([2]), *EMPTY)]
    o = uncertainty.outcomes(results)
    assert o.n_images == 2 and o.correct.tolist() == [True, False] and o.image.tolist() == [0, 1]
