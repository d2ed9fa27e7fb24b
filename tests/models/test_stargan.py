"""StarGAN baseline: networks, losses, n_critic schedule, loss trackers, learning behaviour, resume."""
import numpy as np
import pytest
import tensorflow as tf

from cxr_keras.config import StarGANConfig
from cxr_keras.models.stargan import (
    LOSSES,
    N_DOMAINS,
    LinearDecay,
    StarGAN,
    StarGANDiscriminator,
    StarGANGenerator,
    build_stargan,
    gradient_penalty,
    make_optimizers,
)

TINY = StarGANConfig(image_size=16, gen_filters=4, disc_filters=4, res_blocks=1, disc_layers=2,
                     n_critic=1, steps=1000, batch_size=4, augment=False)


def fixed_batch(seed=0, n=4, size=16):
    rng = np.random.default_rng(seed)
    img = np.tanh(rng.normal(size=(n, size, size, 1))).astype(np.float32)
    return {"image": tf.constant(img), "label": tf.constant(rng.integers(0, N_DOMAINS, n), tf.int64)}


# -- losses ------------------------------------------------------------------------------------
def test_gradient_penalty_matches_hand_computation_on_linear_critic():
    rng = np.random.default_rng(1)
    b, h, w, c = 3, 4, 5, 2
    real = tf.constant(rng.normal(size=(b, h, w, c)), tf.float32)
    fake = tf.constant(rng.normal(size=(b, h, w, c)), tf.float32)
    alpha = tf.constant(rng.uniform(size=(b, 1, 1, 1)), tf.float32)
    # Linear PatchGAN critic: a 1×1 conv, src[b,i,j] = w·x[b,i,j] + bias.
    critic = tf.keras.layers.Conv2D(1, 1)
    critic.build((None, h, w, c))
    kernel = np.array([0.3, -0.2], np.float32)
    critic.set_weights([kernel.reshape(1, 1, c, 1), np.array([0.7], np.float32)])
    # ∇ₓ Σ_ij src = w at every pixel → ‖∇‖ = sqrt(h·w·‖w‖²) for every sample, whatever α.
    norm = np.sqrt(h * w * np.sum(kernel ** 2))
    expected = (norm - 1.0) ** 2
    got = float(gradient_penalty(critic, real, fake, alpha))
    assert got == pytest.approx(expected, rel=1e-5)


def test_gradient_penalty_uses_the_interpolate():
    # Critic Σ x²/2 has gradient x̂ itself: the penalty depends on α through x̂ = α·real + (1−α)·fake.
    rng = np.random.default_rng(2)
    real = rng.normal(size=(2, 3, 3, 1)).astype(np.float32)
    fake = rng.normal(size=(2, 3, 3, 1)).astype(np.float32)
    alpha = np.array([0.25, 0.9], np.float32).reshape(2, 1, 1, 1)
    x_hat = alpha * real + (1 - alpha) * fake
    expected = np.mean((np.sqrt((x_hat.reshape(2, -1) ** 2).sum(1)) - 1.0) ** 2)
    got = float(gradient_penalty(lambda x: 0.5 * tf.reduce_sum(x * x, axis=[1, 2, 3]), real, fake, alpha))
    assert got == pytest.approx(expected, rel=1e-5)


def test_linear_decay_schedule():
    s = LinearDecay(1e-4, total=100, start=50)
    assert float(s(0)) == pytest.approx(1e-4)
    assert float(s(50)) == pytest.approx(1e-4)
    assert float(s(75)) == pytest.approx(0.5e-4)
    assert float(s(100)) == pytest.approx(0.0)
    assert float(s(150)) == pytest.approx(0.0)
    g, d = make_optimizers(StarGANConfig(steps=1000, n_critic=5, learning_rate=1e-4))
    # G is stepped every 5th step: its schedule ends after 200 G updates, D's after 1000.
    g_sched, d_sched = (o.get_config()["learning_rate"]["config"] for o in (g, d))
    assert g_sched == {"base": pytest.approx(1e-4), "total": 200, "start": 100}
    assert d_sched == {"base": pytest.approx(1e-4), "total": 1000, "start": 500}
    assert float(g.beta_1) == pytest.approx(0.5) and float(g.beta_2) == pytest.approx(0.999)


# -- networks ----------------------------------------------------------------------------------
def test_networks_shapes_and_domain_conditioning():
    g = StarGANGenerator(filters=4, res_blocks=2)
    x = tf.constant(fixed_batch()["image"])
    c0 = tf.one_hot([0, 0, 0, 0], N_DOMAINS)
    c3 = tf.one_hot([3, 3, 3, 3], N_DOMAINS)
    y0, y3 = g((x, c0)), g((x, c3))
    assert y0.shape == x.shape
    assert float(tf.reduce_max(tf.abs(y0))) <= 1.0
    assert float(tf.reduce_mean(tf.abs(y0 - y3))) > 1e-4  # the target domain changes the output
    d = StarGANDiscriminator(16, filters=4, layers=2)
    src, cls = d(x)
    assert src.shape == (4, 4, 4, 1) and cls.shape == (4, N_DOMAINS)
    with pytest.raises(ValueError, match="divisible"):
        StarGANDiscriminator(24, layers=4)
    with pytest.raises(ValueError, match="divisible by 4"):
        StarGAN(StarGANConfig(image_size=18, disc_layers=1))


def test_loss_trackers_average_every_step_until_reset():
    m = build_stargan(TINY.__class__(**{**TINY.__dict__, "n_critic": 2}))
    assert [t.name for t in m.metrics] == list(LOSSES)
    step = tf.function(m.train_step)
    outs = [{k: float(v) for k, v in step(fixed_batch(seed=s)).items()} for s in range(3)]
    assert list(outs[0]) == list(LOSSES)
    for t in m.metrics:
        np.testing.assert_allclose(float(t.result()), np.mean([o[t.name] for o in outs]), rtol=1e-5, atol=1e-7)
    m.reset_metrics()
    assert all(float(t.result()) == 0.0 for t in m.metrics)


def test_sample_images_one_row_per_input_with_every_domain():
    m = build_stargan(TINY)
    batch = fixed_batch(n=6)
    grid = m.sample_images(batch, max_inputs=4).numpy()
    assert grid.shape == (4, 16, (N_DOMAINS + 1) * 16, 1)
    assert grid.min() >= 0.0 and grid.max() <= 1.0
    np.testing.assert_allclose(grid[:, :, :16], (batch["image"].numpy()[:4] + 1) / 2, atol=1e-6)
    np.testing.assert_allclose(grid[:, :, 16 * 4:16 * 5], (m.translate(batch["image"][:4], 3).numpy() + 1) / 2,
                               atol=1e-6)


# -- training behaviour ------------------------------------------------------------------------
def test_generator_updated_every_n_critic_steps():
    m = build_stargan(TINY.__class__(**{**TINY.__dict__, "n_critic": 3}))
    step = tf.function(m.train_step)
    batch = fixed_batch()
    g0 = [v.numpy().copy() for v in m.generator.trainable_variables]
    d0 = [v.numpy().copy() for v in m.discriminator.trainable_variables]
    out = step((batch,))  # the (x,) tuple Keras' fit/train_on_batch pass works as well as a dict
    assert set(out) >= {"d_loss", "d_gp", "d_cls", "g_loss", "g_rec", "g_cls"}
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(g0, m.generator.trainable_variables))
    assert not all(np.array_equal(a, v.numpy()) for a, v in zip(d0, m.discriminator.trainable_variables))
    step((batch,))
    assert int(m.g_optimizer.iterations) == 0
    out = step((batch,))  # third step: (2 + 1) % 3 == 0
    assert int(m.g_optimizer.iterations) == 1 and int(m.d_optimizer.iterations) == 3
    assert not all(np.array_equal(a, v.numpy()) for a, v in zip(g0, m.generator.trainable_variables))
    assert float(out["g_rec"]) > 0
    assert int(m.step_counter) == 3


@pytest.mark.slow
def test_round_trip_reconstruction_improves_with_training():
    cfg = TINY.__class__(**{**TINY.__dict__, "learning_rate": 2e-3})
    m = build_stargan(cfg, seed=3)
    batch = fixed_batch(seed=4)
    targets = tf.constant([1, 4, 6, 0])
    before = float(m.reconstruction_error(batch["image"], batch["label"], targets))
    step = tf.function(m.train_step)
    for _ in range(30):
        step(batch)
    after = float(m.reconstruction_error(batch["image"], batch["label"], targets))
    assert after < 0.7 * before, (before, after)


def toy_domains(n, seed, size=16):
    """Domain k = a bright horizontal band at rows 2k..2k+1 over noise: trivially separable."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, N_DOMAINS, n)
    img = rng.uniform(-1, -0.5, size=(n, size, size, 1)).astype(np.float32)
    for i, k in enumerate(labels):
        img[i, 2 * k:2 * k + 2] = 1.0
    return img, labels


@pytest.mark.slow
def test_classifier_head_learns_domains_on_toy_set():
    cfg = TINY.__class__(**{**TINY.__dict__, "learning_rate": 2e-3, "n_critic": 5, "disc_filters": 8})
    m = build_stargan(cfg, seed=0)
    step = tf.function(m.train_step)
    test_img, test_lab = toy_domains(64, seed=99)
    acc0 = float(np.mean(np.argmax(m.classify(test_img), 1) == test_lab))
    for i in range(30):
        img, lab = toy_domains(16, seed=i)
        step({"image": tf.constant(img), "label": tf.constant(lab)})
    acc = float(np.mean(np.argmax(m.classify(test_img), 1) == test_lab))
    assert acc >= 0.9 and acc > acc0 + 0.3, (acc0, acc)


@pytest.mark.slow
def test_resume_continues_exactly(tmp_path):
    batches = [fixed_batch(seed=s) for s in range(5)]
    cfg = TINY.__class__(**{**TINY.__dict__, "n_critic": 2})

    a = build_stargan(cfg, seed=7)
    step_a = tf.function(a.train_step)
    for bt in batches[:3]:
        step_a(bt)
    path = tf.train.Checkpoint(**a.checkpoint_items()).save(str(tmp_path / "ckpt"))
    ref = [step_a(bt) for bt in batches[3:]]

    b = build_stargan(cfg, seed=123)  # different seed: the RNG state must come from the checkpoint
    tf.train.Checkpoint(**b.checkpoint_items()).restore(path).assert_consumed()
    assert int(b.step_counter) == 3 and int(b.g_optimizer.iterations) == 1
    step_b = tf.function(b.train_step)
    got = [step_b(bt) for bt in batches[3:]]
    for r, g in zip(ref, got):
        for k in r:
            np.testing.assert_allclose(float(g[k]), float(r[k]), rtol=1e-4, atol=1e-5, err_msg=k)
    for va, vb in zip(a.generator.weights, b.generator.weights):
        np.testing.assert_allclose(va.numpy(), vb.numpy(), rtol=1e-4, atol=1e-5)
