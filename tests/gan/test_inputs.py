"""The GAN input pipelines (cxr_keras.gan.inputs): Pix2Pix pairs with healthy random boxes, StarGAN domains."""
import re

import numpy as np
import pytest
import tensorflow as tf

from cxr_keras.config import StarGANConfig
from cxr_keras.gan.inputs import domain_index, domain_records, pix2pix_dataset as make_dataset, stargan_dataset
from cxr_keras.paths import RecordsPaths
from cxr_keras.records.pairs import write_pair_examples
from gankit import S, tiny_net_cfg

TINY = StarGANConfig(image_size=16, gen_filters=4, disc_filters=4, res_blocks=1, disc_layers=2,
                     n_critic=1, steps=1000, batch_size=4, augment=False)


# -- Pix2Pix -----------------------------------------------------------------------------------
def test_pix2pix_dataset_gives_every_healthy_image_a_fresh_box(records):
    cfg = tiny_net_cfg(use_healthy=True, batch_size=7, augment=False)
    it = iter(make_dataset(records, cfg, seed=0))
    masks = [next(it)["mask"].numpy() for _ in range(4)]  # 4 epochs of 7 images (4 annotated + 3 healthy)
    for m in masks:
        assert m.shape == (7, S, S, 1)
        assert np.all(m.reshape(7, -1).max(axis=1) == 1.0)  # no image without a box
    # annotated masks repeat every epoch; healthy boxes are redrawn: more distinct masks than 4 + 3
    distinct = {m.tobytes() for batch in masks for m in batch}
    assert len(distinct) > 7
    plain = next(iter(make_dataset(records, tiny_net_cfg(batch_size=4, augment=False), seed=0)))
    assert plain["mask"].shape == (4, S, S, 1)
    small = next(iter(make_dataset(records, tiny_net_cfg(image_size=32, use_healthy=True), seed=0)))
    assert small["image"].shape == (2, 32, 32, 1)  # records resized to the model's size
    assert set(np.unique(small["mask"].numpy())) <= {0.0, 1.0}


# -- StarGAN -----------------------------------------------------------------------------------
def write_records(root, size=32):
    rng = np.random.default_rng(0)
    img = lambda: rng.integers(0, 255, (size, size), dtype=np.uint8)  # noqa: E731
    box = (2.0, 2.0, 10.0, 10.0)
    pairs = [
        {"image": img(), "image_id": "a.png", "label": 1, "finding": "Atelectasis", "box": box},
        {"image": img(), "image_id": "a.png", "label": 1, "finding": "Atelectasis", "box": box},  # 2nd box
        {"image": img(), "image_id": "a.png", "label": 3, "finding": "Effusion", "box": box},
        {"image": img(), "image_id": "b.png", "label": 6, "finding": "Pneumothorax", "box": box},
    ]
    healthy = [{"image": img(), "image_id": f"h{i}.png"} for i in range(3)]
    write_pair_examples(RecordsPaths(root).pairs("train"), pairs)
    write_pair_examples(RecordsPaths(root).healthy("train"), healthy)
    return root


def test_stargan_dataset_dedupes_per_image_and_label_and_resizes(tmp_path):
    write_records(tmp_path)
    keep, labels, counts = domain_index(domain_records(tmp_path, "train"))
    assert keep.tolist() == [True, False, True, True, True, True, True]
    assert counts == {1: 1, 3: 1, 6: 1, 0: 3}
    cfg = StarGANConfig(image_size=16, batch_size=3)
    ds = stargan_dataset(tmp_path, cfg, training=False)
    items = [(i.decode(), int(l)) for b in ds for i, l in zip(b["image_id"].numpy(), b["label"].numpy())]
    assert sorted(items) == sorted([("a.png", 1), ("a.png", 3), ("b.png", 6),
                                    ("h0.png", 0), ("h1.png", 0), ("h2.png", 0)])
    batch = next(iter(stargan_dataset(tmp_path, cfg, training=True)))
    assert batch["image"].shape == (3, 16, 16, 1)
    assert float(tf.reduce_min(batch["image"])) >= -1.0 and float(tf.reduce_max(batch["image"])) <= 1.0


def test_stargan_dataset_errors_name_the_file(tmp_path):
    pairs = RecordsPaths(tmp_path).pairs("train")
    name = re.escape(pairs.name)
    with pytest.raises(FileNotFoundError, match=name):
        stargan_dataset(tmp_path, TINY)
    write_pair_examples(pairs, [{"image": np.zeros((8, 8), np.uint8), "label": 9, "box": (1, 1, 4, 4)}])
    write_pair_examples(RecordsPaths(tmp_path).healthy("train"), [])
    with pytest.raises(ValueError, match=rf"{name}.*label 9"):
        stargan_dataset(tmp_path, TINY)
    pairs.write_bytes(b"garbage, not a record")
    with pytest.raises(ValueError, match=f"{name}: unreadable"):
        stargan_dataset(tmp_path, TINY)


