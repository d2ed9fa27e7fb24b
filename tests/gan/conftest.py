"""GAN-stage fixtures: tiny pair / healthy records and a tiny, checkpointed Pix2Pix run."""
import cv2
import numpy as np
import pytest
import tensorflow as tf

from cxr_keras.config import Pix2PixConfig
from cxr_keras.gan import runs
from cxr_keras.models.pix2pix import build_model
from cxr_keras.paths import RecordsPaths, RunPaths
from cxr_keras.records.pairs import write_pair_examples

S = 64
BIG, SMALL = (8.0, 8.0, 40.0, 44.0), (12.0, 20.0, 30.0, 36.0)  # SMALL lies inside BIG, same image


def write_tiny_records(root, size=S, n=4, healthy=3):
    """Pair records of smooth random images: n annotated (train and test) and some healthy ones."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size

    def img():
        a, b, c = rng.uniform(-1, 1, 3)
        return np.clip(127.5 + 60 * (a * xx + b * yy + c * xx * yy) + rng.normal(0, 4, (size, size)), 0, 255)

    ann = [dict(image=img().astype(np.uint8), box=(4 + 3 * i, 6, 24 + 3 * i, 30), label=1 + i % 6,
                finding="Atelectasis", image_id=f"a{i}.png", ann_id=i) for i in range(n)]
    records = RecordsPaths(root)
    write_pair_examples(records.pairs("train"), ann)
    write_pair_examples(records.pairs("test"), ann[:2])
    write_pair_examples(records.healthy("train"),
                        [dict(image=img().astype(np.uint8), image_id=f"h{i}.png") for i in range(healthy)])
    return root


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """RECORDS/ with 4 annotated train pairs (2 test) and 3 healthy train images, 64×64."""
    return write_tiny_records(tmp_path_factory.mktemp("records"))


def source_images():
    rng = np.random.default_rng(1)
    return [cv2.GaussianBlur(rng.integers(0, 256, (S, S)).astype(np.uint8), (5, 5), 0) for _ in range(3)]


@pytest.fixture(scope="module")
def pix2pix_run(tmp_path_factory):
    """An untrained tiny Pix2Pix run checkpointed at step 3, and records whose image p0 has two boxes."""
    root = tmp_path_factory.mktemp("syn")
    imgs = source_images()
    items = [
        dict(image=imgs[0], box=BIG, label=3, finding="Effusion", image_id="p0.png", ann_id=10),
        dict(image=imgs[0], box=SMALL, label=1, finding="Atelectasis", image_id="p0.png", ann_id=11),
        dict(image=imgs[1], box=(30.0, 2.0, 60.0, 20.5), label=2, finding="Cardiomegaly", image_id="p1.png",
             ann_id=12),
        dict(image=imgs[2], box=(0.0, 40.0, 16.0, 64.0), label=6, finding="Pneumothorax", image_id="p2.png",
             ann_id=13),
    ]
    records = root / "records"
    write_pair_examples(RecordsPaths(records).pairs("train"), items)
    write_pair_examples(RecordsPaths(records).pairs("test"), items[2:])
    run = root / "run"
    cfg = Pix2PixConfig(image_size=S, gen_filters=4, disc_filters=4, num_downs=4, disc_layers=2)
    model = build_model(cfg)
    run.mkdir()
    runs.write_run_config(run, {"model": "pix2pix", "cfg": cfg, "seed": 0})
    step = tf.Variable(3, dtype=tf.int64)
    tf.train.CheckpointManager(runs.make_checkpoint(model, step), str(RunPaths(run).checkpoints), 2).save(3)
    return {"records": records, "run": run, "images": {"p0.png": imgs[0], "p1.png": imgs[1], "p2.png": imgs[2]},
            "items": items, "root": root}
