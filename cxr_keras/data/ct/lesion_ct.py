"""The scans' own lesions (pyradiomics lung1: a 1.4 mL nodule; lung2: a 48 mL mass), label ``lesion_ct``.

They are real pathology but not one of the six findings, so:

- an image with finding boxes shows its CT's lesion unaltered: :func:`protect` restores its voxels
  after the finding lesions are drawn, and :func:`lesion_box` reports it as a ``lesion_ct`` box,
  which the NIH folder writer records beside ``BBox_List_2017.csv``, never in it;
- an image without boxes ("No Finding") must not show a mass: its CT is projected with the lesion
  filled by the surrounding lung (:func:`remove_lesion`, done once per scene), as is lung2's mass
  where lung2 completes lung1 below the diaphragm.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from cxr_keras.data.ct import masks

LESION_LABEL = "lesion_ct"
LESION_ID = masks.LABELS[LESION_LABEL]


def lesion_mask(names, labels: np.ndarray) -> Optional[np.ndarray]:
    """The scan's own lesion in a label map with structure ``names``; None if it has none."""
    if LESION_LABEL not in names:
        return None
    m = labels == names[LESION_LABEL]
    return m if m.any() else None


def remove_lesion(hu: np.ndarray, lesion: np.ndarray, spacing, seed: int = 0) -> np.ndarray:
    """A copy of ``hu`` with the lesion (dilated 2 mm) replaced by the median HU of the aerated lung
    5–15 mm around it, plus a little noise (seeded: the same fill every time)."""
    core = masks.dilate_mm(lesion, 2.0, spacing)
    shell = masks.dilate_mm(lesion, 15.0, spacing) & ~masks.dilate_mm(lesion, 5.0, spacing)
    aerated = shell & (hu < masks.AIR_HU)
    fill = float(np.median(hu[aerated])) if aerated.sum() >= 50 else float(np.median(hu[shell]))
    out = hu.copy()
    out[core] = fill + np.random.default_rng(seed).normal(0.0, 15.0, int(core.sum())).astype(np.float32)
    return out


def protect(scene, hu: np.ndarray) -> None:
    """Put the scene's real lesion back into ``hu`` (a copy of its HU) after finding lesions were drawn."""
    if scene.lesion_idx is not None:
        hu.flat[scene.lesion_idx] = scene.vol.hu.flat[scene.lesion_idx]


def lesion_box(scene, frame) -> Optional[Tuple[str, float, float, float, float]]:
    """The real lesion's ``("lesion_ct", x, y, w, h)`` in 1024² pixels for this frame; None if it has
    none or it falls outside the frame."""
    if scene.lesion_thick is None:
        return None
    box = frame.box(scene.lesion_thick, scene.pad)
    return None if box is None else (LESION_LABEL,) + tuple(box)
