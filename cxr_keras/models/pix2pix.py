"""Pix2Pix that never touches the pathology box (Algorithm 1 of Xing, Ge et al., MICCAI 2019).

Images live in [-1, 1]. With y the real image and m the box mask (1 inside the box):
    x  = y·m in [0, 1] intensity space, i.e. ``tf.where(m > 0.5, y, -1)`` here (black outside the box)
    x̃ = x + G(x)·(1 − m), computed as ``tf.where(m > 0.5, x, G(x))`` so the box is kept bit for bit
D sees (x, x̃) against (x, y); the generator loss is L_GAN + λ·|y − x̃|₁, so G is graded only on the
region it paints (inside the box the composite equals y exactly and no gradient reaches G).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Dict, Optional

import tensorflow as tf

from cxr_keras.config import Pix2PixConfig
from cxr_keras.models.layers import DownBlock, UpBlock, conv_init, make_norm
from cxr_keras.models.optim import FusedAdam

BACKGROUND = -1.0  # value of the masked-out pixels in [-1, 1] space (0 in [0, 1] space)


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
                 dropout: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        if num_downs < 2:
            raise ValueError(f"num_downs must be >= 2, got {num_downs}")
        self.num_downs = num_downs
        widths = [filters * min(2 ** i, 8) for i in range(num_downs)]
        # Outermost (raw image) and innermost (1×1 at 256) levels carry no normalisation.
        self.downs = [DownBlock(w, norm, use_norm=0 < i < num_downs - 1, name=f"down{i}")
                      for i, w in enumerate(widths)]
        self.ups = [UpBlock(widths[num_downs - 2 - j], norm, dropout if j < 3 else 0.0, name=f"up{j}")
                    for j in range(num_downs - 1)]
        self.last = tf.keras.layers.Conv2DTranspose(channels, 4, strides=2, padding="same",
                                                    kernel_initializer=conv_init(), name="last")

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
                                       cfg.dropout, name="generator")
        self.discriminator = PatchDiscriminator(cfg.disc_filters, cfg.disc_layers, cfg.norm,
                                                name="discriminator")
        self.lambda_l1 = cfg.lambda_l1

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
        l1 = tf.reduce_mean(tf.abs(y - fake))
        d_real = _bce_mean(1.0, real_logits)
        d_fake = _bce_mean(0.0, fake_logits)
        return {"g_loss": g_gan + self.lambda_l1 * l1, "g_gan": g_gan, "l1": l1,
                "d_loss": 0.5 * (d_real + d_fake), "d_real": d_real, "d_fake": d_fake,
                "pred": pred, "fake": fake}

    @staticmethod
    def _apply(opt, tape, loss, variables):
        if isinstance(opt, tf.keras.mixed_precision.LossScaleOptimizer):
            grads = opt.get_unscaled_gradients(tape.gradient(opt.get_scaled_loss(loss), variables))
        else:
            grads = tape.gradient(loss, variables)
        opt.apply_gradients(zip(grads, variables))

    def train_step(self, batch):
        y = tf.cast(batch["image"], tf.float32)
        mask = tf.cast(batch["mask"], tf.float32)
        # Under tf.distribute the replicas' gradients are summed and Keras sums the returned values:
        # dividing by the replica count makes both the mean over the global batch.
        n = float(tf.distribute.get_strategy().num_replicas_in_sync)
        with tf.GradientTape(persistent=True) as tape:
            out = self.losses_for(y, mask, training=True)
            g_loss, d_loss = out["g_loss"] / n, out["d_loss"] / n
        self._apply(self.g_optimizer, tape, g_loss, self.generator.trainable_variables)
        self._apply(self.d_optimizer, tape, d_loss, self.discriminator.trainable_variables)
        del tape
        return {k: out[k] / n for k in ("g_loss", "g_gan", "l1", "d_loss", "d_real", "d_fake")}

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
    """Adam(2e-4, β₁ = 0.5) with the fused update kernel, loss-scaled under a float16 policy."""
    opt = FusedAdam(cfg.learning_rate, beta_1=cfg.beta_1)
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


# -- presets -----------------------------------------------------------------------------------------
def config_pix2pix(pipeline_cfg) -> Pix2PixConfig:
    """The ``pix2pix`` stage config of a preset: annotated pairs only."""
    return dataclasses.replace(pipeline_cfg.pix2pix, use_healthy=False, augmentation=pipeline_cfg.augment)


def config_pix2pix_n(pipeline_cfg) -> Pix2PixConfig:
    """The ``pix2pix_n`` stage config of a preset: annotated pairs plus healthy images with random boxes."""
    return dataclasses.replace(pipeline_cfg.pix2pix, use_healthy=True, augmentation=pipeline_cfg.augment)


# -- data --------------------------------------------------------------------------------------------
def record_size(path: Path) -> int:
    """Side length of the first image of a pair record (with a clear error for an empty file)."""
    from cxr_keras.records.pairs import parse_pair

    for raw in tf.data.TFRecordDataset(str(path)).take(1):
        return int(parse_pair(raw)["image"].shape[0])
    raise ValueError(f"{path}: pair record is empty")


def make_dataset(records_dir, cfg: Pix2PixConfig, seed: int = 0, split: str = "train") -> tf.data.Dataset:
    """Infinite, shuffled batches {image, mask} of the training pairs (plus healthy ones for Pix2Pix-N).

    Shuffling works on the serialized records (cheap), so annotated and healthy images are mixed
    uniformly; augmentation and the healthy random boxes are drawn after ``repeat``, fresh every epoch.
    """
    from cxr_keras.records.augment import augment_pair
    from cxr_keras.records.boxes import nih_box_sizes, random_box_mask
    from cxr_keras.records.pairs import parse_pair, resize_pair

    records_dir = Path(records_dir)
    files = [records_dir / f"pairs_{split}.tfrecord"]
    if cfg.use_healthy:
        files.append(records_dir / f"healthy_{split}.tfrecord")
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"{f}: record not found (run scripts/make_tfrecords.py)")
    size = cfg.image_size
    resize = record_size(files[0]) != size
    sizes = tf.constant(nih_box_sizes(size), tf.int32) if cfg.use_healthy else None

    def prepare(raw, seeds):
        ex = parse_pair(raw)
        if resize:
            ex = resize_pair(ex, size)
        if cfg.augment:
            ex = augment_pair(ex, cfg.augmentation, seeds[0])
        image, mask = ex["image"], ex["mask"]
        if cfg.use_healthy:
            box_mask, _ = random_box_mask(sizes, size, seeds[1])
            mask = tf.cond(ex["source"] == b"healthy", lambda: box_mask, lambda: mask)
        return {"image": tf.ensure_shape(image, [size, size, 1]), "mask": tf.ensure_shape(mask, [size, size, 1])}

    ds = tf.data.TFRecordDataset([str(f) for f in files])
    ds = ds.shuffle(cfg.shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat()
    seeds = tf.data.Dataset.random(seed=seed + 1).batch(4).map(lambda s: tf.reshape(s, [2, 2]))
    ds = tf.data.Dataset.zip((ds, seeds)).map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(cfg.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
