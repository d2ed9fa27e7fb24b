"""Random healthy boxes: inside the image, sizes drawn from the NIH box-size distribution."""
import numpy as np
import pytest
import tensorflow as tf

from cxr_keras.config import FINDINGS
from cxr_keras.data import nih
from cxr_keras.records.augment import box_from_mask
from cxr_keras.records.boxes import nih_box_sizes, random_box_mask, sample_boxes


def shipped_boxes():
    df = nih.read_bbox_list(nih.metadata_paths(None)[0])
    return df[df["finding"].isin(FINDINGS)]


def test_sizes_come_from_the_six_findings_scaled_to_the_image():
    df = shipped_boxes()
    sizes = nih_box_sizes(256)
    assert sizes.shape == (len(df), 2)
    expect = np.clip(np.round(df[["w", "h"]].to_numpy(float) / 4.0), 1, 256)
    np.testing.assert_array_equal(np.sort(sizes[:, 0]), np.sort(expect[:, 0]))
    assert sizes.min() >= 1 and sizes.max() <= 256
    # Mass and Nodule (small boxes) are excluded: the six findings are larger on average.
    all_eight = nih.read_bbox_list(nih.metadata_paths(None)[0])
    assert len(all_eight) > len(df)


def test_tf_boxes_are_inside_and_have_table_sizes():
    size = 64
    sizes = nih_box_sizes(size)
    table = {tuple(s) for s in sizes.tolist()}
    fn = tf.function(lambda seed: random_box_mask(sizes, size, seed))
    drawn = []
    for i in range(60):
        mask, box = fn(tf.constant([i, 7], tf.int64))
        mask, box = mask.numpy()[:, :, 0], box.numpy()
        ys, xs = np.nonzero(mask)
        assert len(ys) > 0
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        assert mask.sum() == (y1 - y0) * (x1 - x0)  # a filled rectangle
        assert 0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size
        assert (x1 - x0, y1 - y0) in table
        np.testing.assert_allclose(box, np.array([y0, x0, y1, x1]) / size)
        np.testing.assert_allclose(box, box_from_mask(tf.constant(mask[:, :, None])).numpy())
        drawn.append((x0, y0, x1 - x0, y1 - y0))
    assert len(set(drawn)) > 40  # fresh boxes for fresh seeds
    x0, y0, w, h = drawn[3]  # stateless: the same seed gives the same box
    np.testing.assert_allclose(fn(tf.constant([3, 7], tf.int64))[1].numpy(),
                               np.array([y0, x0, y0 + h, x0 + w]) / size)


def test_numpy_sampler_follows_the_nih_distribution():
    size = 256
    sizes = nih_box_sizes(size)
    boxes = sample_boxes(sizes, size, 20000, np.random.default_rng(0))
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert boxes[:, :2].min() >= 0 and boxes[:, 2].max() <= size and boxes[:, 3].max() <= size
    table = {tuple(s) for s in sizes.tolist()}
    assert all((int(a), int(b)) in table for a, b in zip(w[:500], h[:500]))
    # The sampled size distribution matches the table (means and a quantile, 20k draws).
    assert abs(w.mean() - sizes[:, 0].mean()) < 0.05 * sizes[:, 0].mean()
    assert abs(np.median(h) - np.median(sizes[:, 1])) <= 3
    # Positions cover the image: the box centres are spread over both halves.
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    assert 0.3 < (cx < size / 2).mean() < 0.7


def test_bad_bbox_list_names_the_file(tmp_path):
    bad = tmp_path / "BBox_List_2017.csv"
    bad.write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\nimg.png,Mass,1,2,3,4\n")
    with pytest.raises(ValueError, match="BBox_List_2017.csv"):
        nih_box_sizes(64, bbox_csv=bad)
