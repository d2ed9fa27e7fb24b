"""Run a trained detector (training checkpoint or exported SavedModel) over a detection record.

Both paths return the same per-image structure, so one metric (``localisation.py``) scores any
detector on any OD-format record. Boxes are normalised ``[ymin, xmin, ymax, xmax]``, classes are
1-based label-map ids, as in the OD API's exported outputs.
"""
from __future__ import annotations

from cxr_keras.detection import od_compat  # noqa: F401  (must precede TensorFlow / protobuf)

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Union

import numpy as np

PathLike = Union[str, os.PathLike]


@dataclass
class ImageResult:
    """Ground truth and detections of one image (boxes normalised ymin, xmin, ymax, xmax)."""

    filename: str
    gt_boxes: np.ndarray  # float32 [G, 4]
    gt_labels: np.ndarray  # int64 [G], 1-based
    boxes: np.ndarray  # float32 [N, 4]
    classes: np.ndarray  # int64 [N], 1-based
    scores: np.ndarray  # float32 [N]


class RecordError(ValueError):
    """A detection record is missing, corrupt or lacks the OD API features we need."""


def iter_record(record: PathLike) -> Iterator[dict]:
    """Yield ``image`` (uint8 [H,W,3]), ``filename``, ``gt_boxes``, ``gt_labels`` from an OD record."""
    import tensorflow as tf

    record = Path(record)
    if not record.is_file():
        raise RecordError(f"{record}: detection record does not exist")
    from cxr_keras.records.detection import DETECTION_FEATURES as features
    index = -1
    try:
        for index, raw in enumerate(tf.data.TFRecordDataset(str(record))):
            f = tf.io.parse_single_example(raw, features)
            dense = {k: tf.sparse.to_dense(v).numpy() for k, v in f.items()
                     if isinstance(v, tf.SparseTensor)}
            image = tf.io.decode_image(f["image/encoded"], channels=3, expand_animations=False)
            boxes = np.stack([dense["image/object/bbox/ymin"], dense["image/object/bbox/xmin"],
                              dense["image/object/bbox/ymax"], dense["image/object/bbox/xmax"]], -1)
            labels = dense["image/object/class/label"].astype(np.int64)
            name = f["image/filename"].numpy().decode() or f["image/source_id"].numpy().decode()
            if len(boxes) != len(labels):
                raise RecordError(f"{record}: example {index} ({name}) has {len(boxes)} boxes "
                                  f"but {len(labels)} labels")
            yield {"image": image.numpy(), "filename": name or f"#{index}",
                   "gt_boxes": boxes.astype(np.float32).reshape(-1, 4), "gt_labels": labels}
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as exc:
        raise RecordError(f"{record}: unreadable OD example after #{index} "
                          f"({type(exc).__name__}: {exc.message.splitlines()[0]})") from exc
    if index < 0:
        raise RecordError(f"{record}: detection record holds no examples")


def _run(record: PathLike, detect: Callable[[np.ndarray], dict],
         limit: Optional[int] = None) -> List[ImageResult]:
    results = []
    for i, item in enumerate(iter_record(record)):
        if limit is not None and i >= limit:
            break
        det = detect(item["image"])
        n = int(det["num_detections"])
        results.append(ImageResult(
            filename=item["filename"], gt_boxes=item["gt_boxes"], gt_labels=item["gt_labels"],
            boxes=np.asarray(det["detection_boxes"], np.float32)[:n].reshape(-1, 4),
            classes=np.rint(np.asarray(det["detection_classes"])[:n]).astype(np.int64),
            scores=np.asarray(det["detection_scores"], np.float32)[:n]))
    return results


class CheckpointDetector:
    """The OD API model built from a pipeline config; ``restore`` any of its training checkpoints.

    The model is built (and its inference function traced) once, so scoring many checkpoints of
    one run only pays for restoring weights.
    """

    def __init__(self, pipeline_config: PathLike):
        od_compat.require_od_api()
        import tensorflow as tf
        from object_detection.builders import model_builder

        from cxr_keras.detection.configs import load_pipeline_configs

        self.configs = load_pipeline_configs(pipeline_config)
        self.model = model_builder.build(model_config=self.configs["model"], is_training=False)
        self._ckpt = tf.train.Checkpoint(model=self.model)

        @tf.function
        def detect_fn(image):
            images, shapes = self.model.preprocess(tf.cast(image, tf.float32))
            predictions = self.model.predict(images, shapes)
            return self.model.postprocess(predictions, shapes)

        self._detect_fn = detect_fn
        self.checkpoint: Optional[str] = None

    _cache: dict = {}

    @classmethod
    def for_config(cls, pipeline_config: PathLike) -> "CheckpointDetector":
        """A detector for this config, reusing one already built for the same model section
        (the protocols differ only in their inputs, so one traced model scores them all)."""
        from cxr_keras.detection.configs import load_pipeline_configs

        key = str(load_pipeline_configs(pipeline_config)["model"])
        if key not in cls._cache:
            cls._cache.clear()  # keep at most one model in memory
            cls._cache[key] = cls(pipeline_config)
        return cls._cache[key]

    def restore(self, checkpoint: PathLike) -> "CheckpointDetector":
        """Load the weights of a training checkpoint (``.../ckpt-N`` prefix or its folder)."""
        import tensorflow as tf

        path = str(checkpoint)
        if os.path.isdir(path):
            latest = tf.train.latest_checkpoint(path)
            if latest is None:
                raise FileNotFoundError(f"{path}: folder holds no checkpoint")
            path = latest
        if not os.path.exists(path + ".index"):
            raise FileNotFoundError(f"{path}: checkpoint not found (no {Path(path).name}.index)")
        self._ckpt.restore(path).expect_partial()
        self.checkpoint = path
        return self

    def __call__(self, image: np.ndarray) -> dict:
        import tensorflow as tf

        if self.checkpoint is None:
            raise RuntimeError("CheckpointDetector: call restore(checkpoint) first")
        out = self._detect_fn(tf.convert_to_tensor(image[None]))
        # The model's classes are 0-based; the label map (and the exported model) are 1-based.
        return {"num_detections": int(out["num_detections"][0]),
                "detection_boxes": out["detection_boxes"][0].numpy(),
                "detection_classes": out["detection_classes"][0].numpy() + 1,
                "detection_scores": out["detection_scores"][0].numpy()}

    def run(self, record: PathLike, limit: Optional[int] = None) -> List[ImageResult]:
        return _run(record, self, limit)


class SavedModelDetector:
    """An exported detector (``exporter_main_v2 --input_type image_tensor``)."""

    def __init__(self, export_dir: PathLike):
        import tensorflow as tf

        export_dir = Path(export_dir)
        sm = export_dir / "saved_model" if (export_dir / "saved_model").is_dir() else export_dir
        if not (sm / "saved_model.pb").is_file():
            raise FileNotFoundError(f"{export_dir}: no saved_model.pb (expected the output folder "
                                    f"of cxr-keras export_detector or its saved_model/)")
        self.model = tf.saved_model.load(str(sm))
        self.path = sm

    def __call__(self, image: np.ndarray) -> dict:
        import tensorflow as tf

        out = self.model(tf.convert_to_tensor(image[None], dtype=tf.uint8))
        return {"num_detections": int(out["num_detections"][0]),
                "detection_boxes": out["detection_boxes"][0].numpy(),
                "detection_classes": out["detection_classes"][0].numpy(),
                "detection_scores": out["detection_scores"][0].numpy()}

    def run(self, record: PathLike, limit: Optional[int] = None) -> List[ImageResult]:
        return _run(record, self, limit)


def detect_checkpoint(pipeline_config: PathLike, checkpoint: PathLike, record: PathLike,
                      limit: Optional[int] = None) -> List[ImageResult]:
    """Detections of one training checkpoint on every image of ``record``."""
    return CheckpointDetector(pipeline_config).restore(checkpoint).run(record, limit)


def detect_saved_model(export_dir: PathLike, record: PathLike,
                       limit: Optional[int] = None) -> List[ImageResult]:
    """Detections of an exported SavedModel on every image of ``record``."""
    return SavedModelDetector(export_dir).run(record, limit)


def save_results(path: PathLike, results: Sequence[ImageResult], **meta) -> None:
    """Store per-image detections compactly (``.npz``) so metrics can be recomputed later."""
    from cxr_keras.io_utils import atomic_path

    def cat(arrays, shape, dtype):
        arrays = [np.asarray(a, dtype).reshape(shape) for a in arrays]
        return np.concatenate(arrays) if arrays else np.zeros(shape, dtype)

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(
                fh,
                filenames=np.array([r.filename for r in results], dtype=str),
                gt_counts=np.array([len(r.gt_labels) for r in results], np.int64),
                gt_boxes=cat([r.gt_boxes for r in results], (-1, 4), np.float32),
                gt_labels=cat([r.gt_labels for r in results], (-1,), np.int64),
                det_counts=np.array([len(r.scores) for r in results], np.int64),
                boxes=cat([r.boxes for r in results], (-1, 4), np.float32),
                classes=cat([r.classes for r in results], (-1,), np.int64),
                scores=cat([r.scores for r in results], (-1,), np.float32),
                meta=np.array(repr(meta)))


def load_results(path: PathLike) -> List[ImageResult]:
    """Inverse of :func:`save_results`."""
    path = Path(path)
    try:
        z = np.load(path, allow_pickle=False)
        gt_split = np.cumsum(z["gt_counts"])[:-1]
        det_split = np.cumsum(z["det_counts"])[:-1]
        parts = zip(z["filenames"], np.split(z["gt_boxes"], gt_split), np.split(z["gt_labels"], gt_split),
                    np.split(z["boxes"], det_split), np.split(z["classes"], det_split),
                    np.split(z["scores"], det_split))
        return [ImageResult(str(f), gb, gl, b, c, s) for f, gb, gl, b, c, s in parts]
    except (OSError, KeyError, ValueError) as exc:
        raise RecordError(f"{path}: not a detections file written by save_results ({exc})") from exc
