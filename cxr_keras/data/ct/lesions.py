"""Lesions as HU edits of the volume inside its organ labels, made *before* projection.

They look anatomical: fluid layers under a meniscus, a dilated heart, a collapsed lung with a
pleural line, patchy or lobar consolidation, atelectasis, lobulated nodules. Each lesion function
``(scene, hu, labels, rect, rng) -> (slices, mask)`` edits ``hu`` in place near the source
rectangle ``rect`` of its NIH box and returns the 3D mask whose projection gives the drawn box.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

from cxr_keras.data.ct.scene import Scene, SrcRect

LESION_FINDINGS = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltrate", "Pneumonia",
                   "Pneumothorax", "Mass", "Nodule")


def _slices(scene: Scene, r0, r1, c0, c1, d0=0, d1=None):
    R, C, D = scene.shape
    d1 = D if d1 is None else d1
    return (slice(int(max(0, math.floor(r0))), int(min(R, math.ceil(r1)))),
            slice(int(max(0, math.floor(c0))), int(min(C, math.ceil(c1)))),
            slice(int(max(0, math.floor(d0))), int(min(D, math.ceil(d1)))))


def _grid(sl):
    return np.meshgrid(*(np.arange(s.start, s.stop, dtype=np.float32) for s in sl), indexing="ij")


def _smooth_noise(rng, shape, sigma_vox, coarse: int = 3) -> np.ndarray:
    """Zero-mean, unit-std smooth random field (drawn coarse, then upsampled: cheap)."""
    small = tuple(max(2, int(math.ceil(n / coarse))) for n in shape)
    f = ndi.gaussian_filter(rng.standard_normal(small).astype(np.float32),
                            [max(0.5, s / coarse) for s in sigma_vox])
    f = ndi.zoom(f, [n / m for n, m in zip(shape, small)], order=1)[: shape[0], : shape[1], : shape[2]]
    f = np.pad(f, [(0, n - m) for n, m in zip(shape, f.shape)], mode="edge")
    return ((f - f.mean()) / (f.std() + 1e-6)).astype(np.float32)


def _lung_depth_centre(scene: Scene, rect: SrcRect, ids) -> float:
    sl = _slices(scene, rect.r0, rect.r1 + 1, rect.c0, rect.c1 + 1)
    m = np.isin(scene.vol.labels[sl], ids)
    if not m.any():
        m = np.isin(scene.vol.labels, ids)
    return float(np.nonzero(m)[2].mean())


def _lungish(hu_sub: np.ndarray, lab_sub: np.ndarray, ids) -> np.ndarray:
    """The lung labels plus aerated voxels just outside them (the label map is a little tight)."""
    lung = np.isin(lab_sub, ids)
    return (lung | (ndi.binary_dilation(lung, iterations=2) & (hu_sub < -300.0))).astype(np.float32)


def _lateral(side: str) -> int:
    return -1 if side == "right" else 1  # columns run patient right → left


def lesion_effusion(scene: Scene, hu, labels, rect: SrcRect, rng):
    """Fluid (~+15 HU) filling the lower pleural space of one lung up to a lateral meniscus."""
    side = scene.side_for(rect)
    rect = scene.snap_into(rect, side)
    ids = scene.lobe_ids[side]
    rr, cc = np.nonzero(scene.side_proj[side] > 0)
    top, bottom = rr.min(), rr.max() + 1
    r_top = float(np.clip(rect.r0, top + 0.15 * (bottom - top), bottom - 0.12 * (bottom - top)))
    lat = _lateral(side)
    c_lat_box, c_med_box = (rect.c0, rect.c1) if side == "right" else (rect.c1, rect.c0)
    span = max(abs(c_med_box - c_lat_box), 0.25 * (cc.max() - cc.min()))
    c_med_box = c_lat_box - lat * span
    sl = _slices(scene, r_top - 1, bottom + 1, cc.min(), cc.max() + 1)
    R, C, _ = _grid(sl)
    t = np.clip((C - c_lat_box) * (-lat) / span, 0.0, None)  # 0 laterally, 1 at the box's medial edge
    k = rng.uniform(0.25, 0.4) * (bottom - r_top)
    # meniscus: concave upwards, highest at the chest wall, falling steeply past the box
    level = r_top + k * t * t
    fade = np.clip(1.6 - t, 0.0, 1.0)  # the layer thins out medially past the box
    a = np.clip(R - level + 0.5, 0.0, 1.0) * fade * _lungish(hu[sl], labels[sl], ids)
    sub = hu[sl]
    fluid_hu = 15.0 + 4.0 * rng.standard_normal(sub.shape).astype(np.float32)
    sub[:] = sub + a * (fluid_hu - sub)
    return sl, a > 0.5


def lesion_cardiomegaly(scene: Scene, hu, labels, rect: SrcRect, rng):
    """A dilated heart (scaled about its centre, shifted slightly towards the target box)."""
    heart = np.isin(labels, scene.heart_ids)
    idx = np.nonzero(heart)
    lo = np.array([i.min() for i in idx], float)
    hi = np.array([i.max() + 1 for i in idx], float)
    centre = np.array([i.mean() for i in idx], float)
    width, height = hi[1] - lo[1], hi[0] - lo[0]
    s_c = float(np.clip((rect.c1 - rect.c0) / width * rng.uniform(0.95, 1.05), 1.12, 1.7))
    s_r = float(np.clip((rect.r1 - rect.r0) / height * rng.uniform(0.95, 1.05), 1.0, 1.45))
    scale = np.array([s_r, s_c, 1 + 0.5 * (s_c - 1)])
    anchor = np.array([lo[0], centre[1], centre[2]])  # the heart hangs from the great vessels
    new_lo, new_hi = anchor + scale * (lo - anchor), anchor + scale * (hi - anchor)
    limit = np.array([15.0, 20.0, 0.0]) / scene.spacing
    want = np.array([rect.r0 - new_lo[0], rect.cc - 0.5 * (new_lo[1] + new_hi[1]), 0.0])
    shift = np.clip(want, -limit, limit)
    centre = anchor
    new_lo, new_hi = new_lo + shift, new_hi + shift
    sl = _slices(scene, new_lo[0] - 1, new_hi[0] + 1, new_lo[1] - 1, new_hi[1] + 1, new_lo[2] - 1, new_hi[2] + 1)
    grid = _grid(sl)
    src = [centre[a] + (grid[a] - centre[a] - shift[a]) / scale[a] for a in range(3)]
    dil = ndi.map_coordinates(heart.astype(np.float32), src, order=1, mode="constant") > 0.5
    sub = hu[sl]
    new = dil & ~heart[sl] & (sub < 150.0)
    sub[new] = 42.0 + 3.0 * rng.standard_normal(int(new.sum())).astype(np.float32)
    return sl, dil


def lesion_pneumothorax(scene: Scene, hu, labels, rect: SrcRect, rng):
    """Lung collapsed towards the hilum under the box: air without vessels and a visceral pleural line."""
    side = scene.side_for(rect)
    rect = scene.snap_into(rect, side)
    ids = scene.lobe_ids[side]
    lung = np.isin(labels, ids)
    idx = np.nonzero(lung)
    centre = np.array([i.mean() for i in idx])
    medial = idx[1].min() if side == "left" else idx[1].max()
    hilum = centre.copy()
    hilum[1] = centre[1] + 0.6 * (medial - centre[1])
    sig = np.array([10.0, 10.0]) / scene.spacing[:2]  # fall-off of the collapse outside the box
    sl = _slices(scene, rect.r0 - 3 * sig[0], rect.r1 + 3 * sig[0], rect.c0 - 3 * sig[1], rect.c1 + 3 * sig[1],
                 idx[2].min() - 1, idx[2].max() + 2)
    R, C, Dd = _grid(sl)
    dr = np.maximum(np.maximum(rect.r0 - R, R - rect.r1), 0) / sig[0]
    dc = np.maximum(np.maximum(rect.c0 - C, C - rect.c1), 0) / sig[1]
    w = np.exp(-0.5 * (dr ** 2 + dc ** 2)).astype(np.float32)
    k = rng.uniform(0.15, 0.3)
    src = [g + w * k * (g - h) for g, h in zip((R, C, Dd), hilum)]
    lung_sub = lung[sl]
    m = ndi.map_coordinates(lung.astype(np.float32), src, order=1, mode="constant") * lung_sub  # soft
    texture = ndi.map_coordinates(hu, src, order=1, mode="nearest") + 40.0 * w  # collapsed: denser
    line = 4.0 * m * (1.0 - m) * (w > 0.3)  # the visceral pleura at the new lung surface
    sub = hu[sl]
    sub[:] = np.where(lung_sub, m * texture + (1.0 - m) * -1000.0 + 700.0 * line, sub)
    return sl, lung_sub & (m < 0.5)


def _consolidation(scene, hu, labels, rect, rng, *, lobar: bool, fill: float, hu_range, depth_mm,
                   flatten: float = 1.0):
    side = scene.side_for(rect)
    rect = scene.snap_into(rect, side)
    ids = scene.lobes_for(rect, side) if lobar else scene.lobe_ids[side]
    dc = _lung_depth_centre(scene, rect, ids)
    hr = max(0.5 * (rect.r1 - rect.r0) * flatten, 6.0 / scene.spacing[0])
    hc = max(0.5 * (rect.c1 - rect.c0), 6.0 / scene.spacing[1])
    hd = depth_mm / scene.spacing[2]
    sl = _slices(scene, rect.rc - hr - 1, rect.rc + hr + 1, rect.cc - hc - 1, rect.cc + hc + 1,
                 dc - hd - 1, dc + hd + 1)
    R, C, Dd = _grid(sl)
    e = 1.0 - ((R - rect.rc) / hr) ** 2 - ((C - rect.cc) / hc) ** 2 - ((Dd - dc) / hd) ** 2
    noise = _smooth_noise(rng, R.shape, 7.0 / scene.spacing)
    thr = float(np.quantile(noise, 1.0 - fill))
    a = np.clip(3.0 * e, 0, 1) * np.clip((noise - thr) / 0.6 + 0.5, 0, 1)
    inside = np.isin(labels[sl], ids)
    a = np.where(inside, a, 0.0).astype(np.float32)
    target = rng.uniform(*hu_range)
    sub = hu[sl]
    sub[:] = np.where(inside, np.maximum(sub, sub + a * (target - sub)), sub)
    return sl, a > 0.5


def lesion_infiltrate(scene, hu, labels, rect, rng):
    """Patchy ground-glass to consolidative opacities within the box's lung region."""
    return _consolidation(scene, hu, labels, rect, rng, lobar=False, fill=rng.uniform(0.45, 0.65),
                          hu_range=(-250.0, 0.0), depth_mm=rng.uniform(40.0, 70.0))


def lesion_pneumonia(scene, hu, labels, rect, rng):
    """Lobar consolidation: dense (−100..+40 HU), confluent, confined to one lobe."""
    return _consolidation(scene, hu, labels, rect, rng, lobar=True, fill=rng.uniform(0.65, 0.85),
                          hu_range=(-100.0, 40.0), depth_mm=rng.uniform(45.0, 75.0))


def lesion_atelectasis(scene, hu, labels, rect, rng):
    """Volume loss: lobe tissue pulled towards a flattened core that becomes dense."""
    side = scene.side_for(rect)
    rect = scene.snap_into(rect, side)
    lobe = scene.lobe_for(rect, side)
    dc = _lung_depth_centre(scene, rect, [lobe])
    pad_r, pad_c = 15.0 / scene.spacing[0], 15.0 / scene.spacing[1]
    hd = rng.uniform(35.0, 55.0) / scene.spacing[2]
    sl = _slices(scene, rect.r0 - pad_r, rect.r1 + pad_r, rect.c0 - pad_c, rect.c1 + pad_c, dc - 2 * hd, dc + 2 * hd)
    R, C, Dd = _grid(sl)
    centre = (rect.rc, rect.cc, dc)
    # crowding: sample tissue from further out (vessels converge), inside the lobe only
    hr, hc = max(0.5 * (rect.r1 - rect.r0), 2.0), max(0.5 * (rect.c1 - rect.c0), 2.0)
    e = 1.0 - ((R - centre[0]) / (hr + pad_r)) ** 2 - ((C - centre[1]) / (hc + pad_c)) ** 2 \
        - ((Dd - dc) / (2 * hd)) ** 2
    w = np.clip(2.0 * e, 0, 1).astype(np.float32)
    src = [g + 0.35 * w * (g - c0) for g, c0 in zip((R, C, Dd), centre)]
    inside = labels[sl] == lobe
    texture = ndi.map_coordinates(hu, src, order=1, mode="nearest")
    sub = hu[sl]
    sub[:] = np.where(inside & (w > 0), texture, sub)
    # the collapsed core: plate-like (flattened across the box's short side)
    flat_r = 0.55 if rect.r1 - rect.r0 < rect.c1 - rect.c0 else 1.0
    core = 1.0 - ((R - centre[0]) / (hr * flat_r)) ** 2 - ((C - centre[1]) / hc) ** 2 - ((Dd - dc) / hd) ** 2
    noise = _smooth_noise(rng, R.shape, 6.0 / scene.spacing)
    a = np.clip(3.0 * core + 0.35 * noise, 0, 1) * inside
    target = rng.uniform(-150.0, 30.0)
    sub[:] = np.maximum(sub, sub + a * (target - sub))
    return sl, a > 0.5


def lesion_nodule(scene, hu, labels, rect, rng):
    """A lobulated soft-tissue sphere (Mass / Nodule) centred on the box."""
    side = scene.side_for(rect)
    rect = scene.snap_into(rect, side, min_frac=0.3)
    dc = _lung_depth_centre(scene, rect, scene.lobe_ids[side])
    rad_mm = 0.5 * min((rect.r1 - rect.r0) * scene.spacing[0], (rect.c1 - rect.c0) * scene.spacing[1])
    rad_mm = max(rad_mm, 5.0)
    rv = rad_mm / scene.spacing
    sl = _slices(scene, rect.rc - rv[0] - 2, rect.rc + rv[0] + 2, rect.cc - rv[1] - 2, rect.cc + rv[1] + 2,
                 dc - rv[2] - 2, dc + rv[2] + 2)
    R, C, Dd = _grid(sl)
    dist = np.sqrt(((R - rect.rc) / rv[0]) ** 2 + ((C - rect.cc) / rv[1]) ** 2 + ((Dd - dc) / rv[2]) ** 2)
    dist = dist + 0.12 * _smooth_noise(rng, R.shape, 0.3 * rv)
    ball = dist <= 1.0
    sub = hu[sl]
    sub[ball] = np.maximum(sub[ball], 35.0 + 6.0 * rng.standard_normal(int(ball.sum())).astype(np.float32))
    return sl, ball


LESIONS = {
    "Atelectasis": lesion_atelectasis,
    "Cardiomegaly": lesion_cardiomegaly,
    "Effusion": lesion_effusion,
    "Infiltrate": lesion_infiltrate,
    "Infiltration": lesion_infiltrate,
    "Pneumonia": lesion_pneumonia,
    "Pneumothorax": lesion_pneumothorax,
    "Mass": lesion_nodule,
    "Nodule": lesion_nodule,
}
