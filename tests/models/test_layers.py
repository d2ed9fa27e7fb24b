"""The shared layers (cxr_keras.models.layers): one instance normalisation for both GANs."""
import numpy as np
import tensorflow as tf

from cxr_keras.models.layers import InstanceNormalization


def test_instance_norm_normalises_each_image():
    x = tf.random.normal([3, 8, 8, 2]) * 5.0 + tf.constant([1.0, -3.0, 7.0])[:, None, None, None]
    layer = InstanceNormalization()
    y = layer(x).numpy()
    g, b = layer.gamma.numpy(), layer.beta.numpy()
    z = (y - b) / g
    np.testing.assert_allclose(z.mean(axis=(1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(z.std(axis=(1, 2)), 1.0, atol=1e-2)


def test_instance_norm_fused_path_matches_the_generic_one():
    """Static batches use per-image fused kernels; an unknown batch size the moments graph."""
    layer = InstanceNormalization()
    x = tf.random.normal([3, 8, 8, 2], seed=4) * 3.0 + 1.0
    fused = layer(x).numpy()
    generic = tf.function(layer, input_signature=[tf.TensorSpec([None, 8, 8, 2])])(x).numpy()
    single = np.concatenate([layer(x[i:i + 1]).numpy() for i in range(3)])
    np.testing.assert_allclose(fused, generic, atol=1e-5)
    np.testing.assert_allclose(single, generic, atol=1e-5)



def test_instance_norm_options_of_each_gan():
    """Pix2Pix: scale ~ N(1, 0.02) and the fused kernel; StarGAN: scale at ones, always the moments graph."""
    x = tf.random.normal([2, 8, 8, 16], seed=5) * 2.0 - 1.0
    pix2pix = InstanceNormalization()
    pix2pix(x)
    gamma = pix2pix.gamma.numpy()
    assert not np.all(gamma == 1.0) and abs(gamma.mean() - 1.0) < 0.05
    stargan = InstanceNormalization(gamma_initializer="ones", fused=False)
    y = stargan(x).numpy()
    assert np.all(stargan.gamma.numpy() == 1.0)
    mean, var = tf.nn.moments(x, axes=[1, 2], keepdims=True)
    np.testing.assert_array_equal(y, ((x - mean) * tf.math.rsqrt(var + 1e-5)).numpy())  # the moments formula
    config = stargan.get_config()
    assert config["fused"] is False
    assert np.all(InstanceNormalization.from_config(config)(x).numpy() == y)
