"""The CT renderer: a frontal chest radiograph of a source CT with a lesion drawn in 3D per NIH box.

``CTRenderer`` is the picklable renderer that ``cxr_keras.data.nih_folder.write_nih_folder`` calls:
the volume is resolved (fetched / verified) in the constructor and loaded lazily, once per process.
Each lesion is placed so that the 2D bounding box of its projected 3D mask lands near the real NIH
box it imitates; that drawn box is what the renderer returns.
"""
from __future__ import annotations

import functools
import os
import zlib
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from cxr_keras.data.ct.lesions import LESION_FINDINGS, LESIONS
from cxr_keras.data.ct.physics import drr_to_uint8, hu_to_mu, project_ap
from cxr_keras.data.ct.scene import Scene
from cxr_keras.data.ct.volumes import DEFAULT_SOURCE, CTVolume, load_source, volume_spec
from cxr_keras.data.images import NIH_IMAGE_SIZE, Box, clip_box


def render(scene: Scene, boxes: Sequence[Box], rng: np.random.Generator,
           size: int = NIH_IMAGE_SIZE) -> Tuple[np.ndarray, List[Box]]:
    """One radiograph of ``scene`` with a lesion per box → (uint8 [size, size], drawn boxes in 1024² px)."""
    # independent streams: the same rng gives the same view, exposure and noise with or without lesions
    frame_rng, lesion_rng, look_rng = (np.random.default_rng(int(s)) for s in rng.integers(0, 2 ** 63 - 1, 3))
    frame = scene.frame(frame_rng, size)
    L = scene.L
    drawn: List[Tuple[str, tuple, np.ndarray]] = []
    if boxes:
        hu = scene.vol.hu.copy()
        labels = scene.vol.labels
        touched = None
        for b in boxes:
            if len(b) != 5:
                raise ValueError(f"box {b!r}: expected (finding, x, y, w, h)")
            finding, x, y, w, h = b
            fn = LESIONS.get(str(finding))
            if fn is None:
                raise ValueError(f"unknown finding {finding!r}; the CT renderer draws {', '.join(LESION_FINDINGS)}")
            if not (w > 0 and h > 0):
                raise ValueError(f"{finding} box {b!r}: width and height must be positive")
            rect = frame.source_rect(float(x), float(y), float(w), float(h), scene.spacing[:2])
            sl, mask = fn(scene, hu, labels, rect, lesion_rng)
            thick = np.zeros(scene.shape[:2], np.float32)
            thick[sl[0], sl[1]] = mask.sum(axis=2) * scene.spacing[2]
            drawn.append((str(finding), (float(x), float(y), float(w), float(h)), thick))
            touched = sl[:2] if touched is None else tuple(
                slice(min(a.start, b_.start), max(a.stop, b_.stop)) for a, b_ in zip(touched, sl[:2]))
        L = scene.L.copy()
        L[touched] = project_ap(hu_to_mu(hu[touched]), scene.spacing)
    padded = scene.L_pad if L is scene.L else scene.pad_rows(L, smooth=True)
    P = frame.warp(padded)
    span = scene.bright - scene.dark
    r = look_rng
    dark = scene.dark + span * r.uniform(-0.12, 0.12)
    img = drr_to_uint8(P, dark, dark + span * r.uniform(0.9, 1.1), contrast=r.uniform(0.85, 1.15),
                       gamma=r.uniform(0.85, 1.15), detail=r.uniform(0.8, 1.4),
                       equalise=r.uniform(0.2, 0.45), noise=r.uniform(0.006, 0.014) * span, rng=r)
    out: List[Box] = []
    for finding, target, thick in drawn:
        box = frame.box(thick, scene.pad)
        xyxy = None if box is None else clip_box(box, NIH_IMAGE_SIZE, NIH_IMAGE_SIZE)
        if xyxy is None:  # the lesion fell outside the frame: keep the label honest, drop the box
            continue
        x0, y0, x1, y1 = xyxy
        out.append((finding, x0, y0, round(x1 - x0, 1), round(y1 - y0, 1)))
    return img, out


class CTRenderer:
    """Picklable renderer for ``nih_folder.write_nih_folder``: ``(image_name, boxes, rng) -> (uint8, boxes)``.

    ``source`` names the CT (``volumes.SOURCES``); ``assets`` its files (default: fetched by the
    source's spec); ``volume`` replaces it by a ready volume (e.g. ``synthetic_chest_volume()`` in tests).
    """

    def __init__(self, seed: int = 0, assets: Optional[Dict[str, os.PathLike]] = None,
                 volume: Optional[CTVolume] = None, size: int = NIH_IMAGE_SIZE, source: str = DEFAULT_SOURCE):
        self.seed = int(seed)
        self.size = int(size)
        self.volume = volume
        self.source = source
        spec = volume_spec(source)
        if volume is None and assets is None:
            assets = spec.fetch()
        self.assets = None if assets is None else {k: str(v) for k, v in assets.items()}
        self._scene: Optional[Scene] = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_scene"] = None  # rebuilt in each worker process
        return state

    def scene(self) -> Scene:
        if self._scene is None:
            if self.volume is not None:
                self._scene = Scene(self.volume)
            else:
                self._scene = _scene_cached(self.source, tuple(sorted(self.assets.items())))
        return self._scene

    def __call__(self, image_name: str, boxes: Sequence[Box], rng: Optional[np.random.Generator] = None):
        if rng is None:
            rng = np.random.default_rng([self.seed, zlib.crc32(str(image_name).encode("utf-8"))])
        return render(self.scene(), list(boxes), rng, self.size)


@functools.lru_cache(maxsize=2)
def _scene_cached(source: str, paths: Tuple[Tuple[str, str], ...]) -> Scene:
    return Scene(load_source(source, paths))
