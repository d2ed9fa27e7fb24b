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
