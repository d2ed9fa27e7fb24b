"""Child process of the distribution tests (no tests here): train a tiny GAN a few steps under one
strategy through the real training loop and save its losses and weights for the parent to compare.

    python tests/gan/test_distribute_child.py --model pix2pix --strategies one mirrored --cpu-devices 2 \
        --records R --run RUN --out OUT [--init reference.npz] [--steps 3]

Each strategy trains RUN.<strategy> and writes OUT.<strategy>.npz; all start from the initial weights of
``--init`` or else of the first one (saved too), so they start from the same network. In a multi-worker
run the other workers write OUT.<strategy>.worker<N>.npz (their weights must equal the chief's).
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))  # noqa: E401,E702

import argparse
import json
import os

import numpy as np

from cxr_keras.config import Pix2PixConfig, StarGANConfig
from cxr_keras.records.pairs import write_pair_examples

SIZE = 32


def tiny_config(model: str, steps: int):
    """A few-step config of ``model``. Adam's ε is above the gradients' float rounding noise: with Keras'
    1e-7, weights whose exact gradient is 0 or cancels (StarGAN's domain-map taps under instance norm) step
    by ±lr on rounding noise, differently on one device and on two, and the moved weights then flip a
    LeakyReLU of the gradient penalty now and then, so the runs part by more than rounding."""
    loop = dict(image_size=SIZE, gen_filters=4, disc_filters=4, batch_size=4, augment=False, steps=steps,
                log_every=1, image_every=1000, checkpoint_every=steps, keep_checkpoints=2, adam_epsilon=1e-3)
    if model == "stargan":  # n_critic 2: the generator steps at steps 2 and 4
        return StarGANConfig(res_blocks=1, disc_layers=3, n_critic=2, **loop)
    return Pix2PixConfig(num_downs=3, disc_layers=2, dropout=0.0, use_healthy=model == "pix2pix_n", **loop)


def write_records(root, n: int = 8, healthy: int = 4, size: int = SIZE) -> None:
    """Smooth random images with boxes (train), plus healthy ones: enough for both GANs."""
    from cxr_keras.paths import RecordsPaths

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size

    def img():
        a, b, c = rng.uniform(-1, 1, 3)
        return np.clip(127.5 + 60 * (a * xx + b * yy + c * xx * yy) + rng.normal(0, 4, (size, size)), 0, 255)

    ann = [dict(image=img().astype(np.uint8), box=(2 + i, 3, 14 + i, 16), label=1 + i % 6, finding="Atelectasis",
                image_id=f"a{i}.png", ann_id=i) for i in range(n)]
    records = RecordsPaths(root)
    write_pair_examples(records.pairs("train"), ann)
    write_pair_examples(records.pairs("test"), ann[:2])
    write_pair_examples(records.healthy("train"),
                        [dict(image=img().astype(np.uint8), image_id=f"h{i}.png") for i in range(healthy)])


def networks(model):
    return model.generator.weights + model.discriminator.weights


def probe_outputs(model) -> np.ndarray:
    """What the trained generator makes of a fixed input (no dropout): its function, not its weights."""
    rng = np.random.default_rng(5)
    image = rng.uniform(-1, 1, (4, SIZE, SIZE, 1)).astype(np.float32)
    if hasattr(model, "translate"):
        return model.translate(image, np.arange(4) + 1).numpy()
    mask = np.zeros_like(image)
    mask[:, 8:20, 6:18] = 1.0
    return model.generate(image, mask, sample=False).numpy()


def train_once(a, strategy, run_dir, init):
    """Train under ``strategy`` from ``init`` (or the fresh weights); its initial and final weights,
    losses per step and probe outputs, and the replicas' copies checked equal."""
    from cxr_keras.gan import training

    saved, losses, trained = {}, [], []

    def on_start(step, model):
        trained.append(model)
        for i, v in enumerate(networks(model)):
            if init is not None:
                v.assign(init[f"init_{i}"])
            saved[f"init_{i}"] = v.numpy()

    def on_step(step, values, model):
        losses.append([values[k] for k in sorted(values)])
        saved["loss_names"] = np.array(sorted(values))

    result = training.train(a.model, a.records, run_dir, tiny_config(a.model, a.steps), strategy=strategy,
                            precision="float32", progress=False, on_start=on_start, on_step=on_step)
    for i, v in enumerate(networks(trained[0])):
        copies = [c.numpy() for c in getattr(v, "values", [v])]
        assert all(np.array_equal(copies[0], c) for c in copies), f"replica copies of {v.name} differ"
        saved[f"final_{i}"] = copies[0]
    saved.update(probe=probe_outputs(trained[0]), losses=np.array(losses),
                 replicas=np.array(strategy.num_replicas_in_sync), step=np.array(result.step))
    return saved


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--strategies", nargs="+", choices=("one", "mirrored", "multi_worker"), required=True,
                   help="trained in turn in this process, each from the first one's initial weights")
    p.add_argument("--cpu-devices", type=int)
    p.add_argument("--records", required=True)
    p.add_argument("--run", required=True, help="RUN folders are RUN.<strategy>")
    p.add_argument("--out", required=True, help="results are OUT.<strategy>.npz")
    p.add_argument("--init", help="initial weights from this result file")
    p.add_argument("--steps", type=int, default=3)
    a = p.parse_args(argv)

    from cxr_keras.gan import distribute  # the strategy comes first, before any other TensorFlow work

    import tensorflow as tf

    if a.cpu_devices:
        distribute.split_cpu(a.cpu_devices)
    init = dict(np.load(a.init)) if a.init else None
    for name in a.strategies:
        strategy = tf.distribute.get_strategy() if name == "one" else distribute.make_strategy(name)
        saved = train_once(a, strategy, f"{a.run}.{name}", init)
        init = init or saved
        chief = distribute.is_chief(strategy)
        worker = "" if chief else f".worker{json.loads(os.environ['TF_CONFIG'])['task']['index']}"
        np.savez(f"{a.out}.{name}{worker}.npz", **saved)
        print(f"{name}: step {int(saved['step'])} on {strategy.num_replicas_in_sync} replica(s)", flush=True)


if __name__ == "__main__":
    main()
