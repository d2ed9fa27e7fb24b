"""StarGAN baseline (Choi et al., CVPR 2018) for the 7 chest X-ray domains: healthy + the 6 findings.

The paper compares its box-preserving Pix2Pix against an unconditional-in-space StarGAN that
translates whole healthy images into a pathology domain. Architecture and losses follow the
official StarGAN code: a residual generator fed the target domain as one-hot maps, a PatchGAN
critic with an auxiliary domain classifier, WGAN-GP + domain classification + cycle losses.

``n_critic``: one ``train_step`` is one critic update; the generator is updated in the same step
every ``n_critic``-th step (step index i updates G when (i + 1) % n_critic == 0, as the official
loop): ``make_train_function`` compiles both kinds of step and picks one from the step counter, so it
runs under tf.distribute too. Losses of the generator are carried over between its updates so every
step reports all of them.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import tensorflow as tf

from cxr_keras.config import FINDINGS, StarGANConfig
from cxr_keras.models.layers import (  # noqa: F401 (LinearDecay: re-exported)
    InstanceNormalization, LinearDecay, learning_rate_schedule)
from cxr_keras.models.optim import FusedAdam

# Domain 0 is healthy; domains 1..6 are the findings in label-map order (same ids as `label`).
DOMAINS: Tuple[str, ...] = ("Healthy",) + tuple(FINDINGS)
N_DOMAINS = len(DOMAINS)
# What one train step reports (critic, then generator losses), each with a mean tracker in ``metrics``.
LOSSES: Tuple[str, ...] = ("d_loss", "d_real", "d_fake", "d_cls", "d_gp", "g_loss", "g_fake", "g_cls", "g_rec")


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------
def instance_norm() -> InstanceNormalization:
    """StarGAN's instance norm: scale starts at ones, always the moments graph (no fused kernel)."""
    return InstanceNormalization(gamma_initializer="ones", fused=False)


class ResidualBlock(tf.keras.layers.Layer):
    """conv3×3 → IN → ReLU → conv3×3 → IN, plus the identity (the StarGAN bottleneck block)."""

    def __init__(self, filters: int, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.conv1 = tf.keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)
        self.norm1 = instance_norm()
        self.conv2 = tf.keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)
        self.norm2 = instance_norm()

    def call(self, x):
        h = tf.nn.relu(self.norm1(self.conv1(x)))
        return x + self.norm2(self.conv2(h))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


def domain_maps(x: tf.Tensor, c: tf.Tensor) -> tf.Tensor:
    """Concatenate one-hot domains ``c`` [B, D] to images ``x`` [B, H, W, C] as constant maps."""
    shape = tf.shape(x)
    c = tf.cast(c, x.dtype)[:, None, None, :]
    c = tf.tile(c, [1, shape[1], shape[2], 1])
    return tf.concat([x, c], axis=-1)


# --------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------
class StarGANGenerator(tf.keras.Model):
    """7×7 conv, two stride-2 down-samplings, residual blocks with IN, two up-samplings, 7×7 tanh.

    Called as ``G((images, one_hot_domains))``; images in [-1, 1], size divisible by 4.
    """

    def __init__(self, n_domains: int = N_DOMAINS, filters: int = 64, res_blocks: int = 6,
                 channels: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.n_domains, self.filters, self.res_blocks, self.channels = n_domains, filters, res_blocks, channels
        L = tf.keras.layers
        self.stem = [L.Conv2D(filters, 7, padding="same", use_bias=False), instance_norm()]
        self.down = []
        f = filters
        for _ in range(2):
            f *= 2
            self.down.append([L.Conv2D(f, 4, strides=2, padding="same", use_bias=False),
                              instance_norm()])
        self.blocks = [ResidualBlock(f) for _ in range(res_blocks)]
        self.up = []
        for _ in range(2):
            f //= 2
            self.up.append([L.Conv2DTranspose(f, 4, strides=2, padding="same", use_bias=False),
                            instance_norm()])
        self.head = L.Conv2D(channels, 7, padding="same", use_bias=False)

    def call(self, inputs, training=None):
        x, c = inputs
        h = domain_maps(x, c)
        conv, norm = self.stem
        h = tf.nn.relu(norm(conv(h)))
        for conv, norm in self.down:
            h = tf.nn.relu(norm(conv(h)))
        for block in self.blocks:
            h = block(h)
        for conv, norm in self.up:
            h = tf.nn.relu(norm(conv(h)))
        return tf.tanh(tf.cast(self.head(h), tf.float32))  # float32 out under a mixed policy too


class StarGANDiscriminator(tf.keras.Model):
    """PatchGAN critic: ``layers`` stride-2 4×4 convs (LeakyReLU 0.01), then two heads.

    Returns ``(src, cls)``: the critic map [B, S/2^L, S/2^L, 1] (no sigmoid: WGAN) and domain
    logits [B, D] from a conv whose kernel covers the whole final feature map.
    """

    def __init__(self, image_size: int, n_domains: int = N_DOMAINS, filters: int = 64,
                 layers: int = 6, **kwargs):
        super().__init__(**kwargs)
        if layers < 1 or image_size % (2 ** layers):
            raise ValueError(
                f"StarGAN discriminator: image_size {image_size} must be divisible by "
                f"2**disc_layers = {2 ** max(layers, 0)} (choose fewer disc_layers)")
        self.image_size, self.n_domains, self.filters, self.n_layers = image_size, n_domains, filters, layers
        L = tf.keras.layers
        self.convs = [L.Conv2D(filters * 2 ** i, 4, strides=2, padding="same") for i in range(layers)]
        self.src_head = L.Conv2D(1, 3, padding="same", use_bias=False)
        k = image_size // 2 ** layers
        self.cls_head = L.Conv2D(n_domains, k, padding="valid", use_bias=False)

    def call(self, x, training=None):
        h = x
        for conv in self.convs:
            h = tf.nn.leaky_relu(conv(h), alpha=0.01)
        src = tf.cast(self.src_head(h), tf.float32)  # the losses stay float32 under a mixed policy
        cls = tf.reshape(tf.cast(self.cls_head(h), tf.float32), [-1, self.n_domains])
        return src, cls


# --------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------
def gradient_penalty(critic: Callable[[tf.Tensor], tf.Tensor], real: tf.Tensor, fake: tf.Tensor,
                     alpha: tf.Tensor) -> tf.Tensor:
    """WGAN-GP: mean over samples of (‖∇ₓ Σ critic(x̂)‖₂ − 1)², x̂ = α·real + (1 − α)·fake.

    As the official code, the gradient of the summed critic map (all patches) is taken per sample.
    """
    real, fake = tf.convert_to_tensor(real, tf.float32), tf.convert_to_tensor(fake, tf.float32)
    alpha = tf.convert_to_tensor(alpha, tf.float32)
    x_hat = alpha * real + (1.0 - alpha) * fake
    with tf.GradientTape() as tape:
        tape.watch(x_hat)
        out = critic(x_hat)
    grad = tape.gradient(out, x_hat)
    grad = tf.reshape(grad, [tf.shape(grad)[0], -1])
    norm = tf.sqrt(tf.reduce_sum(tf.square(grad), axis=1) + 1e-12)
    return tf.reduce_mean(tf.square(norm - 1.0))


def classification_loss(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Softmax cross-entropy over domains (the domains are mutually exclusive, as RaFD's)."""
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.int32), logits=logits))


def make_optimizers(cfg: StarGANConfig) -> Tuple[tf.keras.optimizers.Optimizer, tf.keras.optimizers.Optimizer]:
    """Adam(lr, β₁, β₂) for G and D with the run's schedule (``gan.schedule``: linear decay over the last
    (1 − decay_start_frac) of training, kept continuous by a resume that changes the length).

    D is stepped every train step; G every ``n_critic``-th, so its schedule counts G updates.
    """
    def adam(step_scale):
        sched = learning_rate_schedule(cfg, step_scale)
        return FusedAdam(sched, beta_1=cfg.beta_1, beta_2=cfg.beta_2, epsilon=cfg.adam_epsilon,
                         jit_compile=False)

    return adam(max(cfg.n_critic, 1)), adam(1)


# --------------------------------------------------------------------------------------------
# The GAN
# --------------------------------------------------------------------------------------------
class StarGAN(tf.keras.Model):
    """Generator + critic trained with WGAN-GP, domain classification and cycle reconstruction.

    ``train_step(batch)`` takes ``{"image": [B,S,S,C] in [-1,1], "label": [B] domain ids 0..6}``
    (a ``(batch,)`` tuple from ``fit``/``train_on_batch`` works too) and returns the losses.
    Target domains are drawn uniformly per sample from a checkpointed ``tf.random.Generator``
    (the official code permutes the batch's labels, which degenerates for batch sizes 1–2).
    """

    def __init__(self, cfg: StarGANConfig = StarGANConfig(), n_domains: int = N_DOMAINS, seed: int = 0,
                 **kwargs):
        super().__init__(**kwargs)
        if cfg.image_size % 4:
            raise ValueError(f"StarGAN: image_size {cfg.image_size} must be divisible by 4")
        if cfg.n_critic < 1:
            raise ValueError(f"StarGAN: n_critic must be >= 1, got {cfg.n_critic}")
        self.cfg = cfg
        self.n_domains = n_domains
        self.generator = StarGANGenerator(n_domains, cfg.gen_filters, cfg.res_blocks, cfg.channels,
                                          name="generator")
        self.discriminator = StarGANDiscriminator(cfg.image_size, n_domains, cfg.disc_filters,
                                                  cfg.disc_layers, name="discriminator")
        # Build both networks now so optimizer slots can be created before tracing (tf.cond).
        x = tf.zeros([1, cfg.image_size, cfg.image_size, cfg.channels])
        self.generator((x, tf.zeros([1, n_domains])))
        self.discriminator(x)
        # Under tf.distribute every replica steps the counter alike (first replica's value kept) and the
        # carried-over generator losses hold the mean over the replicas.
        self.step_counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="step",
                                        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.rng = tf.random.Generator.from_seed(seed)  # checkpointed; its state seeds ``_draws`` (never advanced)
        self.last_g = {k: tf.Variable(0.0, trainable=False, name=f"last_{k}", aggregation=tf.VariableAggregation.MEAN)
                       for k in ("g_loss", "g_fake", "g_cls", "g_rec")}
        self.g_optimizer = None
        self.d_optimizer = None
        self.trackers = [tf.keras.metrics.Mean(name=k) for k in LOSSES]

    # Keras needs a forward pass; a StarGAN "prediction" is a translation.
    def call(self, inputs, training=None):
        x, c = inputs
        return self.generator((x, c), training=training)

    def compile(self, g_optimizer=None, d_optimizer=None, **kwargs):
        """Attach the two Adam optimizers (defaults from the config) and build their slots."""
        super().compile(**kwargs)
        if g_optimizer is None or d_optimizer is None:
            g_def, d_def = make_optimizers(self.cfg)
            g_optimizer = g_optimizer or g_def
            d_optimizer = d_optimizer or d_def
        self.g_optimizer, self.d_optimizer = g_optimizer, d_optimizer
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)

    @property
    def metrics(self):
        """Mean of every loss since the last ``reset_metrics()`` (the training loop's log window)."""
        return list(self.trackers)

    # ---------------------------------------------------------------------------------------
    def translate(self, images: tf.Tensor, domains) -> tf.Tensor:
        """G(x, c) for integer target domains (scalar or [B]); returns images in [-1, 1]."""
        images = tf.convert_to_tensor(images, tf.float32)
        domains = tf.broadcast_to(tf.cast(domains, tf.int32), [tf.shape(images)[0]])
        return self.generator((images, tf.one_hot(domains, self.n_domains)), training=False)

    def classify(self, images: tf.Tensor) -> tf.Tensor:
        """Domain logits [B, D] of the auxiliary classifier."""
        return self.discriminator(tf.convert_to_tensor(images, tf.float32), training=False)[1]

    def reconstruction_error(self, images, labels, targets) -> tf.Tensor:
        """Mean |x − G(G(x, c_trg), c_org)|: how well a round trip through ``targets`` comes back."""
        fake = self.translate(images, targets)
        return tf.reduce_mean(tf.abs(tf.convert_to_tensor(images, tf.float32) - self.translate(fake, labels)))

    # ---------------------------------------------------------------------------------------
    def _critic_src(self, x):
        return self.discriminator(x, training=True)[0]

    def _draws(self, b):
        """Target domains and gradient-penalty mixing weights of this replica's ``b`` samples: drawn for
        the whole global batch from (checkpointed seed, step) and sliced, so every replica count draws
        the same numbers per sample as one device, and a resumed run the same as an uninterrupted one."""
        ctx = tf.distribute.get_replica_context()
        n, r = (ctx.num_replicas_in_sync, ctx.replica_id_in_sync_group) if ctx else (1, 0)
        seed = tf.stack([self.rng.state[0], self.step_counter.read_value()])
        seeds = tf.random.experimental.stateless_split(seed, 2)
        first = tf.cast(r, tf.int32) * b
        trg = tf.random.stateless_uniform([b * n], seeds[0], 0, self.n_domains, dtype=tf.int32)
        alpha = tf.random.stateless_uniform([b * n, 1, 1, 1], seeds[1])
        return trg[first:first + b], alpha[first:first + b]

    def _g_update(self, x, c_org, c_trg, trg):
        cfg = self.cfg
        n = tf.distribute.get_strategy().num_replicas_in_sync  # replicas' gradients are summed
        with tf.GradientTape() as tape:
            fake = self.generator((x, c_trg), training=True)
            src, cls = self.discriminator(fake, training=True)
            g_fake = -tf.reduce_mean(src)
            g_cls = classification_loss(trg, cls)
            rec = self.generator((fake, c_org), training=True)
            g_rec = tf.reduce_mean(tf.abs(x - rec))
            g_loss = g_fake + cfg.lambda_rec * g_rec + cfg.lambda_cls * g_cls
            replica_share = g_loss / n
        grads = tape.gradient(replica_share, self.generator.trainable_variables)
        self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_variables))
        values = {"g_loss": g_loss, "g_fake": g_fake, "g_cls": g_cls, "g_rec": g_rec}
        for k, v in values.items():
            self.last_g[k].assign(v)
        return tuple(self.last_g[k].read_value() for k in ("g_loss", "g_fake", "g_cls", "g_rec"))

    def _g_skip(self):
        return tuple(self.last_g[k].read_value() for k in ("g_loss", "g_fake", "g_cls", "g_rec"))

    # No Python control flow on tensors here (tf.cond is explicit), so autograph is skipped: it
    # would only spend seconds rewriting every Keras layer's source at each first trace.
    @tf.autograph.experimental.do_not_convert
    def train_step(self, data, update_g: Optional[bool] = None):
        """One critic step, and the generator's when due: decided by ``tf.cond`` on the step counter
        (``update_g=None``, one device) or by the caller (``make_train_function``: under tf.distribute
        no optimizer may step inside a ``tf.cond``). Losses are divided by the replica count, as the
        replicas' gradients and Keras' returned values are summed."""
        if self.d_optimizer is None:
            raise RuntimeError("StarGAN: call compile() before training")
        batch = data[0] if isinstance(data, (tuple, list)) else data
        cfg = self.cfg
        n = tf.distribute.get_strategy().num_replicas_in_sync
        x = tf.convert_to_tensor(batch["image"], tf.float32)
        label = tf.cast(batch["label"], tf.int32)
        trg, alpha = self._draws(tf.shape(x)[0])
        c_org = tf.one_hot(label, self.n_domains)
        c_trg = tf.one_hot(trg, self.n_domains)

        # Critic update: real vs fake (WGAN), gradient penalty, domain classification of reals.
        fake = tf.stop_gradient(self.generator((x, c_trg), training=True))
        with tf.GradientTape() as tape:
            src_real, cls_real = self.discriminator(x, training=True)
            d_real = -tf.reduce_mean(src_real)
            d_cls = classification_loss(label, cls_real)
            src_fake, _ = self.discriminator(fake, training=True)
            d_fake = tf.reduce_mean(src_fake)
            d_gp = gradient_penalty(self._critic_src, x, fake, alpha)
            d_loss = d_real + d_fake + cfg.lambda_cls * d_cls + cfg.lambda_gp * d_gp
            replica_share = d_loss / n
        grads = tape.gradient(replica_share, self.discriminator.trainable_variables)
        self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_variables))

        # Generator update every n_critic-th step.
        if update_g is None:
            g_loss, g_fake, g_cls, g_rec = tf.cond(
                self._g_due(), lambda: self._g_update(x, c_org, c_trg, trg), self._g_skip)
        else:
            g_loss, g_fake, g_cls, g_rec = self._g_update(x, c_org, c_trg, trg) if update_g else self._g_skip()
        self.step_counter.assign_add(1)
        values = dict(zip(LOSSES, (d_loss, d_real, d_fake, d_cls, d_gp, g_loss, g_fake, g_cls, g_rec)))
        for tracker in self.trackers:  # per replica: their mean over the replicas is the global one
            tracker.update_state(values[tracker.name])
        return {k: v / n for k, v in values.items()}

    def _g_due(self):
        """True at the steps that update the generator: step index i with (i + 1) % n_critic == 0."""
        return tf.equal((self.step_counter + 1) % self.cfg.n_critic, 0)

    def make_train_function(self, force: bool = False):
        """Keras' compiled step (``fit``, ``train_on_batch``, the training loop) as two ``tf.function``s,
        critic only and critic + generator, picked per step from the step counter: under tf.distribute on
        CPUs an optimizer step inside ``tf.cond`` is refused (its gradient aggregation is a merge call)."""
        if self.train_function is not None and not force:
            return self.train_function
        strategy = self.distribute_strategy

        def compiled(update_g: bool):
            def replica_step(data):
                out = self.train_step(data, update_g=update_g)
                with tf.control_dependencies(list(out.values())):
                    self._train_counter.assign_add(1)
                return out

            def step(iterator):
                out = strategy.run(replica_step, args=(next(iterator),))
                return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in out.items()}
            return step if self.run_eagerly else tf.function(step, reduce_retracing=True)

        critic, both = compiled(False), compiled(True)

        def train_function(iterator):
            return (both if bool(self._g_due().numpy()) else critic)(iterator)

        self.train_function = train_function
        return train_function

    def sample_images(self, batch, max_inputs: int = 4) -> tf.Tensor:
        """[b, S, 8·S, 1] in [0, 1] for the first ``max_inputs`` images: input, then all 7 domains."""
        x = tf.convert_to_tensor(batch["image"], tf.float32)[:max_inputs]
        cols = [x] + [self.translate(x, d) for d in range(self.n_domains)]
        return (tf.concat(cols, axis=2) + 1.0) / 2.0

    def checkpoint_items(self) -> Dict[str, tf.Module]:
        """Everything a resumed run needs: both nets, both optimizers, step counter, RNG state."""
        return {"generator": self.generator, "discriminator": self.discriminator,
                "g_optimizer": self.g_optimizer, "d_optimizer": self.d_optimizer,
                "stargan_step": self.step_counter, "rng": self.rng, **{f"last_{k}": v for k, v in self.last_g.items()}}


def build_stargan(cfg: StarGANConfig = StarGANConfig(), seed: int = 0, n_domains: int = N_DOMAINS) -> StarGAN:
    """A compiled StarGAN with the config's optimizers."""
    model = StarGAN(cfg, n_domains=n_domains, seed=seed)
    model.compile()
    return model


def build_model(cfg: StarGANConfig, strategy: Optional[tf.distribute.Strategy] = None) -> StarGAN:
    """A compiled, fully built StarGAN under ``strategy`` (float32 or mixed_bfloat16: WGAN-GP's double
    backprop is not loss-scaled here, so float16 is refused rather than silently unstable)."""
    policy = tf.keras.mixed_precision.global_policy().name
    if policy not in ("float32", "mixed_bfloat16"):
        raise ValueError(f"StarGAN trains in float32 or mixed_bfloat16, not the {policy!r} policy "
                         f"(use --precision bfloat16 or float32)")
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        return build_stargan(cfg)
