"""Painted-region L1 / PSNR / SSIM of a Pix2Pix run (cxr_keras.gan.evaluate)."""
import json

import numpy as np
import pytest
import tensorflow as tf

from cxr_keras.gan import evaluate as gan_eval
from cxr_keras.paths import RunPaths


def test_ssim_map_matches_tf_image_ssim():
    rng = np.random.default_rng(0)
    a = tf.constant(rng.uniform(0, 1, (2, 48, 48, 1)), tf.float32)
    b = tf.clip_by_value(a + tf.constant(rng.normal(0, 0.1, (2, 48, 48, 1)), tf.float32), 0, 1)
    ours = tf.reduce_mean(gan_eval.ssim_map(a, b), [1, 2, 3]).numpy()
    np.testing.assert_allclose(ours, tf.image.ssim(a, b, 1.0).numpy(), rtol=1e-4)


def test_painted_metrics_score_only_the_painted_region():
    rng = np.random.default_rng(1)
    real = tf.constant(rng.uniform(0, 1, (1, 32, 32, 1)), tf.float32)
    mask = np.zeros((1, 32, 32, 1), np.float32)
    mask[:, 8:24, 8:24] = 1
    wrong_inside = tf.where(mask > 0.5, 1.0 - real, real)  # errors only where nothing is painted
    m = gan_eval.painted_metrics(wrong_inside, real, tf.constant(mask))
    assert m["l1"][0] == 0.0 and m["psnr"][0] > 100
    half = tf.where(mask > 0.5, real, real * 0.5)
    m2 = gan_eval.painted_metrics(half, real, tf.constant(mask))
    expect_l1 = float(np.mean(np.abs(real.numpy() * 0.5)[mask == 0]))
    np.testing.assert_allclose(m2["l1"][0], expect_l1, rtol=1e-5)
    assert m2["ssim"][0] < 1.0


def test_evaluate_run_writes_per_finding_tables(pix2pix_run):
    result = gan_eval.evaluate_run(pix2pix_run["run"], pix2pix_run["records"], "test")
    assert set(result["per_finding"]) == {"Cardiomegaly", "Pneumothorax", "all"}
    assert result["per_finding"]["all"]["n"] == 2
    saved = json.loads(RunPaths(pix2pix_run["run"]).eval_json("test").read_text())
    assert saved["per_finding"]["all"]["l1"] == pytest.approx(result["per_finding"]["all"]["l1"])
    assert "| Cardiomegaly | 1 |" in RunPaths(pix2pix_run["run"]).eval_md("test").read_text()
