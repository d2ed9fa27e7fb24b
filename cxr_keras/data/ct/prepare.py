"""Organ labels and anatomy completion for source CTs that ship without organ labels (``derive`` steps).

On the working grid (after ``volumes.to_work_grid``): complete lung1 below its last slice with the
lung bases, diaphragm and upper abdomen of lung2 (:func:`complete_inferior`: lung1 stops above the
diaphragm); close the body where the scanner's field of view cut it laterally (:func:`close_lateral`);
label lungs, lobes, trachea, heart and bone by thresholds (``masks``), keeping the aorta and lesion
labels the reader found. ``volumes.clean_volume`` follows, as for every CT.
"""
from __future__ import annotations

import math
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np
from scipy import ndimage as ndi

from cxr_keras.data.ct import masks
from cxr_keras.data.ct.lesion_ct import LESION_ID, remove_lesion
from cxr_keras.data.ct.volumes import CTVolume, VolumeSpec, read_pyradiomics, to_work_grid

Spacing = Tuple[float, float, float]
AORTA_ID = masks.LABELS["aorta"]
SOFT_TISSUE_HU = (-100.0, 60.0)  # what the lateral closure is filled with (edge median, clipped)
CLOSURE_MAX_MM = 80.0  # the closure never extends the body further than this beyond the FOV
BLEND_ROWS = 2  # rows over which lung1 fades into the donor
# lung2's files in lung1's asset paths: the donor of lung1's lower chest
DONOR = VolumeSpec("pyradiomics_lung2_donor", fetch=dict, read=read_pyradiomics, ct="donor_ct",
                   labels="donor_lesion", structures=None)


# -- the derive steps of sources.SOURCES ---------------------------------------------------------------
def label_thorax(vol: CTVolume, paths: Mapping[str, str]) -> CTVolume:
    """Close the laterally cut body and label its organs by thresholds (the reader's aorta and lesion kept)."""
    hu, labels, _ = close_lateral(vol.hu, vol.labels, vol.spacing)
    aorta = labels == AORTA_ID
    found = masks.organ_masks(hu, vol.spacing, aorta if aorta.any() else None)
    out = masks.label_volume(found, labels == LESION_ID, aorta if aorta.any() else None)
    return CTVolume(hu, out, vol.spacing, dict(masks.LABELS), dict(masks.GROUPS))


def complete_and_label(vol: CTVolume, paths: Mapping[str, str]) -> CTVolume:
    """lung1: append lung2's lower chest (its mass removed) below the last slice, then :func:`label_thorax`."""
    d_hu, d_labels, d_sp = to_work_grid(DONOR.read(paths, DONOR), DONOR.edge_slices)
    d_lesion = d_labels == LESION_ID
    if d_lesion.any():
        d_hu = remove_lesion(d_hu, d_lesion, d_sp)
        d_labels = np.where(d_lesion, 0, d_labels).astype(d_labels.dtype)
    hu, labels = complete_inferior(vol.hu, vol.labels, vol.spacing, d_hu, d_labels, d_sp)
    return label_thorax(CTVolume(hu, labels, vol.spacing, vol.names, vol.groups), paths)


# -- completing a CT below its last slice -------------------------------------------------------------
def lung_slices(hu: np.ndarray) -> np.ndarray:
    """Aerated lung per slice: air < −400 HU inside the body (no airway separation needed here)."""
    return (hu < masks.AIR_HU) & masks.body_mask(hu)


def _box_mm(lung: np.ndarray, spacing: Spacing) -> np.ndarray:
    """(col0, col1, dep0, dep1) in mm of a lung mask (2-D slice or 3-D stack)."""
    c = np.nonzero(lung.any(axis=(0, 2) if lung.ndim == 3 else (1,)))[0]
    d = np.nonzero(lung.any(axis=(0, 1) if lung.ndim == 3 else (0,)))[0]
    return np.array([c.min() * spacing[1], (c.max() + 1) * spacing[1],
                     d.min() * spacing[2], (d.max() + 1) * spacing[2]])


def _box_map(box: np.ndarray, dbox: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Scale and offset (mm) taking target box coordinates to donor box coordinates."""
    scale = np.array([(dbox[1] - dbox[0]) / (box[1] - box[0]), (dbox[3] - dbox[2]) / (box[3] - box[2])])
    return scale, np.array([dbox[0] - scale[0] * box[0], dbox[2] - scale[1] * box[2]])


def _resample_slices(vol: np.ndarray, src_sp: Spacing, dst_sp: Spacing, dst_shape: Tuple[int, int],
                     scale: np.ndarray, offset_mm: np.ndarray, order: int, cval: float) -> np.ndarray:
    """Map donor slices onto the target (cols, depth) grid: x_src = scale·x_dst + offset (mm)."""
    matrix = scale * np.asarray(dst_sp[1:]) / np.asarray(src_sp[1:])
    offset = offset_mm / np.asarray(src_sp[1:])
    out = np.empty((vol.shape[0],) + tuple(dst_shape), vol.dtype)
    for r in range(vol.shape[0]):
        out[r] = ndi.affine_transform(vol[r], matrix, offset, output_shape=dst_shape, order=order,
                                      mode="constant", cval=cval)
    return out


def match_row(short: np.ndarray, sp: Spacing, donor: np.ndarray, donor_sp: Spacing) -> Tuple[int, float]:
    """The donor slice (at or below its widest lung section) whose lungs, scaled onto the short CT's
    last slice by their bounding boxes, overlap that slice's lungs best → (row, Dice)."""
    last = short[-1]
    box = _box_mm(last, sp)
    best = (int(np.argmax(donor.sum(axis=(1, 2)))), -1.0)
    for j in range(best[0], donor.shape[0]):
        if not donor[j].any():
            break
        scale, offset = _box_map(box, _box_mm(donor[j], donor_sp))
        moved = _resample_slices(donor[j: j + 1].astype(np.uint8), donor_sp, sp, last.shape, scale, offset, 0, 0)[0]
        dice = 2.0 * float((moved.astype(bool) & last).sum()) / float(moved.sum() + last.sum())
        if dice > best[1]:
            best = (j, dice)
    return best


def complete_inferior(hu: np.ndarray, labels: np.ndarray, sp: Spacing, donor_hu: np.ndarray,
                      donor_labels: np.ndarray, donor_sp: Spacing) -> Tuple[np.ndarray, np.ndarray]:
    """Append the donor's slices below the one that best matches ``hu``'s last slice (lung shape),
    scaled in-plane so that the lung boxes coincide, fading over ``BLEND_ROWS`` rows → (hu, labels)."""
    if abs(sp[0] - donor_sp[0]) > 1e-3:
        z = donor_sp[0] / sp[0]
        donor_hu = ndi.zoom(donor_hu, (z, 1, 1), order=1)
        donor_labels = ndi.zoom(donor_labels, (z, 1, 1), order=0)
    lungs, d_lungs = lung_slices(hu), lung_slices(donor_hu)
    j, _ = match_row(lungs, sp, d_lungs, donor_sp)
    k = BLEND_ROWS
    scale, offset = _box_map(_box_mm(lungs[-k - 1:], sp), _box_mm(d_lungs[j - k: j + 1], donor_sp))
    tail = slice(j - k + 1, None)
    t_hu = _resample_slices(donor_hu[tail], donor_sp, sp, hu.shape[1:], scale, offset, 1, -1000.0)
    t_labels = _resample_slices(donor_labels[tail], donor_sp, sp, hu.shape[1:], scale, offset, 0, 0)
    w = (np.arange(1, k + 1, dtype=np.float32) / (k + 1))[:, None, None]
    out_hu = np.concatenate([hu[:-k], (1 - w) * hu[-k:] + w * t_hu[:k], t_hu[k:]]).astype(np.float32)
    return out_hu, np.concatenate([labels, t_labels[k:]])


# -- closing a laterally truncated body ----------------------------------------------------------------
def _ellipse_fit(x_mm: np.ndarray, thick_mm: np.ndarray) -> Optional[Tuple[float, float]]:
    """Fit T² = α + β·x² (an ellipse's chord) → (α, β) with β < 0, else None."""
    if x_mm.size < 4:
        return None
    beta, alpha = np.polyfit(x_mm ** 2, thick_mm ** 2, 1)
    return (float(alpha), float(beta)) if beta < 0 and alpha > 0 else None


def _closure_plans(hu: np.ndarray, body: np.ndarray, sp: Spacing) -> List[Dict]:
    """Per axial slice and cut side: the ellipse that continues the body beyond the FOV edge."""
    n_cols = hu.shape[1]
    centre = 0.5 * (n_cols - 1)
    cols = np.arange(n_cols)
    plans = []
    for r in range(hu.shape[0]):
        thick = body[r].sum(axis=1) * sp[2]
        for edge, sign in ((0, -1), (n_cols - 1, 1)):
            if not body[r, edge].any():
                continue
            outer = (sign * (cols - centre) > (n_cols / 6)) & (thick > 0)
            fit = _ellipse_fit(np.abs(cols[outer] - centre) * sp[1], thick[outer])
            x_edge = abs(edge - centre) * sp[1]
            a = math.sqrt(-fit[0] / fit[1]) if fit else x_edge + 10.0
            deps = np.nonzero(body[r, edge])[0]
            plans.append(dict(row=r, sign=sign, x_edge=x_edge, fit=fit, t_edge=thick[edge],
                              a=min(max(a, x_edge + 5.0), x_edge + CLOSURE_MAX_MM),
                              centre_mm=0.5 * (deps.min() + deps.max()) * sp[2],
                              hu=float(np.clip(np.median(hu[r, edge][body[r, edge]]), *SOFT_TISSUE_HU))))
    return plans


def close_lateral(hu: np.ndarray, labels: np.ndarray, sp: Spacing) -> Tuple[np.ndarray, np.ndarray, int]:
    """Where the body touches the left/right edge of the field of view, continue it outside as the
    ellipse fitted to its antero-posterior thickness in the outer third (soft tissue, ≤ 80 mm), so
    that the projection shows a chest wall and skin line instead of a cut → (hu, labels, columns added per side)."""
    plans = _closure_plans(hu, masks.body_mask(hu), sp)
    pad = max([int(math.ceil((p["a"] - p["x_edge"]) / sp[1])) for p in plans], default=0)
    if pad == 0:
        return hu, labels, 0
    n_cols = hu.shape[1]
    hu = np.pad(hu, ((0, 0), (pad, pad), (0, 0)), constant_values=-1000.0)
    labels = np.pad(labels, ((0, 0), (pad, pad), (0, 0)))
    d_mm = np.arange(hu.shape[2]) * sp[2]
    for p in plans:
        for i in range(1, pad + 1):
            x = p["x_edge"] + i * sp[1]
            if x >= p["a"]:
                break
            if p["fit"]:
                t = math.sqrt(max(0.0, p["fit"][0] + p["fit"][1] * x * x))
            else:  # no usable fit: a quarter ellipse from the edge thickness down to zero at ``a``
                t = p["t_edge"] * math.sqrt(1 - ((x - p["x_edge"]) / (p["a"] - p["x_edge"])) ** 2)
            col = pad - i if p["sign"] < 0 else pad + n_cols - 1 + i
            hu[p["row"], col, np.abs(d_mm - p["centre_mm"]) <= min(t, p["t_edge"]) / 2] = p["hu"]
    return hu, labels, pad
