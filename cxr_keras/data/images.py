"""Load, convert, resize and encode one radiograph, with errors that name the file and the problem;
and the one definition of the NIH image size, box clipping and the box → pixel rule.

Kept free of TensorFlow and pandas: plain numpy/OpenCV, called from a thread pool while records are
written and imported by the renderers' worker processes.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

cv2.setNumThreads(1)  # one image per worker thread; the pool gives the parallelism

NIH_IMAGE_SIZE = 1024  # side of an NIH ChestX-ray14 image: its boxes are in these pixels
Box = Tuple[str, float, float, float, float]  # (finding, x, y, w, h), as a BBox_List_2017 row


class ImageError(ValueError):
    """An image file cannot be used (missing, corrupt, truncated, unsupported)."""


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_png_complete(path: Path, data: bytes) -> None:
    """A PNG must end with an IEND chunk; libpng otherwise decodes a truncated file silently."""
    if data.startswith(PNG_SIGNATURE) and b"IEND" not in data[-64:]:
        raise ImageError(f"{path}: truncated PNG (no IEND chunk)")


def to_gray_uint8(img: np.ndarray, path: os.PathLike = "<array>") -> np.ndarray:
    """Convert a decoded image (gray, RGB/BGR, RGBA, 8- or 16-bit) to 2-D uint8 grayscale."""
    if img.ndim == 3:
        if img.shape[2] == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY)
        elif img.shape[2] == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        elif img.shape[2] == 1:
            img = img[:, :, 0]
        else:
            raise ImageError(f"{path}: unsupported channel count {img.shape[2]}")
    if img.ndim != 2:
        raise ImageError(f"{path}: unsupported image shape {img.shape}")
    if img.dtype == np.uint16:
        img = (img.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        lo, hi = float(img.min()), float(img.max())
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        img = ((img.astype(np.float32) - lo) * scale).round().astype(np.uint8)
    return img


def load_gray(path: os.PathLike) -> np.ndarray:
    """Read an image file as 2-D uint8 grayscale (RGBA, RGB and 16-bit PNGs are converted)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror})") from None
    if not data:
        raise ImageError(f"{path}: empty file")
    _check_png_complete(path, data)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise ImageError(f"{path}: not a decodable image (corrupt or unsupported format)")
    return to_gray_uint8(img, path)


def resize(img: np.ndarray, size: int) -> np.ndarray:
    """Square resize with area interpolation (the right filter for 1024² → 256² downsizing)."""
    if img.shape[:2] == (size, size):
        return img
    interp = cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(img, (size, size), interpolation=interp)


def encode_png(img: np.ndarray, compression: int = 1) -> bytes:
    """Lossless PNG bytes of a uint8 image: 2-D or H×W×1 gray, H×W×3 BGR (colour figures).

    ``compression`` is the zlib level 0-9 (speed against size; the pixels are the same).
    """
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(img), [cv2.IMWRITE_PNG_COMPRESSION, int(compression)])
    if not ok:
        raise ImageError("PNG encoding failed")
    return buf.tobytes()


def clip_box(box_xywh: Sequence[float], width: int, height: int) -> Optional[Tuple[float, float, float, float]]:
    """Clip an (x, y, w, h) box to the image; return (xmin, ymin, xmax, ymax) or None when empty."""
    x, y, w, h = (float(v) for v in box_xywh)
    xmin, ymin = max(0.0, x), max(0.0, y)
    xmax, ymax = min(float(width), x + w), min(float(height), y + h)
    if xmax - xmin <= 0 or ymax - ymin <= 0:
        return None
    return xmin, ymin, xmax, ymax


def clip_finding_box(box: Box, size: int = NIH_IMAGE_SIZE) -> Optional[Box]:
    """:func:`clip_box` for a (finding, x, y, w, h) row on a size×size image, or None when nothing is left.

    A box already inside the image keeps its exact values (no x + w − x round trip).
    """
    finding, x, y, w, h = (box[0],) + tuple(float(v) for v in box[1:])
    xyxy = clip_box((x, y, w, h), size, size)
    if xyxy is None:
        return None
    if xyxy == (x, y, x + w, y + h):
        return (finding, x, y, w, h)
    xmin, ymin, xmax, ymax = xyxy
    return (finding, xmin, ymin, xmax - xmin, ymax - ymin)


def scale_box(box_xyxy: Sequence[float], width: int, height: int, size: int) -> List[float]:
    """Scale an (xmin, ymin, xmax, ymax) box from a width×height image to size×size."""
    sx, sy = size / float(width), size / float(height)
    xmin, ymin, xmax, ymax = box_xyxy
    return [xmin * sx, ymin * sy, xmax * sx, ymax * sy]


def box_region(box_xyxy: Sequence[float], size: int) -> Tuple[int, int, int, int]:
    """The box → pixel rule: the (x0, y0, x1, y1) pixel rectangle, end-exclusive, of every pixel the box
    touches on a size×size image (at least one pixel)."""
    xmin, ymin, xmax, ymax = box_xyxy
    x0 = int(np.clip(np.floor(xmin), 0, size - 1))
    y0 = int(np.clip(np.floor(ymin), 0, size - 1))
    x1 = int(np.clip(np.ceil(xmax), x0 + 1, size))
    y1 = int(np.clip(np.ceil(ymax), y0 + 1, size))
    return x0, y0, x1, y1


def box_mask(box_xyxy: Sequence[float], size: int) -> np.ndarray:
    """uint8 {0,1} mask covering every pixel the box touches (:func:`box_region`; never empty)."""
    x0, y0, x1, y1 = box_region(box_xyxy, size)
    mask = np.zeros((size, size), np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def load_resized(args: Tuple[str, int]) -> Tuple[str, Optional[np.ndarray], Optional[Tuple[int, int]], Optional[str]]:
    """Worker: (path, size) → (path, resized uint8 or None, original (h, w), error message or None)."""
    path, size = args
    try:
        img = load_gray(path)
    except ImageError as exc:
        return path, None, None, str(exc)
    return path, resize(img, size), img.shape[:2], None
