"""The CT renderer: a frontal chest radiograph of a source CT with a lesion drawn in 3D per NIH box.

``CTRenderer`` is the picklable renderer that ``cxr_keras.data.nih_folder.write_nih_folder`` calls.
Each image is rendered from the source CT its NIH patient id maps to (``ct_map``: four real CTs,
used equally). The CTs are fetched and prepared in the constructor (``sources``: once, then cached on
disk) and loaded lazily, once per worker process. Each lesion is placed so that the 2D bounding box
of its projected 3D mask lands near the real NIH box it imitates; that drawn box is what the
renderer returns, followed by a ``lesion_ct`` box for the CT's own lesion (lung1, lung2) when the
image has findings (``lesion_ct``).
"""
from __future__ import annotations

import functools
import os
import zlib
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from cxr_keras.data.ct import ct_map, lesion_ct
from cxr_keras.data.ct.lesions import LESION_FINDINGS, LESIONS
from cxr_keras.data.ct.physics import drr_to_uint8, hu_to_mu, project_ap
from cxr_keras.data.ct.scene import Scene
from cxr_keras.data.ct.sources import CT_SOURCES, DEFAULT_SOURCE, load_prepared, prepare_source, volume_spec
from cxr_keras.data.ct.volumes import CTVolume
from cxr_keras.data.images import NIH_IMAGE_SIZE, Box, clip_box


def _draw_lesions(scene: Scene, frame, boxes: Sequence[Box], rng: np.random.Generator):
    """Draw a lesion per box into a copy of the CT → (line integrals, [(finding, thickness map)])."""
    hu = scene.vol.hu.copy()
    labels = scene.vol.labels
    touched = None
    drawn: List[Tuple[str, np.ndarray]] = []
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
        sl, mask = fn(scene, hu, labels, rect, rng)
        thick = np.zeros(scene.shape[:2], np.float32)
        thick[sl[0], sl[1]] = mask.sum(axis=2) * scene.spacing[2]
        drawn.append((str(finding), thick))
        touched = sl[:2] if touched is None else tuple(
            slice(min(a.start, b_.start), max(a.stop, b_.stop)) for a, b_ in zip(touched, sl[:2]))
    lesion_ct.protect(scene, hu)  # the CT's own lesion stays as scanned
    L = scene.L.copy()
    L[touched] = project_ap(hu_to_mu(hu[touched]), scene.spacing)
    return L, drawn


def render(scene: Scene, boxes: Sequence[Box], rng: np.random.Generator,
           size: int = NIH_IMAGE_SIZE) -> Tuple[np.ndarray, List[Box]]:
    """One radiograph of ``scene`` with a lesion per box → (uint8 [size, size], drawn boxes in 1024² px,
    then the CT's own ``lesion_ct`` box if the image has boxes and the CT a lesion)."""
    # independent streams: the same rng gives the same view, exposure and noise with or without lesions
    frame_rng, lesion_rng, look_rng = (np.random.default_rng(int(s)) for s in rng.integers(0, 2 ** 63 - 1, 3))
    frame = scene.frame(frame_rng, size)
    drawn: List[Tuple[str, np.ndarray]] = []
    if boxes:
        L, drawn = _draw_lesions(scene, frame, boxes, lesion_rng)
        padded = scene.pad_rows(L, smooth=True)
    else:
        padded = scene.L_pad_healthy  # without findings: without the CT's own lesion too
    P = frame.warp(padded)
    span = scene.bright - scene.dark
    r = look_rng
    dark = scene.dark + span * r.uniform(-0.12, 0.12)
    img = drr_to_uint8(P, dark, dark + span * r.uniform(0.9, 1.1), contrast=r.uniform(0.85, 1.15),
                       gamma=r.uniform(0.85, 1.15), detail=r.uniform(0.8, 1.4),
                       equalise=r.uniform(0.2, 0.45), noise=r.uniform(0.006, 0.014) * span, rng=r)
    out: List[Box] = []
    for finding, thick in drawn:
        box = frame.box(thick, scene.pad)
        xyxy = None if box is None else clip_box(box, NIH_IMAGE_SIZE, NIH_IMAGE_SIZE)
        if xyxy is None:  # the lesion fell outside the frame: keep the label honest, drop the box
            continue
        x0, y0, x1, y1 = xyxy
        out.append((finding, x0, y0, round(x1 - x0, 1), round(y1 - y0, 1)))
    real = lesion_ct.lesion_box(scene, frame) if boxes else None
    return img, out + ([real] if real else [])


class CTRenderer:
    """Picklable renderer for ``nih_folder.write_nih_folder``: ``(image_name, boxes, rng) -> (uint8, boxes)``.

    ``source``: one CT (``sources.SOURCES``) for every image; None: each image's CT by its patient id
    among all of ``CT_SOURCES`` (:meth:`source_for`). ``assets``: the files of a single CT (default:
    fetched by its spec); ``volume``: a ready volume, or {source: volume}, instead (tests). ``assets``
    or a single ``volume`` without ``source`` mean ``DEFAULT_SOURCE``.
    """

    def __init__(self, seed: int = 0, assets: Optional[Dict[str, os.PathLike]] = None,
                 volume: Union[CTVolume, Mapping[str, CTVolume], None] = None, size: int = NIH_IMAGE_SIZE,
                 source: Optional[str] = None):
        self.seed = int(seed)
        self.size = int(size)
        if isinstance(volume, Mapping):
            self.volumes = dict(volume)
        elif volume is not None:
            self.volumes = {source or DEFAULT_SOURCE: volume}
        else:
            self.volumes = {}
        if self.volumes:
            self.sources = tuple(self.volumes)
        else:
            self.sources = (source,) if source else (DEFAULT_SOURCE,) if assets is not None else CT_SOURCES
        for s in self.sources:
            volume_spec(s)  # an unknown name is a clear error now, not in a worker
        self.prepared: Dict[str, str] = {}
        if not self.volumes:  # fetch, verify and prepare every CT once, here (workers only load)
            for s in self.sources:
                files = assets if assets is not None else volume_spec(s).fetch()
                self.prepared[s] = str(prepare_source(s, files))
        self.table = ct_map.shipped_table(self.sources) if len(self.sources) > 1 else {}
        self._scenes: Dict[str, Scene] = {}

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_scenes"] = {}  # rebuilt in each worker process
        return state

    def source_for(self, image_name: str) -> str:
        """The CT an image is rendered from (deterministic in its patient id)."""
        if len(self.sources) == 1:
            return self.sources[0]
        return ct_map.ct_for_image(image_name, self.sources, self.table)

    def image_info(self, image_name: str) -> Dict[str, str]:
        """What the NIH folder writer records per image: ``{"ct_source": name}``."""
        return {"ct_source": self.source_for(image_name)}

    def scene(self, source: Optional[str] = None) -> Scene:
        """The scene of ``source`` (default: the first CT), built once per process."""
        source = source or self.sources[0]
        if source not in self._scenes:
            if source in self.volumes:
                self._scenes[source] = Scene(self.volumes[source])
            elif source in self.prepared:
                self._scenes[source] = _scene_cached(self.prepared[source])
            else:
                raise ValueError(f"CT source {source!r} is not one of this renderer's: {', '.join(self.sources)}")
        return self._scenes[source]

    def render_from(self, source: str, image_name: str, boxes: Sequence[Box],
                    rng: Optional[np.random.Generator] = None):
        """Render an image from a given CT (the contact sheet shows every CT)."""
        if rng is None:
            rng = np.random.default_rng([self.seed, zlib.crc32(str(image_name).encode("utf-8"))])
        return render(self.scene(source), list(boxes), rng, self.size)

    def __call__(self, image_name: str, boxes: Sequence[Box], rng: Optional[np.random.Generator] = None):
        return self.render_from(self.source_for(image_name), image_name, boxes, rng)


@functools.lru_cache(maxsize=len(CT_SOURCES))
def _scene_cached(prepared: str) -> Scene:
    return Scene(load_prepared(prepared))
