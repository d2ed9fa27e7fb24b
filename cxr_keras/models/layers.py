"""Small shared layers for the GANs: instance normalisation, the pix2pix down / up blocks, and the
learning-rate schedules of their optimizers.

Channels-last (NHWC) everywhere: the layout TensorFlow's CPU (oneDNN) kernels are fastest in.
"""
from __future__ import annotations

from typing import Any, Dict, Sequence, Tuple

import tensorflow as tf

INIT_STDDEV = 0.02  # pix2pix / DCGAN weight initialisation N(0, 0.02)


def conv_init() -> tf.keras.initializers.Initializer:
    return tf.keras.initializers.RandomNormal(0.0, INIT_STDDEV)


class InstanceNormalization(tf.keras.layers.Layer):
    """Normalise each image and channel over its spatial axes (learned scale and offset).

    Statistics are computed in float32 even under a mixed-precision policy. ``gamma_initializer``:
    pix2pix draws the scale from N(1, 0.02) (the default), StarGAN starts it at ones. ``fused``: small
    static batches use the per-image fused kernel (pix2pix); ``False`` always takes the moments graph
    (StarGAN, whose numerics it keeps).
    """

    FUSED_MAX_BATCH = 32  # static batches up to this size use the per-image fused kernel

    def __init__(self, epsilon: float = 1e-5, gamma_initializer=None, fused: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon
        self.gamma_initializer = tf.keras.initializers.get(
            gamma_initializer or tf.keras.initializers.RandomNormal(1.0, INIT_STDDEV))
        self.fused = fused

    def build(self, input_shape):
        c = int(input_shape[-1])
        self.gamma = self.add_weight(name="gamma", shape=(c,), initializer=self.gamma_initializer)
        self.beta = self.add_weight(name="beta", shape=(c,), initializer="zeros")
        super().build(input_shape)

    def call(self, x):
        x32 = tf.cast(x, tf.float32)
        gamma, beta = tf.cast(self.gamma, tf.float32), tf.cast(self.beta, tf.float32)
        batch = x.shape[0]
        if self.fused and batch is not None and 1 <= batch <= self.FUSED_MAX_BATCH:
            # For one image, instance norm *is* training-mode batch norm: the fused kernel (forward
            # and gradient) per image is 1.2–2× faster on CPU than the moments graph below.
            parts = tf.split(x32, batch, axis=0) if batch > 1 else [x32]
            ys = [tf.compat.v1.nn.fused_batch_norm(p, gamma, beta, epsilon=self.epsilon, is_training=True)[0]
                  for p in parts]
            y = tf.concat(ys, axis=0) if batch > 1 else ys[0]
            return tf.cast(y, self.compute_dtype)
        mean, var = tf.nn.moments(x32, axes=[1, 2], keepdims=True)
        y = (x32 - mean) * tf.math.rsqrt(var + self.epsilon) * gamma + beta
        return tf.cast(y, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon, "fused": self.fused,
                "gamma_initializer": tf.keras.initializers.serialize(self.gamma_initializer)}


def make_norm(kind: str, name: str) -> tf.keras.layers.Layer:
    """``instance`` or ``batch`` normalisation (pix2pix default init: scale ~ N(1, 0.02))."""
    if kind == "instance":
        return InstanceNormalization(name=name)
    if kind == "batch":
        return tf.keras.layers.BatchNormalization(
            momentum=0.9, epsilon=1e-5, gamma_initializer=tf.keras.initializers.RandomNormal(1.0, INIT_STDDEV),
            name=name)
    raise ValueError(f"unknown normalisation {kind!r}; use 'instance' or 'batch'")


class DownBlock(tf.keras.layers.Layer):
    """Conv 4×4 stride 2 → (norm) → LeakyReLU(0.2): one U-Net encoder step (halves H and W)."""

    def __init__(self, filters: int, norm: str = "instance", use_norm: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.norm_kind, self.use_norm = filters, norm, use_norm
        self.conv = tf.keras.layers.Conv2D(filters, 4, strides=2, padding="same", use_bias=not use_norm,
                                           kernel_initializer=conv_init(), name="conv")
        self.norm = make_norm(norm, "norm") if use_norm else None

    def call(self, x, training=None):
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x, training=training)
        return tf.nn.leaky_relu(x, 0.2)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "norm": self.norm_kind,
                "use_norm": self.use_norm}


class UpBlock(tf.keras.layers.Layer):
    """Transposed conv 4×4 stride 2 → norm → (dropout) → ReLU: one U-Net decoder step (doubles H, W).

    Dropout is active when ``dropout_active`` is true, independently of ``training`` (which only drives
    batch normalisation), so that sampling can keep dropout on as the authors' code does.
    """

    def __init__(self, filters: int, norm: str = "instance", dropout: float = 0.0, upsample: str = "transpose",
                 **kwargs):
        super().__init__(**kwargs)
        self.filters, self.norm_kind, self.rate, self.upsample = filters, norm, dropout, upsample
        self.conv = upsampling_conv(filters, upsample, use_bias=False, name="deconv")
        self.norm = make_norm(norm, "norm")
        self.dropout = tf.keras.layers.Dropout(dropout, name="dropout") if dropout > 0 else None

    def call(self, x, training=None, dropout_active=None):
        x = self.conv(x)
        x = self.norm(x, training=training)
        if self.dropout is not None:
            x = self.dropout(x, training=bool(dropout_active) if dropout_active is not None else training)
        return tf.nn.relu(x)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "norm": self.norm_kind, "dropout": self.rate,
                "upsample": self.upsample}


class ResizeConv(tf.keras.layers.Layer):
    """Bilinear ×2 upsampling, then a 3×3 convolution: the resize-convolution of Odena et al. (2016).

    A stride-2 transposed convolution computes even and odd output pixels from disjoint kernel taps, so
    on a flat input (the black background of a box-only x) it paints a pattern periodic with the stride
    of its level: the ribbed band of issue #12. This layer maps a flat input to a flat output.
    """

    def __init__(self, filters: int, use_bias: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.use_bias = filters, use_bias
        self.up = tf.keras.layers.UpSampling2D(2, interpolation="bilinear", name="up")
        self.conv = tf.keras.layers.Conv2D(filters, 3, padding="same", use_bias=use_bias,
                                           kernel_initializer=conv_init(), name="conv")

    def call(self, x):
        return self.conv(self.up(x))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "use_bias": self.use_bias}


UPSAMPLING = ("transpose", "resize")


def upsampling_conv(filters: int, upsample: str, use_bias: bool, name: str) -> tf.keras.layers.Layer:
    """A layer doubling H and W: ``transpose`` (pix2pix's 4×4 stride-2 transposed convolution) or
    ``resize`` (``ResizeConv``: no stride-periodic texture on flat regions)."""
    if upsample == "transpose":
        return tf.keras.layers.Conv2DTranspose(filters, 4, strides=2, padding="same", use_bias=use_bias,
                                               kernel_initializer=conv_init(), name=name)
    if upsample == "resize":
        return ResizeConv(filters, use_bias=use_bias, name=name)
    raise ValueError(f"unknown upsampling {upsample!r}; use one of {', '.join(UPSAMPLING)}")


# -- learning-rate schedules of both GANs (planned, and re-planned on resume, by cxr_keras.gan.schedule) --
Knots = Tuple[Tuple[float, float], ...]


class PiecewiseLinear(tf.keras.optimizers.schedules.LearningRateSchedule):
    """Learning rate linear between ``(step, value)`` knots (steps increasing), flat outside them."""

    def __init__(self, knots: Sequence[Sequence[float]]):
        if not knots:
            raise ValueError("a learning-rate schedule needs at least one knot")
        self.knots: Knots = tuple((float(s), float(v)) for s, v in knots)

    def __call__(self, step):
        x = tf.cast(step, tf.float32)
        lr = tf.constant(self.knots[0][1], tf.float32)
        for (x0, y0), (x1, y1) in zip(self.knots, self.knots[1:]):
            if y1 == y0:
                continue
            rise = tf.clip_by_value((x - x0) / (x1 - x0), 0.0, 1.0) if x1 > x0 else tf.cast(x >= x1, tf.float32)
            lr = lr + (y1 - y0) * rise
        return lr

    def get_config(self) -> Dict[str, Any]:
        return {"knots": [list(k) for k in self.knots]}


class LinearDecay(PiecewiseLinear):
    """Constant ``base`` until step ``start``, then linear to 0 at step ``total``."""

    def __init__(self, base: float, total: float, start: float):
        self.base, self.total, self.start = float(base), float(total), float(start)
        super().__init__([(0.0, base), (start, base), (total, 0.0)])

    def get_config(self) -> Dict[str, Any]:
        return {"base": self.base, "total": self.total, "start": self.start}


# -- the schedule of a config ------------------------------------------------------------------------
def default_knots(cfg) -> Knots:
    """Constant ``learning_rate`` until ``decay_start_frac × steps``, then linear to 0 at ``steps``."""
    total = float(max(int(cfg.steps), 1))
    return ((0.0, cfg.learning_rate), (cfg.decay_start_frac * total, cfg.learning_rate), (total, 0.0))


def knots_of(cfg) -> Knots:
    """The run's knots in train steps: ``cfg.lr_knots`` if a resume re-planned them, else the default."""
    return tuple(tuple(map(float, k)) for k in cfg.lr_knots) if cfg.lr_knots else default_knots(cfg)


def learning_rate_schedule(cfg, step_scale: int = 1) -> PiecewiseLinear:
    """The schedule for an optimizer stepped once every ``step_scale`` train steps (StarGAN's G: n_critic)."""
    knots = [(s / step_scale, v) for s, v in knots_of(cfg)]
    if not cfg.lr_knots:
        return LinearDecay(cfg.learning_rate, knots[2][0], knots[1][0])
    return PiecewiseLinear(knots)
