"""Pix2Pix that never touches the pathology box (Algorithm 1 of Xing, Ge et al., MICCAI 2019).

Images live in [-1, 1]. With y the real image and m the box mask (1 inside the box):
    x  = y·m in [0, 1] intensity space, i.e. ``tf.where(m > 0.5, y, -1)`` here (black outside the box)
    x̃ = x + G(x)·(1 − m), computed as ``tf.where(m > 0.5, x, G(x))`` so the box is kept bit for bit
D sees (x, x̃) against (x, y); the generator loss is L_GAN + λ·|y − x̃|₁, so G is graded only on the
region it paints (inside the box the composite equals y exactly and no gradient reaches G). With
``l1_region="whole"`` the L1 term is |y − G(x)|₁ instead: G also reproduces the box it is given, so what
it paints around the box continues it without a seam (the composite still copies the box bit for bit).
``upsample="resize"`` swaps the decoder's transposed convolutions for resize-convolutions, which cannot
paint the stride-periodic texture (the ribbed band at the top edge) on the flat background of x.
"""
from __future__ import annotations

from typing import Dict, Optional

import tensorflow as tf

from cxr_keras.config import Pix2PixConfig
from cxr_keras.models.layers import (DownBlock, UpBlock, conv_init, learning_rate_schedule, make_norm,
                                     upsampling_conv)
from cxr_keras.models.optim import FusedAdam

BACKGROUND = -1.0  # value of the masked-out pixels in [-1, 1] space (0 in [0, 1] space)
# What one train step reports, each with a mean tracker in ``Pix2Pix.metrics``.
LOSSES = ("g_loss", "g_gan", "l1", "d_loss", "d_real", "d_fake")
L1_REGIONS = ("painted", "whole")  # Pix2PixConfig.l1_region


def default_num_downs(image_size: int) -> int:
    """U-Net depth for a size: log2(size) for powers of two up to 256 (→ 8), else 8 levels at most."""
    if image_size < 8:
        raise ValueError(f"image size {image_size} is too small for a U-Net (need >= 8)")
    k = 0
    while image_size % (2 ** (k + 1)) == 0 and k < 8:
        k += 1
    return k


def resolve_num_downs(cfg: Pix2PixConfig) -> int:
    n = cfg.num_downs or default_num_downs(cfg.image_size)
    if cfg.image_size % (2 ** n) != 0:
        raise ValueError(f"image_size {cfg.image_size} is not divisible by 2**num_downs = {2 ** n}")
    return n


class UNetGenerator(tf.keras.Model):
    """The pix2pix U-Net (U-Net-256 at 256×256: 8 down / 7 up blocks, skips, dropout in 3 decoders).

    ``call(x, training, sample)``: ``sample=True`` keeps dropout on at inference, as the authors'
    code does to draw varied outputs for one input.
    """

    def __init__(self, num_downs: int = 8, filters: int = 64, channels: int = 1, norm: str = "instance",
                 dropout: float = 0.5, upsample: str = "transpose", **kwargs):
        super().__init__(**kwargs)
        if num_downs < 2:
            raise ValueError(f"num_downs must be >= 2, got {num_downs}")
        self.num_downs = num_downs
        widths = [filters * min(2 ** i, 8) for i in range(num_downs)]
        # Outermost (raw image) and innermost (1×1 at 256) levels carry no normalisation.
        self.downs = [DownBlock(w, norm, use_norm=0 < i < num_downs - 1, name=f"down{i}")
                      for i, w in enumerate(widths)]
        self.ups = [UpBlock(widths[num_downs - 2 - j], norm, dropout if j < 3 else 0.0, upsample, name=f"up{j}")
                    for j in range(num_downs - 1)]
        self.last = upsampling_conv(channels, upsample, use_bias=True, name="last")

    def call(self, x, training=None, sample=False):
        skips = []
        for down in self.downs:
            x = down(x, training=training)
            skips.append(x)
        for up, skip in zip(self.ups, reversed(skips[:-1])):
            x = up(x, training=training, dropout_active=bool(training) or sample)
            x = tf.concat([x, skip], axis=-1)
        x = self.last(x)
        return tf.tanh(tf.cast(x, tf.float32))


class PatchDiscriminator(tf.keras.Model):
    """The 70×70 PatchGAN conditioned on x: logits for overlapping patches of concat(x, target)."""

    def __init__(self, filters: int = 64, n_layers: int = 3, norm: str = "instance", **kwargs):
        super().__init__(**kwargs)
        self.blocks = [DownBlock(filters, norm, use_norm=False, name="c0")]
        for n in range(1, n_layers):
            self.blocks.append(DownBlock(filters * min(2 ** n, 8), norm, name=f"c{n}"))
        self.pad1 = tf.keras.layers.ZeroPadding2D(1)
        self.conv = tf.keras.layers.Conv2D(filters * min(2 ** n_layers, 8), 4, use_bias=False,
                                           kernel_initializer=conv_init(), name="conv")
        self.norm = make_norm(norm, "norm")
        self.pad2 = tf.keras.layers.ZeroPadding2D(1)
        self.out = tf.keras.layers.Conv2D(1, 4, kernel_initializer=conv_init(), name="logits")

    def call(self, inputs, training=None):
        x, target = inputs
        h = tf.concat([x, target], axis=-1)
        for block in self.blocks:
            h = block(h, training=training)
        h = tf.nn.leaky_relu(self.norm(self.conv(self.pad1(h)), training=training), 0.2)
        return tf.cast(self.out(self.pad2(h)), tf.float32)


def masked_input(image: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """x = y·m: the box pixels of y, background (−1 in [-1, 1] space) elsewhere."""
    return tf.where(mask > 0.5, image, tf.constant(BACKGROUND, image.dtype))


def composite(x: tf.Tensor, generated: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """x̃ = x + G(x)·(1 − m), exact: the box pixels are copied from x, never computed."""
    return tf.where(mask > 0.5, x, tf.cast(generated, x.dtype))


_bce = tf.keras.losses.BinaryCrossentropy(from_logits=True, reduction=tf.keras.losses.Reduction.NONE)


def _bce_mean(labels_value: float, logits: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(_bce(tf.fill(tf.shape(logits), labels_value), logits))


class Pix2Pix(tf.keras.Model):
    """Generator + discriminator trained with the masked composite (keras-io GAN ``train_step`` style).

    Batches are dicts with ``image`` [B,S,S,1] in [-1, 1] and ``mask`` [B,S,S,1] in {0, 1}.
    """

    def __init__(self, cfg: Pix2PixConfig = Pix2PixConfig(), **kwargs):
        super().__init__(**kwargs)
        self.cfg = cfg
        self.generator = UNetGenerator(resolve_num_downs(cfg), cfg.gen_filters, cfg.channels, cfg.norm,
                                       cfg.dropout, cfg.upsample, name="generator")
        self.discriminator = PatchDiscriminator(cfg.disc_filters, cfg.disc_layers, cfg.norm,
                                                name="discriminator")
        self.lambda_l1 = cfg.lambda_l1
        if cfg.l1_region not in L1_REGIONS:
            raise ValueError(f"unknown l1_region {cfg.l1_region!r}; use one of {', '.join(L1_REGIONS)}")
        self.trackers = [tf.keras.metrics.Mean(name=k) for k in LOSSES]

    @property
    def metrics(self):
        """Mean of every loss since the last ``reset_metrics()`` (the training loop's log window)."""
        return list(self.trackers)

    def compile(self, g_optimizer=None, d_optimizer=None, lambda_l1: Optional[float] = None, **kwargs):
        """Adam(lr, β₁ = 0.5) for both nets unless given; ``jit_compile`` defaults to the config's."""
        kwargs.setdefault("jit_compile", self.cfg.jit_compile)
        super().compile(**kwargs)
        self.g_optimizer = g_optimizer or make_optimizer(self.cfg)
        self.d_optimizer = d_optimizer or make_optimizer(self.cfg)
        if lambda_l1 is not None:
            self.lambda_l1 = lambda_l1

    def build_all(self) -> "Pix2Pix":
        """Create every variable (nets and optimizer slots) so a checkpoint restores immediately."""
        s, c = self.cfg.image_size, self.cfg.channels
        z = tf.zeros([1, s, s, c])
        self.generator(z)
        self.discriminator((z, z))
        for opt, net in ((self.g_optimizer, self.generator), (self.d_optimizer, self.discriminator)):
            inner = getattr(opt, "inner_optimizer", opt)
            inner.build(net.trainable_variables)
        return self

    def call(self, inputs, training=False):
        """Composite x̃ for a dict (``image``, ``mask``) batch."""
        x = masked_input(inputs["image"], inputs["mask"])
        return composite(x, self.generator(x, training=training), inputs["mask"])

    def generate(self, image: tf.Tensor, mask: tf.Tensor, sample: bool = True) -> tf.Tensor:
        """x̃ for real images and masks; ``sample`` keeps dropout on (varied draws per input)."""
        x = masked_input(image, mask)
        return composite(x, self.generator(x, training=False, sample=sample), mask)

    def losses_for(self, y: tf.Tensor, mask: tf.Tensor, training: bool = True) -> Dict[str, tf.Tensor]:
        """Forward pass of Algorithm 1: every loss plus the raw prediction and the composite."""
        x = masked_input(y, mask)
        pred = self.generator(x, training=training)
        fake = composite(x, pred, mask)
        if self.cfg.disc_one_call and self.cfg.norm == "instance":
            # D on the real and the fake pair in one call (per-image normalisation keeps them independent).
            logits = self.discriminator((tf.concat([x, x], 0), tf.concat([y, fake], 0)), training=training)
            real_logits, fake_logits = tf.split(logits, 2, axis=0)
        else:
            real_logits = self.discriminator((x, y), training=training)
            fake_logits = self.discriminator((x, fake), training=training)
        g_gan = _bce_mean(1.0, fake_logits)
        # "whole": G also reproduces the box it is given, so its painting continues the box seamlessly.
        l1 = tf.reduce_mean(tf.abs(y - (pred if self.cfg.l1_region == "whole" else fake)))
        d_real = _bce_mean(1.0, real_logits)
        d_fake = _bce_mean(0.0, fake_logits)
        return {"g_loss": g_gan + self.lambda_l1 * l1, "g_gan": g_gan, "l1": l1,
                "d_loss": 0.5 * (d_real + d_fake), "d_real": d_real, "d_fake": d_fake,
                "pred": pred, "fake": fake}

    @staticmethod
    def _apply(opt, tape, loss, variables):
        """Step ``opt`` on ``loss`` (already loss-scaled by ``_scaled`` inside the tape under float16)."""
        grads = tape.gradient(loss, variables)
        if isinstance(opt, tf.keras.mixed_precision.LossScaleOptimizer):
            grads = opt.get_unscaled_gradients(grads)
        opt.apply_gradients(zip(grads, variables))

    @staticmethod
    def _scaled(opt, loss):
        """The loss the tape differentiates: multiplied by the loss scale under a float16 policy."""
        if isinstance(opt, tf.keras.mixed_precision.LossScaleOptimizer):
            return opt.get_scaled_loss(loss)
        return loss

    def train_step(self, batch):
        y = tf.cast(batch["image"], tf.float32)
        mask = tf.cast(batch["mask"], tf.float32)
        # Under tf.distribute the replicas' gradients are summed and Keras sums the returned values:
        # dividing by the replica count makes both the mean over the global batch.
        n = float(tf.distribute.get_strategy().num_replicas_in_sync)
        with tf.GradientTape(persistent=True) as tape:
            out = self.losses_for(y, mask, training=True)
            g_loss = self._scaled(self.g_optimizer, out["g_loss"] / n)
            d_loss = self._scaled(self.d_optimizer, out["d_loss"] / n)
        self._apply(self.g_optimizer, tape, g_loss, self.generator.trainable_variables)
        self._apply(self.d_optimizer, tape, d_loss, self.discriminator.trainable_variables)
        del tape
        for tracker in self.trackers:  # per replica: their mean over the replicas is the global one
            tracker.update_state(out[tracker.name])
        return {k: out[k] / n for k in LOSSES}

    def sample_images(self, batch) -> tf.Tensor:
        """[B, S, 3·S, 1] in [0, 1]: masked input x, composite x̃ and real y side by side."""
        y = tf.cast(batch["image"], tf.float32)
        mask = tf.cast(batch["mask"], tf.float32)
        x = masked_input(y, mask)
        fake = self.generate(y, mask, sample=True)
        return (tf.concat([x, fake, y], axis=2) + 1.0) / 2.0

    def checkpoint_items(self) -> Dict[str, tf.Module]:
        return {"generator": self.generator, "discriminator": self.discriminator,
                "g_optimizer": self.g_optimizer, "d_optimizer": self.d_optimizer}


def make_optimizer(cfg: Pix2PixConfig) -> tf.keras.optimizers.Optimizer:
    """Adam(2e-4, β₁ = 0.5) with the fused update kernel, loss-scaled under a float16 policy; the learning
    rate is constant, then linear to 0 over the second half of the run (``gan.schedule``)."""
    opt = FusedAdam(learning_rate_schedule(cfg), beta_1=cfg.beta_1, epsilon=cfg.adam_epsilon)
    if tf.keras.mixed_precision.global_policy().name == "mixed_float16":
        opt = tf.keras.mixed_precision.LossScaleOptimizer(opt)
    return opt


def build_model(cfg: Pix2PixConfig, strategy: Optional[tf.distribute.Strategy] = None) -> Pix2Pix:
    """A compiled, fully built Pix2Pix under ``strategy`` (the default strategy if None)."""
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        model = Pix2Pix(cfg, name="pix2pix")
        model.compile()
        model.build_all()
    return model
