"""FusedAdam: the fused kernel must give stock Adam's updates, slots and checkpoints."""
import numpy as np
import pytest
import tensorflow as tf

from cxr_keras.models.optim import FusedAdam
from cxr_keras.models.stargan import LinearDecay


def _run(opt_cls, lr, steps=5, strategy=None):
    strategy = strategy or tf.distribute.get_strategy()
    rng = np.random.default_rng(0)
    init = [rng.normal(size=(3, 4)).astype("float32"), rng.normal(size=(4,)).astype("float32")]
    grads = [[rng.normal(size=v.shape).astype("float32") for v in init] for _ in range(steps)]
    with strategy.scope():
        variables = [tf.Variable(v) for v in init]
        opt = opt_cls(lr, beta_1=0.5)

    @tf.function
    def apply(gs):
        opt.apply_gradients(zip(gs, variables))

    for gs in grads:
        strategy.run(apply, args=([tf.constant(g) for g in gs],))
    return [v.numpy() for v in variables], opt


@pytest.mark.parametrize("lr", ["constant", "schedule"])
def test_fused_adam_matches_keras_adam(lr):
    make_lr = (lambda: 2e-2) if lr == "constant" else (lambda: LinearDecay(2e-2, total=5, start=2))
    ref, ref_opt = _run(tf.keras.optimizers.Adam, make_lr())
    got, opt = _run(FusedAdam, make_lr())
    for r, g, v0 in zip(ref, got, _run(tf.keras.optimizers.Adam, make_lr(), steps=0)[0]):
        assert not np.allclose(g, v0)  # the variables did move
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6)
    assert [v.name for v in opt.variables] == [v.name for v in ref_opt.variables]
    for a, b in zip(opt.variables, ref_opt.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)


def test_fused_adam_under_a_distribution_strategy():
    ref, _ = _run(tf.keras.optimizers.Adam, 1e-2)
    got, _ = _run(FusedAdam, 1e-2, strategy=tf.distribute.MirroredStrategy(["/cpu:0"]))
    for r, g in zip(ref, got):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6)


def test_stock_adam_checkpoint_restores_into_fused_adam(tmp_path):
    _, ref_opt = _run(tf.keras.optimizers.Adam, 1e-2)
    path = tf.train.Checkpoint(opt=ref_opt).save(str(tmp_path / "ckpt"))
    _, opt = _run(FusedAdam, 1e-2, steps=1)
    tf.train.Checkpoint(opt=opt).restore(path).assert_existing_objects_matched()
    assert int(opt.iterations) == int(ref_opt.iterations) == 5
    for a, b in zip(opt.variables, ref_opt.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
