"""Frontal chest radiographs projected from a real chest CT, with lesions drawn in 3D.

The CT and its organ label map (``cxr_keras.data.assets``) are loaded once per process,
reoriented so that rows run head→feet, columns patient-right→left and depth anterior→posterior,
and downsampled to a working grid. A radiograph is a digitally reconstructed radiograph (DRR):
HU → linear attenuation (bone emphasised), line integrals along the antero-posterior axis,
a film-like exposure curve (dark lungs, white bones), processing and quantum noise.

Lesions are HU edits inside the organ labels *before* projection, so that they look anatomical
(fluid layers under a meniscus, a dilated heart, a collapsed lung with a pleural line, patchy
consolidation...). Each lesion's box is the 2D bounding box of its projected 3D mask, and the
lesion is placed so that the box lands near the real NIH box it imitates.

Per-image variety (all from the caller's ``rng``): rotation, scale, position, an elastic warp and
a breathing warp (diaphragm height) are applied to the line-integral image — exact for any warp in
the detector plane, since the integral runs along the depth axis — plus exposure and noise.

``CTRenderer`` is the picklable renderer that ``cxr_keras.data.layout.write_nih_folder`` calls.
"""
from __future__ import annotations

import csv
import functools
import math
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from scipy import ndimage as ndi

IMAGE_SIZE = 1024
MU_WATER = 0.02  # 1/mm: water at a chest-radiograph effective energy (~0.2 /cm)
BONE_SCALE = 1.3  # bone emphasis: HU > 0 attenuate this much more than linear-in-HU
WORK_SPACING = (2.5, 0.7, 2.8)  # target mm per voxel of (rows S→I, cols R→L, depth A→P)
PAD_MM = 60.0  # line-integral image extended above/below the CT so the frame never runs off it
EDGE_SLICES = 1  # partial-volume slices dropped at both ends of the CT
MM_PER_PX = 0.345  # nominal output scale; the lungs then span ~70 % of the width as in NIH images
LUNG_CENTRE_PX = (512.0, 490.0)  # (x, y) where the lungs' bounding-box centre lands
MIN_BOX_THICKNESS_MM = 2.5  # projected lesion thickness that counts as "inside the box"

LOBES = {
    "right": ("lung_upper_lobe_right", "lung_middle_lobe_right", "lung_lower_lobe_right"),
    "left": ("lung_upper_lobe_left", "lung_lower_lobe_left"),
}
HEART = ("heart", "atrial_appendage_left")
BONE_GROUPS = ("vertebrae", "ribs", "skeleton")
VESSEL_GROUPS = ("cardiac",)
LESION_FINDINGS = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltrate", "Pneumonia",
                   "Pneumothorax", "Mass", "Nodule")

Box = Tuple[str, float, float, float, float]


class CTVolumeError(ValueError):
    """The CT, its label map or the structure list is unreadable or inconsistent."""


# -- physics -------------------------------------------------------------------------------------
def hu_to_mu(hu, mu_water: float = MU_WATER, bone_scale: float = BONE_SCALE) -> np.ndarray:
    """Linear attenuation (1/mm) from Hounsfield units; HU > 0 scaled by ``bone_scale`` (bone emphasis)."""
    h = np.asarray(hu, dtype=np.float32)
    k = np.where(h > 0, np.float32(bone_scale), np.float32(1.0))
    return np.maximum(np.float32(mu_water) * (1.0 + k * h / 1000.0), 0.0).astype(np.float32)


def project_ap(mu_volume, spacing_mm) -> np.ndarray:
    """Line integrals ∫μ dl along the last (antero-posterior) axis: [rows, cols, depth] → [rows, cols].

    ``spacing_mm`` is the depth spacing or the (row, col, depth) spacings; μ in 1/mm gives a
    dimensionless integral (the exponent of the transmitted fraction exp(−∫μ)).
    """
    mu = np.asarray(mu_volume, dtype=np.float32)
    if mu.ndim != 3:
        raise ValueError(f"project_ap: expected a 3-D volume, got shape {mu.shape}")
    step = float(np.ravel(spacing_mm)[-1])
    return (mu.sum(axis=-1, dtype=np.float64) * step).astype(np.float32)


def film_curve(line_integral, dark: float, bright: float, contrast: float = 1.0) -> np.ndarray:
    """Film-like characteristic curve: brightness in (0, 1), ``dark``→0.15, ``bright``→0.85.

    A radiograph is a negative: more attenuation (larger ∫μ, less exposure) is brighter.
    """
    if not bright > dark:
        raise ValueError(f"film_curve: bright level {bright} must exceed dark level {dark}")
    x = (np.asarray(line_integral, np.float32) - dark) / (bright - dark) - 0.5
    a = 2.0 * math.log(0.85 / 0.15) * contrast
    return (1.0 / (1.0 + np.exp(-a * x))).astype(np.float32)


def drr_to_uint8(line_integral, dark: float, bright: float, contrast: float = 1.0,
                 gamma: float = 1.0, detail: float = 0.0, equalise: float = 0.0,
                 noise: float = 0.0, rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """Line integrals → 8-bit radiograph: quantum noise, exposure curve, unsharp-mask processing.

    ``noise``: std of the line integral noise at ∫μ = ``dark`` (grows as exp(∫μ/2), as photon noise);
    ``detail``/``equalise``: small- and large-scale unsharp masking, as a clinical processing chain.
    """
    L = np.asarray(line_integral, np.float32)
    if noise > 0:
        if rng is None:
            raise ValueError("drr_to_uint8: noise > 0 needs an rng")
        sigma = np.minimum(noise * np.exp((L - dark) / 2.0), 4.0 * noise).astype(np.float32)
        white = rng.standard_normal(L.shape, dtype=np.float32)
        grain = 0.75 * white + 0.9 * cv2.GaussianBlur(rng.standard_normal(L.shape, dtype=np.float32), (0, 0), 1.2)
        L = L + sigma * grain
    y = film_curve(L, dark, bright, contrast)
    if detail:
        y = y + detail * (y - cv2.GaussianBlur(y, (0, 0), 3.0))
    if equalise:
        y = y + equalise * (y - _blur_large(y, 48.0))
    y = np.clip(y, 0.0, 1.0)
    if gamma != 1.0:
        y = y ** np.float32(gamma)
    return np.clip(y * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _blur_large(img: np.ndarray, sigma: float, factor: int = 8) -> np.ndarray:
    """A wide Gaussian blur computed at 1/``factor`` resolution (same look, ~50x cheaper)."""
    h, w = img.shape
    small = cv2.resize(img, (max(1, w // factor), max(1, h // factor)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / factor)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


# -- the volume ----------------------------------------------------------------------------------
@dataclass
class CTVolume:
    """A CT in the working orientation: [rows head→feet, cols patient right→left, depth A→P]."""

    hu: np.ndarray  # float32
    labels: np.ndarray  # uint8 / int label ids, same shape
    spacing: Tuple[float, float, float]  # mm
    names: Dict[str, int]  # structure name -> label id
    groups: Dict[str, Tuple[int, ...]] = field(default_factory=dict)  # group -> label ids

    def ids(self, names: Sequence[str]) -> List[int]:
        return [self.names[n] for n in names if n in self.names]


def read_structures(path: os.PathLike) -> Tuple[Dict[str, int], Dict[str, Tuple[int, ...]]]:
    """``structures.csv`` (group, original_idx, structure, id) → names and groups of label ids."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise CTVolumeError(f"{path}: cannot read ({exc})") from exc
    if not rows or not {"structure", "id"} <= set(rows[0]):
        raise CTVolumeError(f"{path}: expected columns 'group,original_idx,structure,id'")
    names: Dict[str, int] = {}
    groups: Dict[str, List[int]] = {}
    for i, row in enumerate(rows, start=2):
        try:
            ident = int(row["id"])
        except (TypeError, ValueError):
            raise CTVolumeError(f"{path}: line {i}: id {row.get('id')!r} is not an integer") from None
        names[row["structure"].strip()] = ident
        groups.setdefault((row.get("group") or "").strip(), []).append(ident)
    return names, {g: tuple(v) for g, v in groups.items()}


def _downsample(hu: np.ndarray, labels: np.ndarray, spacing, target=WORK_SPACING):
    f = [max(1, int(round(t / s))) for t, s in zip(target, spacing)]
    shape = [n // k for n, k in zip(hu.shape, f)]
    hu = hu[: shape[0] * f[0], : shape[1] * f[1], : shape[2] * f[2]]
    hu = hu.reshape(shape[0], f[0], shape[1], f[1], shape[2], f[2]).mean(axis=(1, 3, 5), dtype=np.float32)
    labels = labels[f[0] // 2:: f[0], f[1] // 2:: f[1], f[2] // 2:: f[2]][: shape[0], : shape[1], : shape[2]]
    return hu.astype(np.float32), np.ascontiguousarray(labels), tuple(float(s * k) for s, k in zip(spacing, f))


def clean_volume(vol: CTVolume) -> CTVolume:
    """Remove what a radiograph would not show: table/blankets, intravenous contrast, metal-like spikes."""
    hu = np.clip(vol.hu, -1000.0, 3000.0)
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = ndi.generate_binary_structure(2, 1)  # per axial slice: no erosion of the end slices
    body = ndi.binary_opening(hu > -400.0, structure=in_plane, iterations=2)
    lab, n = ndi.label(body)
    if n:
        sizes = ndi.sum_labels(body, lab, index=np.arange(1, n + 1))
        body = lab == (1 + int(np.argmax(sizes)))
    for r in range(body.shape[0]):
        body[r] = ndi.binary_fill_holes(body[r])
    hu[~body] = -1000.0
    bone_ids = [i for g in BONE_GROUPS for i in vol.groups.get(g, ())]
    vessel_ids = [i for g in VESSEL_GROUPS for i in vol.groups.get(g, ())]
    bone = ndi.binary_dilation(np.isin(vol.labels, bone_ids)) if bone_ids else np.zeros(hu.shape, bool)
    # Contrast-filled vessels outside bone: back to unenhanced blood (~ +40..+60 HU).
    hot = (hu > 100.0) & (~bone | np.isin(vol.labels, vessel_ids))
    hu[hot] = 50.0 + 0.05 * (hu[hot] - 50.0)
    hu[hu > 1100.0] = 450.0  # contrast pooled at the injection site / metal
    return CTVolume(hu.astype(np.float32), vol.labels, vol.spacing, vol.names, vol.groups)


def load_ct_volume(assets: Dict[str, os.PathLike]) -> CTVolume:
    """Read the NIfTI CT and label map, reorient to [S→I, R→L, A→P], downsample, clean."""
    try:
        import nibabel as nib
    except ImportError as exc:  # pragma: no cover - nibabel is in the lock file
        raise CTVolumeError("nibabel is required to read the CT (pip install nibabel)") from exc
    names, groups = read_structures(assets["structures"])
    imgs = {}
    for key in ("ct", "mask"):
        try:
            imgs[key] = nib.load(str(assets[key]))
        except Exception as exc:  # nibabel raises several types for bad files
            raise CTVolumeError(f"{assets[key]}: cannot read NIfTI ({exc})") from exc
    ct, mask = imgs["ct"], imgs["mask"]
    if ct.shape != mask.shape or not np.allclose(ct.affine, mask.affine, atol=1e-3):
        raise CTVolumeError(f"{assets['mask']}: label map grid {mask.shape} does not match CT {ct.shape}")
    ornt = nib.orientations
    transform = ornt.ornt_transform(ornt.io_orientation(ct.affine), ornt.axcodes2ornt(("I", "L", "P")))
    hu = ornt.apply_orientation(np.asarray(ct.dataobj, dtype=np.float32), transform)
    labels = ornt.apply_orientation(np.asarray(mask.dataobj).astype(np.uint8), transform)
    zooms = np.asarray(ct.header.get_zooms()[:3], float)
    spacing = np.zeros(3)
    spacing[transform[:, 0].astype(int)] = zooms
    e = EDGE_SLICES if hu.shape[0] > 4 * EDGE_SLICES + 10 else 0
    hu, labels = hu[e: hu.shape[0] - e], labels[e: labels.shape[0] - e]
    hu, labels, spacing = _downsample(hu, labels, spacing)
    return clean_volume(CTVolume(hu, labels, spacing, names, groups))


@functools.lru_cache(maxsize=2)
def _load_cached(ct: str, mask: str, structures: str) -> CTVolume:
    return load_ct_volume({"ct": ct, "mask": mask, "structures": structures})


def synthetic_chest_volume(shape=(72, 96, 40), spacing=(4.0, 3.6, 7.0)) -> CTVolume:
    """A small analytic chest (body, two lungs in lobes, heart, spine, ribs) for tests and demos.

    Uses the label names of the real CT's ``structures.csv``, so every lesion model runs on it.
    """
    R, C, D = shape
    names = {"lung_upper_lobe_left": 10, "lung_lower_lobe_left": 11, "lung_upper_lobe_right": 12,
             "lung_middle_lobe_right": 13, "lung_lower_lobe_right": 14, "heart": 51,
             "vertebrae_T6": 38, "liver": 5, "rib_left_5": 96, "rib_right_5": 108}
    groups = {"organs": (5, 10, 11, 12, 13, 14), "vertebrae": (38,), "cardiac": (51,), "ribs": (96, 108)}
    r, c, d = np.meshgrid(*(np.arange(n, dtype=np.float32) * s for n, s in zip(shape, spacing)), indexing="ij")
    H, W, T = (n * s for n, s in zip(shape, spacing))
    hu = np.full(shape, -1000.0, np.float32)
    lab = np.zeros(shape, np.uint8)
    body = ((c - W / 2) / (0.46 * W)) ** 2 + ((d - T / 2) / (0.45 * T)) ** 2 <= 1
    hu[body] = 30.0
    lung_top, lung_bot = 0.12 * H, 0.78 * H
    for side, cx in (("right", 0.31 * W), ("left", 0.69 * W)):
        dome = lung_bot - 0.08 * H * np.cos(np.clip((c - cx) / (0.16 * W), -1.5, 1.5))
        inside = (((c - cx) / (0.16 * W)) ** 2 + ((d - T / 2) / (0.34 * T)) ** 2
                  + np.clip((lung_top + 0.12 * H - r) / (0.12 * H), 0, None) ** 2 <= 1)
        inside &= (r >= lung_top) & (r <= dome)
        hu[inside] = -850.0
        ids = [names[n] for n in LOBES[side]]
        split = lung_top + np.array([0.45, 0.7]) * (lung_bot - lung_top)
        lobe = np.where(r < split[0], ids[0], ids[-1]) if len(ids) == 2 else \
            np.where(r < split[0], ids[0], np.where(r < split[1], ids[1], ids[2]))
        lab[inside] = lobe[inside]
    heart = (((r - 0.6 * H) / (0.13 * H)) ** 2 + ((c - 0.56 * W) / (0.15 * W)) ** 2
             + ((d - 0.4 * T) / (0.25 * T)) ** 2) <= 1
    hu[heart], lab[heart] = 40.0, 51
    liver = body & (r > 0.8 * H) & (c < 0.6 * W)
    hu[liver], lab[liver] = 55.0, 5
    spine = ((c - W / 2) ** 2 + (d - 0.8 * T) ** 2 <= (0.05 * W) ** 2) & (r > 0.05 * H)
    hu[spine], lab[spine] = 500.0, 38
    for side, sign, ident in (("right", -1, 108), ("left", 1, 96)):
        for k in range(6):
            rib = (np.abs(r - (0.2 + 0.1 * k) * H - 0.02 * sign * (c - W / 2)) < 0.012 * H) & body \
                & ~(((c - W / 2) / (0.42 * W)) ** 2 + ((d - T / 2) / (0.41 * T)) ** 2 <= 1) \
                & (sign * (c - W / 2) > 0)
            hu[rib], lab[rib] = 700.0, ident
    return CTVolume(hu, lab, tuple(float(s) for s in spacing), names, groups)


# -- scene: everything derived once per volume -----------------------------------------------------
@dataclass
class SrcRect:
    """A rectangle in the line-integral grid (rows, cols; float voxel indices, end-exclusive)."""

    r0: float
    r1: float
    c0: float
    c1: float

    @property
    def rc(self) -> float:
        return 0.5 * (self.r0 + self.r1)

    @property
    def cc(self) -> float:
        return 0.5 * (self.c0 + self.c1)


class Scene:
    """The volume plus its healthy projection, lung/heart maps, framing and exposure levels."""

    def __init__(self, vol: CTVolume):
        self.vol = vol
        self.spacing = np.asarray(vol.spacing, float)
        self.shape = vol.hu.shape
        missing = [n for n in LOBES["right"] + LOBES["left"] + ("heart",) if n not in vol.names]
        if missing:
            raise CTVolumeError(f"label map has no {', '.join(missing)}; cannot place lesions")
        self.L = project_ap(hu_to_mu(vol.hu), self.spacing)
        self.lobe_ids = {s: vol.ids(n) for s, n in LOBES.items()}
        self.heart_ids = vol.ids(HEART)
        self.lobe_proj = {i: (vol.labels == i).sum(axis=2).astype(np.float32) * self.spacing[2]
                          for s in LOBES for i in self.lobe_ids[s]}
        self.side_proj = {s: sum(self.lobe_proj[i] for i in ids) for s, ids in self.lobe_ids.items()}
        lung2d = (self.side_proj["right"] + self.side_proj["left"]) > 0
        heart2d = np.isin(vol.labels, self.heart_ids).any(axis=2)
        if not lung2d.any() or not heart2d.any():
            raise CTVolumeError("label map has empty lungs or heart")
        rr, cc = np.nonzero(lung2d)
        self.lung_box = (rr.min(), rr.max() + 1, cc.min(), cc.max() + 1)
        self.midline = 0.5 * (cc.min() + cc.max() + 1)
        # Exposure anchors of the healthy projection: aerated lung and the heart shadow.
        self.dark = float(np.percentile(self.L[lung2d & ~heart2d], 30))
        behind = heart2d & ~lung2d
        heart_all = float(np.median(self.L[heart2d]))
        self.bright = 0.5 * (heart_all + float(np.median(self.L[behind]))) if behind.any() else heart_all
        if not self.bright > self.dark + 0.2:
            self.bright = self.dark + 1.0
        self.pad = int(math.ceil(PAD_MM / self.spacing[0]))
        self.L_pad = self.pad_rows(self.L, smooth=True)
        self._snap = {}

    # framing -----------------------------------------------------------------------------------
    def pad_rows(self, img: np.ndarray, smooth: bool = False) -> np.ndarray:
        """Extend a projection above and below the CT (zeros, or a smoothed continuation of its edges)."""
        p = self.pad
        if not smooth:
            return np.pad(img, ((p, p), (0, 0)))
        n = min(4, img.shape[0])
        w = (1.0 - np.exp(-np.arange(1, p + 1, dtype=np.float32) / 4.0))[:, None]  # 0 at the CT edge → 1

        def extend(edge_rows: np.ndarray) -> np.ndarray:
            edge = edge_rows.mean(0, keepdims=True)
            prof = cv2.GaussianBlur(edge, (0, 0), sigmaX=6.0, sigmaY=0.1)
            return (1 - w) * edge + w * prof  # row 0 touches the CT

        top = extend(img[:n])
        # above the CT: the shoulders slope down to the neck (air beyond it)
        d = np.arange(1, p + 1, dtype=np.float32)[:, None] * self.spacing[0]
        x = (np.arange(img.shape[1], dtype=np.float32)[None, :] - self.midline) * self.spacing[1]
        edge = img[:n].mean(0)
        body = np.nonzero(edge > 0.2 * edge.max())[0]
        half = 0.5 * (body.max() - body.min() + 1) * self.spacing[1] if body.size else 150.0
        neck = min(65.0, half)
        width = neck + (half - neck) * np.exp(-d / 25.0)
        top = (top / (1.0 + np.exp((np.abs(x) - width) / 6.0)))[::-1]
        bot = extend(img[-n:])
        return np.vstack([top, img, bot]).astype(np.float32)

    def frame(self, rng: np.random.Generator, size: int = IMAGE_SIZE) -> "Frame":
        """A random view: scale, rotation, shift, elastic and breathing warps → remap maps."""
        sr, sc = self.spacing[:2]
        r0, r1, c0, c1 = self.lung_box
        lung_w_mm, lung_h_mm = (c1 - c0) * sc, (r1 - r0) * sr
        mm_px = max(lung_w_mm / (0.73 * size), lung_h_mm / (0.78 * size)) * rng.uniform(0.93, 1.07)
        ang = math.radians(rng.uniform(-4.0, 4.0))
        tx, ty = rng.uniform(-25.0, 25.0, 2) * size / IMAGE_SIZE
        breath = rng.uniform(-14.0, 14.0)  # mm: diaphragm lower (+) or higher (−)
        elastic = rng.standard_normal((2, 5, 5)).astype(np.float32) * 3.0  # mm
        ux, uy = LUNG_CENTRE_PX[0] * size / IMAGE_SIZE + tx, LUNG_CENTRE_PX[1] * size / IMAGE_SIZE + ty
        u = (np.arange(size, dtype=np.float32) - ux) * mm_px
        v = (np.arange(size, dtype=np.float32) - uy) * mm_px
        du, dv = np.meshgrid(u, v)
        ca, sa = math.cos(ang), math.sin(ang)
        x = ca * du - sa * dv + cv2.resize(elastic[0], (size, size), interpolation=cv2.INTER_CUBIC)
        z = sa * du + ca * dv + cv2.resize(elastic[1], (size, size), interpolation=cv2.INTER_CUBIC)
        t = np.clip((z + 0.5 * lung_h_mm) / lung_h_mm, 0.0, 1.0)
        z = z - breath * t * t * (3 - 2 * t)
        col = (x + 0.5 * (c0 + c1) * sc) / sc
        row = (z + 0.5 * (r0 + r1) * sr) / sr
        return Frame(col.astype(np.float32), row.astype(np.float32), self.pad, size)

    # anatomy look-ups ----------------------------------------------------------------------------
    def overlap(self, proj: np.ndarray, rect: SrcRect) -> float:
        r0, r1 = int(max(0, math.floor(rect.r0))), int(min(self.shape[0], math.ceil(rect.r1)))
        c0, c1 = int(max(0, math.floor(rect.c0))), int(min(self.shape[1], math.ceil(rect.c1)))
        if r1 <= r0 or c1 <= c0:
            return 0.0
        return float((proj[r0:r1, c0:c1] > 0).sum())

    def side_for(self, rect: SrcRect) -> str:
        o = {s: self.overlap(self.side_proj[s], rect) for s in LOBES}
        if o["right"] == o["left"]:
            return "right" if rect.cc < self.midline else "left"
        return max(o, key=o.get)

    def lobe_for(self, rect: SrcRect, side: str) -> int:
        ids = self.lobe_ids[side]
        o = [self.overlap(self.lobe_proj[i], rect) for i in ids]
        if max(o) > 0:
            return ids[int(np.argmax(o))]
        cent = [ndi.center_of_mass(self.lobe_proj[i] > 0) for i in ids]
        return ids[int(np.argmin([(a - rect.rc) ** 2 + (b - rect.cc) ** 2 for a, b in cent]))]

    def lobes_for(self, rect: SrcRect, side: str, frac: float = 0.3) -> List[int]:
        """The lobes that cover a good part of ``rect`` (a lobar process may span two lobes)."""
        ids = self.lobe_ids[side]
        o = np.array([self.overlap(self.lobe_proj[i], rect) for i in ids])
        if o.max() <= 0:
            return [self.lobe_for(rect, side)]
        return [i for i, v in zip(ids, o) if v >= frac * o.max()]

    def snap_into(self, rect: SrcRect, side: str, min_frac: float = 0.15) -> SrcRect:
        """Move ``rect`` (size kept, clipped to the lung) into the ``side`` lung if it barely overlaps it."""
        proj = self.side_proj[side] > 0
        area = max(1.0, (rect.r1 - rect.r0) * (rect.c1 - rect.c0))
        if self.overlap(self.side_proj[side], rect) >= min_frac * min(area, proj.sum()):
            return rect
        if side not in self._snap:
            self._snap[side] = ndi.distance_transform_edt(~proj, sampling=self.spacing[:2],
                                                          return_distances=False, return_indices=True)
        idx = self._snap[side]
        rr, cc = np.nonzero(proj)
        h = min(rect.r1 - rect.r0, 0.6 * (rr.max() - rr.min() + 1))
        w = min(rect.c1 - rect.c0, 0.6 * (cc.max() - cc.min() + 1))
        ri = int(np.clip(round(rect.rc), 0, self.shape[0] - 1))
        ci = int(np.clip(round(rect.cc), 0, self.shape[1] - 1))
        tr, tc = float(idx[0][ri, ci]), float(idx[1][ri, ci])
        # step a little further in so that most of the rectangle is lung, not just its centre
        com = ndi.center_of_mass(proj)
        tr += 0.25 * (com[0] - tr)
        tc += 0.25 * (com[1] - tc)
        return SrcRect(tr - h / 2, tr + h / 2, tc - w / 2, tc + w / 2)


@dataclass
class Frame:
    """Output pixel → source (col, row) maps into the padded line-integral image."""

    map_col: np.ndarray
    map_row: np.ndarray  # unpadded source rows
    pad: int
    size: int

    def warp(self, img_padded: np.ndarray, interpolation=cv2.INTER_CUBIC) -> np.ndarray:
        return cv2.remap(img_padded.astype(np.float32), self.map_col, self.map_row + np.float32(self.pad),
                         interpolation, borderMode=cv2.BORDER_REPLICATE)

    def source_rect(self, x: float, y: float, w: float, h: float, spacing=(1.0, 1.0)) -> SrcRect:
        """The source rectangle of an output box: its mapped centre, and its width/height measured
        along the box's mapped mid-lines (so a rotated frame does not inflate it)."""
        s = self.size / IMAGE_SIZE

        def at(u, v):
            ui = int(np.clip(round(u * s), 0, self.size - 1))
            vi = int(np.clip(round(v * s), 0, self.size - 1))
            return np.array([self.map_row[vi, ui], self.map_col[vi, ui]], float)

        cx, cy = x + w / 2, y + h / 2
        centre = at(cx, cy)
        sp = np.asarray(spacing, float)
        width = np.linalg.norm((at(x + w, cy) - at(x, cy)) * sp) / sp[1]
        height = np.linalg.norm((at(cx, y + h) - at(cx, y)) * sp) / sp[0]
        return SrcRect(centre[0] - height / 2, centre[0] + height / 2, centre[1] - width / 2, centre[1] + width / 2)

    def box(self, thickness: np.ndarray, pad: int, thresh: float = MIN_BOX_THICKNESS_MM):
        """Output-pixel (x, y, w, h) of the warped thickness map above ``thresh``; None if empty."""
        warped = cv2.remap(np.pad(thickness.astype(np.float32), ((pad, pad), (0, 0))), self.map_col,
                           self.map_row + np.float32(pad), cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        ys, xs = np.nonzero(warped > thresh)
        if xs.size == 0:
            return None
        k = IMAGE_SIZE / self.size
        x0, x1 = xs.min() * k, (xs.max() + 1) * k
        y0, y1 = ys.min() * k, (ys.max() + 1) * k
        return (round(float(x0), 1), round(float(y0), 1), round(float(x1 - x0), 1), round(float(y1 - y0), 1))


# -- lesions ---------------------------------------------------------------------------------------
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


# -- rendering ---------------------------------------------------------------------------------------
def render(scene: Scene, boxes: Sequence[Box], rng: np.random.Generator,
           size: int = IMAGE_SIZE) -> Tuple[np.ndarray, List[Box]]:
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
        if box is None:  # the lesion fell outside the frame: keep the label honest, drop the box
            continue
        x0, y0, bw, bh = box
        x1, y1 = min(IMAGE_SIZE, x0 + bw), min(IMAGE_SIZE, y0 + bh)
        x0, y0 = max(0.0, x0), max(0.0, y0)
        out.append((finding, x0, y0, round(x1 - x0, 1), round(y1 - y0, 1)))
    return img, out


class CTRenderer:
    """Picklable renderer for ``layout.write_nih_folder``: ``(image_name, boxes, rng) -> (uint8, boxes)``.

    The CT is resolved (fetched / verified) in the constructor, loaded lazily once per process.
    ``volume`` replaces the real CT (e.g. ``synthetic_chest_volume()`` in tests).
    """

    def __init__(self, seed: int = 0, assets: Optional[Dict[str, os.PathLike]] = None,
                 volume: Optional[CTVolume] = None, size: int = IMAGE_SIZE):
        self.seed = int(seed)
        self.size = int(size)
        self.volume = volume
        if volume is None and assets is None:
            from cxr_keras.data.assets import ct_assets

            assets = ct_assets()
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
                a = self.assets
                self._scene = _scene_cached(a["ct"], a["mask"], a["structures"])
        return self._scene

    def __call__(self, image_name: str, boxes: Sequence[Box], rng: Optional[np.random.Generator] = None):
        if rng is None:
            rng = np.random.default_rng([self.seed, zlib.crc32(str(image_name).encode("utf-8"))])
        return render(self.scene(), list(boxes), rng, self.size)


@functools.lru_cache(maxsize=2)
def _scene_cached(ct: str, mask: str, structures: str) -> Scene:
    return Scene(_load_cached(ct, mask, structures))


# -- a contact sheet for the README ------------------------------------------------------------------
SHEET_FINDINGS = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltrate", "Pneumonia", "Pneumothorax", "Nodule")


def nih_example_boxes(findings: Sequence[str] = SHEET_FINDINGS, seed: int = 0) -> Dict[str, Tuple[str, Box]]:
    """One real NIH box per finding (seeded pick from the shipped BBox list): {finding: (image, box)}."""
    from cxr_keras.data import nih

    df = nih.read_bbox_list(nih.metadata_paths(None)[0])
    rng = np.random.default_rng(seed)
    out = {}
    for f in findings:
        rows = df[df["finding"] == f]
        if len(rows):
            row = rows.iloc[int(rng.integers(len(rows)))]
            out[f] = (row["image"], (f, float(row["x"]), float(row["y"]), float(row["w"]), float(row["h"])))
    return out


def sample_sheet(renderer: "CTRenderer", tile: int = 256, seed: int = 0,
                 findings: Sequence[str] = SHEET_FINDINGS) -> np.ndarray:
    """A labelled BGR grid: one healthy image and one per finding, the real NIH target box in red
    (thin) and the drawn lesion box in green."""
    examples = nih_example_boxes(findings, seed)
    items = [("No Finding", "healthy.png", [])]
    items += [(f, examples[f][0], [examples[f][1]]) for f in findings if f in examples]
    tiles = []
    for i, (title, name, boxes) in enumerate(items):
        img, drawn = renderer(name, boxes, np.random.default_rng([seed, i]))
        t = cv2.cvtColor(cv2.resize(img, (tile, tile), interpolation=cv2.INTER_AREA), cv2.COLOR_GRAY2BGR)
        for colour, bs, width in (((60, 60, 230), boxes, 1), ((60, 220, 60), drawn, 2)):
            for _, x, y, w, h in bs:
                s = tile / IMAGE_SIZE
                cv2.rectangle(t, (int(x * s), int(y * s)), (int((x + w) * s), int((y + h) * s)), colour, width)
        cv2.putText(t, title, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(t, title, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(t)
    cols = 4
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    return np.vstack([np.hstack(tiles[i:i + cols]) for i in range(0, len(tiles), cols)])
