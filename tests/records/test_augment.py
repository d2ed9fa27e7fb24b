"""Augmentation moves the mask and the image together, and the box follows the mask."""
import numpy as np
import tensorflow as tf

from cxr_keras.config import AugmentConfig
from cxr_keras.records.augment import augment_dataset, augment_pair, box_from_mask


def _pair(size=64):
    rng = np.random.default_rng(0)
    img = rng.uniform(-0.8, 0.8, (size, size, 1)).astype(np.float32)
    mask = np.zeros((size, size, 1), np.float32)
    mask[10:30, 5:25] = 1.0
    img[10:30, 5:25] = 1.0  # the "pathology": a bright square exactly where the mask is
    return {"image": tf.constant(img), "mask": tf.constant(mask), "box": box_from_mask(tf.constant(mask)),
            "label": tf.constant(1, tf.int64)}


def test_box_from_mask():
    m = np.zeros((8, 8, 1), np.float32)
    m[2:5, 1:7] = 1
    np.testing.assert_allclose(box_from_mask(tf.constant(m)).numpy(), [2 / 8, 1 / 8, 5 / 8, 7 / 8])
    np.testing.assert_allclose(box_from_mask(tf.zeros([8, 8, 1])).numpy(), [0, 0, 0, 0])


def test_mask_and_image_move_together():
    ex = _pair()
    cfg = AugmentConfig(max_rotation_deg=0.0, flip_left_right=True, min_crop_frac=0.7)
    changed = 0
    for s in range(12):
        out = augment_pair(ex, cfg, tf.constant([s, 7]))
        img, mask = out["image"].numpy()[:, :, 0], out["mask"].numpy()[:, :, 0]
        assert set(np.unique(mask)) <= {0.0, 1.0}
        inside = img[mask > 0.5]
        # nearest-resampled mask pixels land on bright pathology pixels (bilinear edges aside)
        assert np.median(inside) > 0.95
        assert (img[mask < 0.5] > 0.99).mean() < 0.05
        ymin, xmin, ymax, xmax = out["box"].numpy()
        ys, xs = np.nonzero(mask)
        assert (ys.min() / 64, xs.min() / 64, (ys.max() + 1) / 64, (xs.max() + 1) / 64) == \
            (ymin, xmin, ymax, xmax)
        changed += not np.array_equal(mask, ex["mask"].numpy()[:, :, 0])
    assert changed >= 6  # the transforms do act


def test_rotation_moves_both_and_keeps_the_box_in_the_mask():
    ex = _pair()
    cfg = AugmentConfig(max_rotation_deg=30.0, flip_left_right=False, min_crop_frac=1.0)
    out = augment_pair(ex, cfg, tf.constant([1, 2]))
    mask, img = out["mask"].numpy()[:, :, 0], out["image"].numpy()[:, :, 0]
    assert not np.array_equal(mask, ex["mask"].numpy()[:, :, 0])
    core = mask > 0.5
    assert (img[core] > 0.9).mean() > 0.9


def test_same_seed_same_transform_and_fresh_draws_per_element():
    ex = _pair()
    cfg = AugmentConfig()
    a = augment_pair(ex, cfg, tf.constant([3, 4]))
    b = augment_pair(ex, cfg, tf.constant([3, 4]))
    np.testing.assert_array_equal(a["image"].numpy(), b["image"].numpy())
    ds = tf.data.Dataset.from_tensors(ex).repeat(4)
    outs = [o["mask"].numpy() for o in augment_dataset(ds, cfg, seed=0)]
    assert len({o.tobytes() for o in outs}) > 1


def test_a_box_pushed_out_of_the_image_is_not_lost():
    size = 32
    img = np.zeros((size, size, 1), np.float32)
    mask = np.zeros((size, size, 1), np.float32)
    mask[0:2, 0:2] = 1  # a corner box that a crop can cut away
    ex = {"image": tf.constant(img), "mask": tf.constant(mask), "box": box_from_mask(tf.constant(mask))}
    cfg = AugmentConfig(max_rotation_deg=0.0, flip_left_right=False, min_crop_frac=0.3)
    for s in range(10):
        out = augment_pair(ex, cfg, tf.constant([s, 0]))
        assert out["mask"].numpy().sum() > 0


def test_an_example_without_a_box_keeps_a_valid_box_when_its_box_would_leave_the_image():
    """synthesize.py --augment passes {image, mask} only: the fallback used to drop 'box' (KeyError: 'box')."""
    size = 32
    img = np.linspace(-1, 1, size * size, dtype=np.float32).reshape(size, size, 1)
    mask = np.zeros((size, size, 1), np.float32)
    mask[0:2, 0:2] = 1
    cfg = AugmentConfig(max_rotation_deg=0.0, flip_left_right=False, min_crop_frac=0.3)
    fell_back = 0
    for s in range(20):
        out = augment_pair({"image": tf.constant(img), "mask": tf.constant(mask)}, cfg, tf.constant([s, 0]))
        assert set(out) == {"image", "mask", "box"}
        np.testing.assert_array_equal(out["box"].numpy(), box_from_mask(out["mask"]).numpy())
        if np.array_equal(out["image"].numpy(), img):  # the box would have left: the input, unchanged
            np.testing.assert_array_equal(out["mask"].numpy(), mask)
            np.testing.assert_allclose(out["box"].numpy(), [0, 0, 2 / size, 2 / size])
            fell_back += 1
    assert fell_back > 0  # the case did occur


def test_the_fallback_keeps_the_structure_inside_a_tf_data_pipeline():
    """In graph mode both branches must have the same keys: with and without an incoming box."""
    size = 32
    mask = np.zeros((size, size, 1), np.float32)
    mask[0:2, 0:2] = 1
    ex = {"image": tf.zeros([size, size, 1]), "mask": tf.constant(mask)}
    cfg = AugmentConfig(max_rotation_deg=0.0, flip_left_right=False, min_crop_frac=0.3)
    for given in (ex, {**ex, "box": box_from_mask(ex["mask"])}):
        outs = list(augment_dataset(tf.data.Dataset.from_tensors(given).repeat(8), cfg, seed=0))
        assert all(set(o) == {"image", "mask", "box"} and o["mask"].numpy().sum() > 0 for o in outs)


def test_synthesis_sources_whose_box_would_leave_still_synthesize(tmp_path):
    """The synthesize.py --augment path (augment_source) on a corner box that crops push out."""
    from cxr_keras.gan.synthesis_pix2pix import SourcePair, augment_source

    size = 32
    image = np.full((size, size), 100, np.uint8)
    image[0:3, 0:3] = 250
    mask = np.zeros((size, size), np.uint8)
    mask[0:3, 0:3] = 1
    src = SourcePair("a.png", 0, 1, "Atelectasis", image, mask, (0.0, 0.0, 3.0, 3.0))
    cfg = AugmentConfig(max_rotation_deg=0.0, flip_left_right=False, min_crop_frac=0.3)
    for s in range(20):
        img, m, box = augment_source(src, cfg, (s, 0))
        assert m.sum() > 0 and (img[m > 0] > 200).mean() > 0.5
        assert box[2] > box[0] and box[3] > box[1]
