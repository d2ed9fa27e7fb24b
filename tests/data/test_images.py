"""The shared image helpers: PNG encoding, box clipping (both forms), the box → pixel rule."""
import cv2
import numpy as np
import pytest

from cxr_keras.data import images, nih
from cxr_keras.data.images import box_mask, box_region, clip_box, clip_finding_box, encode_png


def _decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def test_encode_png_is_lossless_for_gray_and_colour():
    gray = (np.arange(48 * 64) % 256).astype(np.uint8).reshape(48, 64)
    for img in (gray, gray[:, :, None]):
        assert np.array_equal(_decode(encode_png(img)), gray)
    bgr = np.dstack([gray, 255 - gray, gray // 2])
    assert np.array_equal(_decode(encode_png(bgr)), bgr)
    small, fast = encode_png(gray, compression=9), encode_png(gray, compression=0)
    assert small != fast and len(small) < len(fast) and np.array_equal(_decode(small), gray)


def test_clip_box_gives_corners_or_none():
    assert clip_box((10, 20, 30, 40), 100, 100) == (10.0, 20.0, 40.0, 60.0)
    assert clip_box((90, -5, 30, 10), 100, 80) == (90.0, 0.0, 100.0, 5.0)
    assert clip_box((120, 0, 5, 5), 100, 100) is None
    assert clip_box((10, 10, 0, 5), 100, 100) is None


def test_clip_finding_box_keeps_inside_boxes_exact():
    inside = ("Nodule", 0.1, 0.2, 0.7, 0.7)  # 0.1 + 0.7 - 0.1 != 0.7 in floating point
    assert clip_finding_box(inside) == inside
    assert clip_finding_box(("Nodule", 990.0, -10.0, 60.0, 50.0)) == ("Nodule", 990.0, 0.0, 34.0, 40.0)
    assert clip_finding_box(("Mass", 1030.0, 5.0, 20.0, 20.0)) is None
    assert clip_finding_box(("Mass", 10.0, 5.0, 20.0, 0.0)) is None
    assert clip_finding_box(("Effusion", 50, 50, 100, 100), size=128) == ("Effusion", 50.0, 50.0, 78.0, 78.0)


@pytest.mark.parametrize("box", [(10.2, 3.0, 20.8, 7.5), (0.0, 0.0, 0.3, 0.3), (63.5, 63.9, 64.0, 64.0),
                                 (-3.0, -3.0, 70.0, 70.0), (5.0, 5.0, 5.0, 5.0)])
def test_box_mask_is_the_box_region(box):
    x0, y0, x1, y1 = box_region(box, 64)
    xmin, ymin, xmax, ymax = box
    assert x0 == max(0, int(np.floor(xmin))) and y0 == max(0, int(np.floor(ymin)))
    assert x1 == min(64, max(x0 + 1, int(np.ceil(xmax)))) and y1 == min(64, max(y0 + 1, int(np.ceil(ymax))))
    mask = box_mask(box, 64)
    assert mask.dtype == np.uint8 and mask.sum() == (x1 - x0) * (y1 - y0) and mask[y0:y1, x0:x1].all()


def test_one_nih_image_size():
    assert nih.NIH_IMAGE_SIZE is images.NIH_IMAGE_SIZE == 1024
