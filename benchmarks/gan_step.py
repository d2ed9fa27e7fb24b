#!/usr/bin/env python
"""Train-step throughput (images/s) of our Pix2Pix next to a tutorial-style tf.keras pix2pix step.

Same U-Net-256 generator and 70×70 PatchGAN (1 channel, Adam 2e-4/0.5, λ = 100) but for the decoder's
upsampling, random tensors, same process; implementations are timed in alternating rounds and the medians
compared. ``ours`` (every ``ours_*``, and the ``--strategies`` Pix2Pix) is the presets' Pix2Pix, with
PIX2PIX_FIXES of cxr_keras/config.py: ``upsample="resize"`` (bilinear ×2 + 3×3 conv) and whole-image L1.
The tutorial keeps pix2pix's 4×4 stride-2 transposed convolutions; ``ours_transpose`` times those in our step.
    python benchmarks/gan_step.py                       # 256×256, batch 1 and 4, float32 and bfloat16
    python benchmarks/gan_step.py --batches 1 --variants ours ours_xla tutorial
    python benchmarks/gan_step.py --strategies one mirrored multi_worker --batches 4
The last one times the training loop's distributed step (cxr_keras.gan.distribute) in child processes: one
device, the CPU split into two logical devices (MirroredStrategy), and two local worker processes on
127.0.0.1 (MultiWorkerMirroredStrategy), each step one global batch: the overhead of the distributed path.
The process runs with the package's settings (importing cxr_keras turns TensorFlow's oneDNN CPU kernels
on); a variant name ending in ``@tf_defaults`` (e.g. ``tutorial@tf_defaults``, the tutorial as a user
runs it) is timed in a child process with TensorFlow's default settings instead, in the same rounds.
Other GANs plug in with ``register(name, make_step)``: ``make_step(image_size, batch) -> step()``,
a zero-argument callable that runs one synchronous training step (see ``ours`` below).
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

import argparse
import json
import os
import socket
import statistics
import subprocess
import tempfile
import time
from typing import Callable, Dict

TF_DEFAULTS = "@tf_defaults"
ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"


def onednn_enabled() -> bool:
    from tensorflow.python.util import _pywrap_util_port
    return bool(_pywrap_util_port.IsMklEnabled())


if "--tf-defaults" in sys.argv:
    os.environ.pop(ONEDNN_ENV, None)  # a worker measuring TensorFlow as installed, untouched
    import tensorflow as tf
    # TensorFlow reads the variable once, lazily: latch its own default now, before a variant imports
    # cxr_keras (which would set the variable).
    onednn_enabled()
else:
    import cxr_keras  # noqa: F401  the package's process settings (oneDNN kernels on), before TensorFlow
    import tensorflow as tf

VARIANTS: Dict[str, Callable[[int, int], Callable[[], None]]] = {}


def register(name: str, make_step: Callable[[int, int], Callable[[], None]]) -> None:
    """Add an implementation to benchmark (e.g. the StarGAN helper's step)."""
    VARIANTS[name] = make_step


def random_pairs(size: int, batch: int) -> tf.data.Dataset:
    image = tf.random.uniform([batch, size, size, 1], -1.0, 1.0, seed=1)
    mask = tf.zeros([batch, size, size, 1]) + tf.pad(tf.ones([batch, size // 2, size // 2, 1]),
                                                      [[0, 0], [size // 4, size // 4], [size // 4, size // 4], [0, 0]])
    return tf.data.Dataset.from_tensors({"image": image, "mask": mask}).repeat().prefetch(2)


# -- ours: cxr_keras Pix2Pix through the training loop's compiled step ---------------------------------
def pix2pix_config(**kw):
    """The presets' Pix2Pix (PIX2PIX_FIXES: resize-convolution decoder, whole-image L1), ``kw`` on top."""
    from cxr_keras.config import PIX2PIX_FIXES, Pix2PixConfig
    return Pix2PixConfig(**{**PIX2PIX_FIXES, **kw})


def _ours(jit: bool, norm: str = "instance", one_call: bool = False, stock_adam: bool = False,
          policy: str = "float32", **fields):
    def make(size: int, batch: int):
        from cxr_keras.gan.runs import dtype_policy
        from cxr_keras.models.pix2pix import Pix2Pix, build_model

        cfg = pix2pix_config(image_size=size, batch_size=batch, jit_compile=jit, norm=norm,
                             disc_one_call=one_call, **fields)
        if stock_adam:  # tf.keras Adam's element-wise update instead of the fused kernel (ablation)
            model = Pix2Pix(cfg)
            model.compile(*[tf.keras.optimizers.Adam(cfg.learning_rate, beta_1=cfg.beta_1) for _ in range(2)])
            model.build_all()
        else:
            with dtype_policy(policy):  # the Keras policy the networks compute in
                model = build_model(cfg)
        it = iter(random_pairs(size, batch))
        fn = model.make_train_function()
        return lambda: float(fn(it)["g_loss"])  # the loop reads the losses every step too
    return make


register("ours", _ours(False))
register("ours_xla", _ours(True))
register("ours_batchnorm", _ours(False, "batch"))
register("ours_one_d_call", _ours(False, one_call=True))
register("ours_stock_adam", _ours(False, stock_adam=True))
register("ours_bf16", _ours(False, policy="mixed_bfloat16"))  # the default on CPUs with native bf16
register("ours_transpose", _ours(False, upsample="transpose"))  # the tutorial's decoder (runs before the fix)


# -- the tutorial way (tensorflow.org/tutorials/generative/pix2pix), 1 channel ------------------------
def _downsample(filters, size, apply_batchnorm=True):
    init = tf.random_normal_initializer(0.0, 0.02)
    result = tf.keras.Sequential()
    result.add(tf.keras.layers.Conv2D(filters, size, strides=2, padding="same", kernel_initializer=init,
                                      use_bias=False))
    if apply_batchnorm:
        result.add(tf.keras.layers.BatchNormalization())
    result.add(tf.keras.layers.LeakyReLU())
    return result


def _upsample(filters, size, apply_dropout=False):
    init = tf.random_normal_initializer(0.0, 0.02)
    result = tf.keras.Sequential()
    result.add(tf.keras.layers.Conv2DTranspose(filters, size, strides=2, padding="same", kernel_initializer=init,
                                               use_bias=False))
    result.add(tf.keras.layers.BatchNormalization())
    if apply_dropout:
        result.add(tf.keras.layers.Dropout(0.5))
    result.add(tf.keras.layers.ReLU())
    return result


def tutorial_generator(size: int = 256):
    inputs = tf.keras.layers.Input(shape=[size, size, 1])
    down_stack = [_downsample(64, 4, apply_batchnorm=False), _downsample(128, 4), _downsample(256, 4),
                  _downsample(512, 4), _downsample(512, 4), _downsample(512, 4), _downsample(512, 4),
                  _downsample(512, 4)]
    up_stack = [_upsample(512, 4, apply_dropout=True), _upsample(512, 4, apply_dropout=True),
                _upsample(512, 4, apply_dropout=True), _upsample(512, 4), _upsample(256, 4), _upsample(128, 4),
                _upsample(64, 4)]
    last = tf.keras.layers.Conv2DTranspose(1, 4, strides=2, padding="same",
                                           kernel_initializer=tf.random_normal_initializer(0.0, 0.02),
                                           activation="tanh")
    x = inputs
    skips = []
    for down in down_stack:
        x = down(x)
        skips.append(x)
    for up, skip in zip(up_stack, reversed(skips[:-1])):
        x = up(x)
        x = tf.keras.layers.Concatenate()([x, skip])
    return tf.keras.Model(inputs=inputs, outputs=last(x))


def tutorial_discriminator(size: int = 256):
    init = tf.random_normal_initializer(0.0, 0.02)
    inp = tf.keras.layers.Input(shape=[size, size, 1], name="input_image")
    tar = tf.keras.layers.Input(shape=[size, size, 1], name="target_image")
    x = tf.keras.layers.concatenate([inp, tar])
    down1 = _downsample(64, 4, False)(x)
    down2 = _downsample(128, 4)(down1)
    down3 = _downsample(256, 4)(down2)
    zero_pad1 = tf.keras.layers.ZeroPadding2D()(down3)
    conv = tf.keras.layers.Conv2D(512, 4, strides=1, kernel_initializer=init, use_bias=False)(zero_pad1)
    batchnorm1 = tf.keras.layers.BatchNormalization()(conv)
    leaky_relu = tf.keras.layers.LeakyReLU()(batchnorm1)
    zero_pad2 = tf.keras.layers.ZeroPadding2D()(leaky_relu)
    last = tf.keras.layers.Conv2D(1, 4, strides=1, kernel_initializer=init)(zero_pad2)
    return tf.keras.Model(inputs=[inp, tar], outputs=last)


def tutorial(size: int, batch: int):
    generator, discriminator = tutorial_generator(size), tutorial_discriminator(size)
    loss_object = tf.keras.losses.BinaryCrossentropy(from_logits=True)
    g_opt = tf.keras.optimizers.Adam(2e-4, beta_1=0.5)
    d_opt = tf.keras.optimizers.Adam(2e-4, beta_1=0.5)

    @tf.function
    def train_step(input_image, target):
        with tf.GradientTape() as gen_tape, tf.GradientTape() as disc_tape:
            gen_output = generator(input_image, training=True)
            disc_real_output = discriminator([input_image, target], training=True)
            disc_generated_output = discriminator([input_image, gen_output], training=True)
            gan_loss = loss_object(tf.ones_like(disc_generated_output), disc_generated_output)
            l1_loss = tf.reduce_mean(tf.abs(target - gen_output))
            gen_total_loss = gan_loss + 100 * l1_loss
            real_loss = loss_object(tf.ones_like(disc_real_output), disc_real_output)
            generated_loss = loss_object(tf.zeros_like(disc_generated_output), disc_generated_output)
            disc_loss = real_loss + generated_loss
        g_opt.apply_gradients(zip(gen_tape.gradient(gen_total_loss, generator.trainable_variables),
                                  generator.trainable_variables))
        d_opt.apply_gradients(zip(disc_tape.gradient(disc_loss, discriminator.trainable_variables),
                                  discriminator.trainable_variables))
        return gen_total_loss

    it = iter(random_pairs(size, batch).map(lambda b: (b["image"] * b["mask"], b["image"])))

    def step():
        x, y = next(it)
        return float(train_step(x, y))
    return step


register("tutorial", tutorial)


# -- StarGAN baseline (cxr_keras.models.stargan) through the training loop's compiled step -------------
def stargan(size: int, batch: int, policy: str = "float32"):
    """One call = one full cycle of n_critic train steps (n_critic critic updates + 1 generator update),
    so the images/s average the cheap critic-only steps and the expensive generator step fairly."""
    from cxr_keras.config import StarGANConfig
    from cxr_keras.gan.runs import dtype_policy
    from cxr_keras.models.stargan import N_DOMAINS, build_model

    cfg = StarGANConfig(image_size=size, batch_size=batch)
    with dtype_policy(policy):
        model = build_model(cfg)
    image = tf.random.uniform([batch, size, size, 1], -1.0, 1.0, seed=1)
    label = tf.random.uniform([batch], 0, N_DOMAINS, dtype=tf.int64, seed=2)
    it = iter(tf.data.Dataset.from_tensors({"image": image, "label": label}).repeat().prefetch(2))
    fn = model.make_train_function()

    def step():
        for _ in range(cfg.n_critic):
            out = fn(it)
        return float(out["d_loss"])
    step.batches_per_call = cfg.n_critic
    return step


register("stargan", stargan)
register("stargan_bf16", lambda size, batch: stargan(size, batch, "mixed_bfloat16"))


def worker_step(name: str, size: int, batch: int) -> Callable[[], None]:
    """A step callable that runs variant ``name`` in a child process with TensorFlow's default settings.

    The child builds the variant, says ``ready``, then runs one step per ``step`` line it reads.
    """
    env = {k: v for k, v in os.environ.items() if k != ONEDNN_ENV}
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen([sys.executable, __file__, "--worker", name, "--image-size", str(size),
                             "--batches", str(batch), "--tf-defaults"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, env=env)

    def expect(word: str) -> list:
        line = proc.stdout.readline().split()
        if not line or line[0] != word:
            proc.kill()
            log.seek(0)
            raise RuntimeError(f"benchmark worker {name}{TF_DEFAULTS} failed:\n{log.read()[-3000:]}")
        return line[1:]

    per_call, onednn = map(int, expect("ready"))

    def step():
        proc.stdin.write("step\n")
        proc.stdin.flush()
        expect("done")
    step.batches_per_call, step.onednn = per_call, bool(onednn)
    step.close = lambda: (proc.stdin.close(), proc.wait(), log.close())
    return step


def run_worker(name: str, size: int, batch: int) -> None:
    step = VARIANTS[name](size, batch)
    print("ready", getattr(step, "batches_per_call", 1), int(onednn_enabled()), flush=True)
    for _ in sys.stdin:
        step()
        print("done", flush=True)


def make_step(name: str, size: int, batch: int) -> Callable[[], None]:
    if name.endswith(TF_DEFAULTS):
        return worker_step(name[:-len(TF_DEFAULTS)], size, batch)
    return VARIANTS[name](size, batch)


def measure(step: Callable[[], None], n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        step()
    return time.perf_counter() - t


# -- the distributed path: one device, two logical devices, two local workers ---------------------------
STRATEGIES = ("one", "mirrored", "multi_worker")


def random_domains(size: int, batch: int) -> tf.data.Dataset:
    from cxr_keras.models.stargan import N_DOMAINS

    image = tf.random.uniform([batch, size, size, 1], -1.0, 1.0, seed=1)
    label = tf.random.uniform([batch], 0, N_DOMAINS, dtype=tf.int64, seed=2)
    return tf.data.Dataset.from_tensors({"image": image, "label": label}).repeat().prefetch(2)


def scaling_step(kind: str, model: str, size: int, batch: int, policy: str) -> Callable[[], None]:
    """The training loop's step (one global batch) under strategy ``kind``, in a process of its own."""
    from cxr_keras.gan import distribute

    strategy = tf.distribute.get_strategy() if kind == "one" else distribute.make_strategy(
        kind, 2 if kind == "mirrored" else None)  # before any other TensorFlow work
    from cxr_keras.config import StarGANConfig
    from cxr_keras.gan.runs import dtype_policy
    from cxr_keras.models import pix2pix, stargan as stargan_model

    with dtype_policy(policy):
        if model == "stargan":
            net = stargan_model.build_model(StarGANConfig(image_size=size, batch_size=batch), strategy)
        else:
            net = pix2pix.build_model(pix2pix_config(image_size=size, batch_size=batch), strategy)
    data = random_domains(size, batch) if model == "stargan" else random_pairs(size, batch)
    it = iter(distribute.distribute_batches(strategy, data))
    fn = net.make_train_function()
    return lambda: float(fn(it)["d_loss"])


def run_scaling_worker(a) -> None:
    from cxr_keras.gan.precision import POLICIES

    step = scaling_step(a.scaling_worker, a.scaling_model, a.image_size, a.batches[0], POLICIES[a.precision])
    for _ in range(a.warmup):
        step()
    rates = [a.steps * a.batches[0] / measure(step, a.steps) for _ in range(a.rounds)]
    print("rates", *rates, flush=True)


def scaling_rates(kind: str, a, batch: int) -> list:
    """images/s per round of strategy ``kind``: its worker process(es), the chief's timing; all killed
    on the way out."""
    cmd = [sys.executable, __file__, "--scaling-worker", kind, "--scaling-model", a.scaling_model,
           "--image-size", str(a.image_size), "--batches", str(batch), "--steps", str(a.steps),
           "--rounds", str(a.rounds), "--warmup", str(a.warmup), "--precision", a.precision]
    envs = [dict(os.environ)]
    if kind == "multi_worker":
        socks = [socket.socket() for _ in range(2)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        cluster = {"worker": [f"127.0.0.1:{s.getsockname()[1]}" for s in socks]}
        for s in socks:
            s.close()
        envs = [{**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}
                for i in range(2)]
    logs = [tempfile.TemporaryFile(mode="w+") for _ in envs]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
             for log, env in zip(logs, envs)]
    try:
        outs = [p.communicate(timeout=a.timeout)[0] for p in procs]
        line = next((ln.split()[1:] for ln in outs[0].splitlines() if ln.startswith("rates")), None)
        if procs[0].returncode or line is None:
            logs[0].seek(0)
            raise RuntimeError(f"{kind} benchmark worker failed:\n{logs[0].read()[-3000:]}")
        return [float(x) for x in line]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        for log in logs:
            log.close()


def run_scaling(a) -> None:
    print(f"{a.scaling_model} train step, {a.precision}; one = one device, mirrored = the CPU split into two "
          f"logical devices (or every GPU), multi_worker = two local worker processes on 127.0.0.1")
    print(f"{'size':>5} {'batch':>5} {'strategy':>12} {'replicas':>8} {'images/s':>9} {'vs one':>7}  rounds (images/s)")
    for batch in a.batches:
        base = None
        for kind in a.strategies:
            rates = scaling_rates(kind, a, batch)
            med = statistics.median(rates)
            base = base or (med if kind == "one" else None)
            ratio = f"{med / base:.2f}x" if base else "-"
            print(f"{a.image_size:>5} {batch:>5} {kind:>12} {1 if kind == 'one' else 2:>8} {med:>9.3f} {ratio:>7}  "
                  + " ".join(f"{r:.2f}" for r in rates), flush=True)


def run_variants(a) -> None:
    baselines = [b for b in a.baseline if b in a.variants]
    width = max(len(v) for v in a.variants)
    print(f"{'size':>5} {'batch':>5} {'variant':>{width}} {'oneDNN':>6} {'images/s':>9} "
          + " ".join(f"{'vs ' + b:>{max(len(b) + 3, 8)}}" for b in baselines) + "  rounds (images/s)")
    for batch in a.batches:
        steps = {}
        for name in a.variants:
            steps[name] = make_step(name, a.image_size, batch)
            for _ in range(a.warmup):
                steps[name]()
        rates = {name: [] for name in a.variants}
        for _ in range(a.rounds):
            for name in a.variants:
                per_call = getattr(steps[name], "batches_per_call", 1)  # StarGAN: n_critic steps per call
                rates[name].append(a.steps * batch * per_call / measure(steps[name], a.steps))
        med = {name: statistics.median(r) for name, r in rates.items()}
        for name in a.variants:
            ratios = " ".join(f"{med[name] / med[b]:>{max(len(b) + 3, 8) - 1}.2f}x" for b in baselines)
            onednn = "on" if getattr(steps[name], "onednn", onednn_enabled()) else "off"
            print(f"{a.image_size:>5} {batch:>5} {name:>{width}} {onednn:>6} {med[name]:>9.3f} {ratios}  "
                  + " ".join(f"{r:.2f}" for r in rates[name]), flush=True)
        for step in steps.values():
            getattr(step, "close", lambda: None)()
        del steps


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    p.add_argument("--variants", nargs="+", default=["ours", "ours_bf16", "tutorial", "tutorial" + TF_DEFAULTS,
                                                     "stargan"],
                   help=f"of {sorted(VARIANTS)}, each optionally suffixed {TF_DEFAULTS} "
                        "(the ratio columns are only meaningful for pix2pix variants)")
    p.add_argument("--baseline", nargs="+", default=["tutorial", "tutorial" + TF_DEFAULTS],
                   help="variants the ratio columns divide by")
    p.add_argument("--strategies", nargs="+", choices=STRATEGIES,
                   help="instead of the variants: the distributed training step under these strategies")
    p.add_argument("--scaling-model", choices=("pix2pix", "stargan"), default="pix2pix", help="with --strategies")
    p.add_argument("--precision", choices=("float32", "bfloat16", "float16"), default="float32",
                   help="with --strategies: the networks' compute type (mixed precision, float32 variables)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per --strategies measurement")
    p.add_argument("--steps", type=int, default=4, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (median reported)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--scaling-worker", choices=STRATEGIES, help=argparse.SUPPRESS)
    p.add_argument("--tf-defaults", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        return run_worker(a.worker, a.image_size, a.batches[0])
    if a.scaling_worker:
        return run_scaling_worker(a)
    unknown = [v for v in a.variants if v.removesuffix(TF_DEFAULTS) not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {unknown}; known: {sorted(VARIANTS)}")
    from cxr_keras.gan.precision import bf16_support

    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs, oneDNN kernels "
          f"{'on' if onednn_enabled() else 'off'} in this process ({ONEDNN_ENV}={os.environ.get(ONEDNN_ENV)}), "
          f"bfloat16 {bf16_support()}, load average at start {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    ours = pix2pix_config()
    print(f"our Pix2Pix is the presets' (upsample={ours.upsample!r}, l1_region={ours.l1_region!r}); "
          "ours_transpose: upsample='transpose', the tutorial's decoder")
    if a.strategies:
        run_scaling(a)
    else:
        run_variants(a)
    print(f"load average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
