"""Tiny phantom detection records for the detection tests (written with the project's writer)."""
from cxr_keras.detection import od_compat  # noqa: F401  (before TensorFlow / protobuf)

from pathlib import Path

import numpy as np
import pytest

from cxr_keras.config import FINDINGS


def phantom_items(n, prefix, size=256, seed=0):
    """Noisy grey images with 1–2 bright rectangles ('lesions') whose grey level encodes the label."""
    from cxr_keras.records.detection import DetectionItem

    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        img = (rng.random((size, size)) * 40 + 60).astype(np.uint8)
        boxes, labels = [], []
        for _ in range(int(rng.integers(1, 3))):
            w, h = (int(v) for v in rng.integers(size // 8, size // 3, 2))
            x, y = (int(v) for v in rng.integers(0, size - size // 3, 2))
            label = int(rng.integers(1, len(FINDINGS) + 1))
            img[y:y + h, x:x + w] = 100 + 25 * label
            boxes.append([x, y, x + w, y + h])
            labels.append(label)
        items.append(DetectionItem(img, f"{prefix}_{i:03d}.png", boxes, labels))
    return items


def write_records_dir(root: Path, n_train=6, n_test=3, size=256, seed=0):
    """A RECORDS-like folder: det_train/det_test.tfrecord and label_map.pbtxt."""
    from cxr_keras.records.detection import write_detection_records, write_label_map

    root.mkdir(parents=True, exist_ok=True)
    train = phantom_items(n_train, "train", size, seed)
    test = phantom_items(n_test, "test", size, seed + 1)
    write_detection_records(root / "det_train.tfrecord", train)
    write_detection_records(root / "det_test.tfrecord", test)
    write_label_map(root / "label_map.pbtxt")
    return {"train": train, "test": test}


def write_syn_dir(root: Path, n=4, size=256, seed=7):
    """A SYN-like folder holding only detection.tfrecord."""
    from cxr_keras.records.detection import write_detection_records

    root.mkdir(parents=True, exist_ok=True)
    items = phantom_items(n, "syn", size, seed)
    write_detection_records(root / "detection.tfrecord", items)
    return items


@pytest.fixture(scope="session")
def records_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("records")
    items = write_records_dir(root)
    return root, items


@pytest.fixture(scope="session")
def syn_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    items = write_syn_dir(root)
    return root, items


@pytest.fixture(scope="session")
def make_records():
    """The writers above, for tests that need their own folders (size, counts)."""
    return write_records_dir, write_syn_dir
