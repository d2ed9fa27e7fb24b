"""Issue #12, the Pix2Pix side: no stride-periodic texture on the flat background (resize-convolution
decoder), no seam at the box (L1 on the whole raw output), and the quality metrics that show both
(seam, anatomy follow) in gan/evaluate.py."""
import json

import numpy as np
import pytest
import tensorflow as tf

from cxr_keras.config import PRESETS, preset
from cxr_keras.gan import evaluate as gan_eval
from cxr_keras.models.layers import ResizeConv, upsampling_conv
from cxr_keras.models.pix2pix import UNetGenerator, build_model, composite, masked_input
from cxr_keras.paths import RunPaths
from gankit import S, tiny_net_cfg


def box_only_input(size=S):
    """A box-only x: the background value -1 everywhere but a textured box in the lower left."""
    x = -np.ones((1, size, size, 1), np.float32)
    x[0, size // 2:size // 2 + 16, 4:20] = np.random.default_rng(0).uniform(-0.5, 0.5, (16, 16, 1))
    return tf.constant(x)


def texture(y: np.ndarray) -> float:
    """Mean |second difference| along the rows of a flat-input band: 0 for a flat (or linear) output."""
    return float(np.abs(y[:, 2:] - 2 * y[:, 1:-1] + y[:, :-2]).mean())


@pytest.mark.parametrize("seed", [0, 1])
def test_resize_decoder_paints_no_stride_periodic_texture_on_the_flat_background(seed):
    """The cause of the ribbed band: a stride-2 transposed convolution gives even and odd pixels different
    kernel taps, so a flat input comes out periodic; the resize-convolution keeps it flat."""
    x = box_only_input()
    out = {}
    for upsample in ("transpose", "resize"):
        tf.random.set_seed(seed)
        g = UNetGenerator(num_downs=6, filters=8, norm="instance", dropout=0.5, upsample=upsample)
        y = g(x).numpy()[0, :, :, 0]
        band = y[2:10, 28:60]  # top band, away from the box and the side borders: the input is flat there
        out[upsample] = (texture(band), float(y.std()))
    (tex_t, std_t), (tex_r, std_r) = out["transpose"], out["resize"]
    assert tex_t > 0.2 * std_t  # periodic texture of the order of the output's own spread
    assert tex_r < 0.05 * std_r and tex_r < 0.1 * tex_t  # what is left: the smooth reach of the box


def test_upsampling_layers_double_the_size_and_reject_unknown_modes():
    x = tf.random.uniform([2, 8, 8, 3])
    for mode in ("transpose", "resize"):
        assert upsampling_conv(5, mode, use_bias=False, name="u")(x).shape == (2, 16, 16, 5)
    flat = ResizeConv(4)(tf.fill([1, 8, 8, 2], 0.3)).numpy()
    assert np.ptp(flat[:, 1:-1, 1:-1], axis=(1, 2)).max() < 1e-6  # flat in, flat out (zero-padded borders aside)
    with pytest.raises(ValueError, match="unknown upsampling 'nearest'"):
        upsampling_conv(4, "nearest", use_bias=False, name="u")


def tiny_cfg(**kw):
    return tiny_net_cfg(**{"upsample": "resize", **kw})


def batch_with_box():
    rng = np.random.default_rng(3)
    image = rng.uniform(-1, 1, (2, S, S, 1)).astype(np.float32)
    mask = np.zeros((2, S, S, 1), np.float32)
    mask[:, 16:40, 20:44] = 1
    return tf.constant(image), tf.constant(mask)


def test_whole_image_l1_grades_the_raw_output_box_included_and_keeps_the_box_exact():
    y, m = batch_with_box()
    for region in ("painted", "whole"):
        tf.random.set_seed(0)
        model = build_model(tiny_cfg(l1_region=region))
        with tf.GradientTape() as tape:
            out = model.losses_for(y, m)
            pred = out["pred"]
            l1 = out["l1"]
        expected = np.abs(y.numpy() - (pred.numpy() if region == "whole" else out["fake"].numpy())).mean()
        assert float(l1) == pytest.approx(expected, rel=1e-5)
        # the composite copies the box bit for bit either way
        np.testing.assert_array_equal(out["fake"].numpy()[m.numpy() > 0.5], y.numpy()[m.numpy() > 0.5])
        g_box = tape.gradient(l1, pred)
        inside = np.abs(g_box.numpy()[m.numpy() > 0.5]).sum()
        assert (inside > 0) == (region == "whole")  # only "whole" asks G to reproduce the box


def test_unknown_l1_region_is_refused():
    with pytest.raises(ValueError, match="unknown l1_region 'box'"):
        build_model(tiny_cfg(l1_region="box"))


def test_every_preset_uses_the_resize_decoder_and_the_whole_image_l1():
    for name in sorted(PRESETS):
        cfg = preset(name).pix2pix
        assert (cfg.upsample, cfg.l1_region) == ("resize", "whole"), name


# -- the metrics -------------------------------------------------------------------------------------
def smooth_images(n, size=32, seed=0):
    """n different smooth 'patients' in [0, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(n):
        a, b, c, d = rng.uniform(0.5, 3, 4)
        out.append(0.5 + 0.25 * np.sin(a * 3 * xx + b) * np.cos(c * 3 * yy + d))
    return np.stack(out)[..., None].astype(np.float32)


def test_seam_excess_is_zero_for_the_real_image_and_grows_with_a_mismatch_at_the_box():
    real = smooth_images(2)
    mask = np.zeros_like(real)
    mask[:, 8:20, 10:22] = 1
    np.testing.assert_allclose(gan_eval.seam_excess(real, real, mask), 0.0, atol=1e-7)
    shifted = np.where(mask > 0.5, real, real + 0.2)  # painting 0.2 brighter than the box it meets
    excess = gan_eval.seam_excess(shifted, real, mask)
    assert np.all(excess > 0.1) and np.all(excess <= 0.2 + 1e-6)  # |d + 0.2| − |d| for the real step d
    # the same offset far from the box (a plain L1 error) is not a seam
    far = real.copy()
    far[:, 26:, :] += 0.2
    np.testing.assert_allclose(gan_eval.seam_excess(far, real, mask), 0.0, atol=1e-6)


def test_anatomy_follow_tells_one_chest_for_all_from_paintings_of_each_patient():
    real = smooth_images(6)
    mask = np.zeros_like(real)
    mask[:, 4:12, 4:12] = 1
    own = gan_eval.anatomy_follow(real, real, mask)  # perfect paintings of each patient
    assert own["own"] == pytest.approx(1.0) and own["follow"] > 0.2 and own["spread"] == pytest.approx(1.0)
    same = np.broadcast_to(real.mean(0, keepdims=True), real.shape)  # the same chest whatever the input
    one = gan_eval.anatomy_follow(same, real, mask)
    assert one["follow"] == pytest.approx(0.0, abs=1e-6) and one["spread"] == pytest.approx(0.0, abs=1e-6)
    assert gan_eval.anatomy_follow(real[:1], real[:1], mask[:1])["follow"] is None


def test_evaluate_run_reports_seam_and_anatomy_follow(pix2pix_run):
    result = gan_eval.evaluate_run(pix2pix_run["run"], pix2pix_run["records"], "test")
    assert "seam" in result["per_finding"]["all"]
    assert result["anatomy"]["n"] == 2 and result["anatomy"]["follow"] is not None
    saved = json.loads(RunPaths(pix2pix_run["run"]).eval_json("test").read_text())
    assert saved["anatomy"]["follow"] == pytest.approx(result["anatomy"]["follow"])
    text = RunPaths(pix2pix_run["run"]).eval_md("test").read_text()
    assert "Anatomy follow" in text and "| seam |" in text


def test_composite_stays_exact_with_the_resize_decoder():
    y, m = batch_with_box()
    model = build_model(tiny_cfg(l1_region="whole"))
    out = model.generate(y, m, sample=True).numpy()
    np.testing.assert_array_equal(out[m.numpy() > 0.5], y.numpy()[m.numpy() > 0.5])
    x = masked_input(y, m)
    np.testing.assert_array_equal(composite(x, model.generator(x), m).numpy()[m.numpy() > 0.5],
                                  y.numpy()[m.numpy() > 0.5])
