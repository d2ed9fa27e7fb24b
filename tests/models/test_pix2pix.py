"""Pix2Pix with the masked composite: exact box, gradients only from the painted region, learning."""
import numpy as np
import pytest
import tensorflow as tf

from cxr_keras.config import Pix2PixConfig
from cxr_keras.models.pix2pix import (
    LOSSES, PatchDiscriminator, UNetGenerator, build_model, composite, default_num_downs, masked_input,
    resolve_num_downs)

S = 64


def tiny_cfg(**kw):
    base = dict(image_size=S, gen_filters=4, disc_filters=4, batch_size=2, num_downs=4, disc_layers=2)
    base.update(kw)
    return Pix2PixConfig(**base)


def random_batch(b=2, size=S, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.uniform(-1, 1, (b, size, size, 1)).astype(np.float32)
    mask = np.zeros((b, size, size, 1), np.float32)
    for i in range(b):
        x0, y0 = rng.integers(0, size // 2, 2)
        w, h = rng.integers(4, size // 2, 2)
        mask[i, y0:y0 + h, x0:x0 + w] = 1
    return {"image": tf.constant(image), "mask": tf.constant(mask)}


def test_depth_follows_image_size():
    assert default_num_downs(256) == 8
    assert default_num_downs(64) == 6
    assert default_num_downs(512) == 8 and default_num_downs(768) == 8
    with pytest.raises(ValueError, match="divisible"):
        resolve_num_downs(Pix2PixConfig(image_size=96, num_downs=6))


def test_unet_256_shape_and_dropout_layers():
    g = UNetGenerator(num_downs=8, filters=2)
    out = g(tf.zeros([1, 256, 256, 1]))
    assert out.shape == (1, 256, 256, 1)
    assert len(g.downs) == 8 and len(g.ups) == 7
    assert [u.dropout is not None for u in g.ups] == [True] * 3 + [False] * 4


def test_patch_discriminator_is_70x70_patchgan_at_256():
    d = PatchDiscriminator(filters=2, n_layers=3)
    logits = d((tf.zeros([2, 256, 256, 1]), tf.zeros([2, 256, 256, 1])))
    assert logits.shape == (2, 30, 30, 1)


def test_composite_keeps_the_box_bit_for_bit():
    model = build_model(tiny_cfg())
    batch = random_batch()
    y, m = batch["image"], batch["mask"]
    x = masked_input(y, m)
    inside = m.numpy() > 0.5
    assert np.array_equal(x.numpy()[inside], y.numpy()[inside])
    assert np.all(x.numpy()[~inside] == -1.0)
    pred = model.generator(x, training=True)
    fake = composite(x, pred, m).numpy()
    assert np.array_equal(fake[inside], y.numpy()[inside])  # bit for bit, no arithmetic round-off
    assert np.array_equal(fake[~inside], pred.numpy()[~inside])
    out = model.generate(y, m, sample=True).numpy()
    assert np.array_equal(out[inside], y.numpy()[inside])
    assert not np.array_equal(out[~inside], y.numpy()[~inside])


class _FixedPrediction(tf.keras.layers.Layer):
    """Stands in for G: returns a variable, so the gradient w.r.t. the prediction can be read."""

    def __init__(self, value):
        super().__init__()
        self.value = tf.Variable(value)

    def call(self, x, training=None, sample=False):
        return self.value


def test_gradients_reach_the_generator_only_from_outside_the_mask():
    model = build_model(tiny_cfg())
    batch = random_batch(seed=1)
    pred0 = np.random.default_rng(2).uniform(-1, 1, batch["image"].shape).astype(np.float32)
    model.generator = _FixedPrediction(pred0)
    with tf.GradientTape() as tape:
        out = model.losses_for(batch["image"], batch["mask"], training=True)
    grad = tape.gradient(out["g_loss"], model.generator.value).numpy()
    inside = batch["mask"].numpy() > 0.5
    assert np.all(grad[inside] == 0.0)
    assert np.count_nonzero(grad[~inside]) > 0.9 * (~inside).sum()


def test_real_generator_gradient_ignores_the_box_pixels_of_its_output():
    """Changing what G paints inside the box changes no loss (the composite copies x there)."""
    model = build_model(tiny_cfg())
    batch = random_batch(seed=3)
    rng = np.random.default_rng(4)
    pred = rng.uniform(-1, 1, batch["image"].shape).astype(np.float32)
    inside = batch["mask"].numpy() > 0.5
    other = pred.copy()
    other[inside] = rng.uniform(-1, 1, inside.sum())
    losses = []
    for p in (pred, other):
        model.generator = _FixedPrediction(p)
        losses.append({k: float(v) for k, v in model.losses_for(batch["image"], batch["mask"], False).items()
                       if v.shape.rank == 0})
    assert losses[0] == losses[1]


def test_one_discriminator_call_equals_two():
    """D on real and fake concatenated gives each image the logits of a separate call."""
    d = PatchDiscriminator(filters=4, n_layers=2)
    a, b, c = (tf.random.normal([2, S, S, 1], seed=i) for i in range(3))
    joint = d((tf.concat([a, a], 0), tf.concat([b, c], 0))).numpy()
    np.testing.assert_allclose(joint[:2], d((a, b)).numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(joint[2:], d((a, c)).numpy(), rtol=1e-4, atol=1e-5)


def test_dropout_gives_varied_draws_only_when_sampling():
    model = build_model(tiny_cfg(dropout=0.5))
    batch = random_batch(seed=5)
    a = model.generate(batch["image"], batch["mask"], sample=True).numpy()
    b = model.generate(batch["image"], batch["mask"], sample=True).numpy()
    c = model.generate(batch["image"], batch["mask"], sample=False).numpy()
    d = model.generate(batch["image"], batch["mask"], sample=False).numpy()
    assert not np.array_equal(a, b)
    assert np.array_equal(c, d)


def test_train_step_lowers_the_loss_on_a_fixed_batch():
    tf.random.set_seed(0)
    model = build_model(tiny_cfg(learning_rate=2e-3))
    batch = random_batch(seed=6)
    # a smooth target the generator can learn to paint
    yy, xx = np.mgrid[0:S, 0:S] / S
    smooth = np.broadcast_to(((xx + yy) - 1.0)[None, :, :, None], batch["image"].shape).astype(np.float32)
    batch = {"image": tf.constant(smooth), "mask": batch["mask"]}
    it = iter(tf.data.Dataset.from_tensors(batch).repeat())
    step = model.make_train_function()
    losses = [float(step(it)["l1"]) for _ in range(40)]
    assert all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    assert int(model.g_optimizer.iterations) == 40 and int(model.d_optimizer.iterations) == 40


def test_loss_trackers_average_the_steps_until_reset():
    model = build_model(tiny_cfg())
    assert [m.name for m in model.metrics] == list(LOSSES)
    it = iter(tf.data.Dataset.from_tensors(random_batch(seed=8)).repeat())
    step = model.make_train_function()
    outs = [{k: float(v) for k, v in step(it).items()} for _ in range(3)]
    for m in model.metrics:
        np.testing.assert_allclose(float(m.result()), np.mean([o[m.name] for o in outs]), rtol=1e-5)
    model.reset_metrics()
    assert all(float(m.result()) == 0.0 for m in model.metrics)


def test_sample_images_and_checkpoint_items():
    model = build_model(tiny_cfg())
    grid = model.sample_images(random_batch()).numpy()
    assert grid.shape == (2, S, 3 * S, 1)
    assert grid.min() >= 0.0 and grid.max() <= 1.0
    assert set(model.checkpoint_items()) == {"generator", "discriminator", "g_optimizer", "d_optimizer"}


def test_mixed_precision_keeps_the_box_exact():
    from cxr_keras.gan.runs import dtype_policy

    with dtype_policy(True):
        model = build_model(tiny_cfg())
    assert tf.keras.mixed_precision.global_policy().name == "float32"  # restored
    batch = random_batch(seed=7)
    out = model.generate(batch["image"], batch["mask"]).numpy()
    inside = batch["mask"].numpy() > 0.5
    assert out.dtype == np.float32
    assert np.array_equal(out[inside], batch["image"].numpy()[inside])
