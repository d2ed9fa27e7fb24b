"""Scene geometry: one volume's healthy projection and anatomy maps, and the random view (frame)
that maps NIH 1024² pixel coordinates to the volume's line-integral grid and back.

Per-image variety (from the caller's ``rng``): rotation, scale, position, an elastic warp and a
breathing warp (diaphragm height) are applied to the line-integral image — exact for any warp in
the detector plane, since the integral runs along the depth axis.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List

import cv2
import numpy as np
from scipy import ndimage as ndi

from cxr_keras.data.ct import lesion_ct
from cxr_keras.data.ct.physics import hu_to_mu, project_ap
from cxr_keras.data.ct.volumes import HEART, LOBES, CTVolume, CTVolumeError
from cxr_keras.data.images import NIH_IMAGE_SIZE

PAD_MM = 60.0  # line-integral image extended above/below the CT so the frame never runs off it
LUNG_CENTRE_PX = (512.0, 490.0)  # (x, y) in NIH pixels where the lungs' bounding-box centre lands
MIN_BOX_THICKNESS_MM = 2.5  # projected lesion thickness that counts as "inside the box"


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
    """The volume plus its healthy projection, lung/heart maps, framing and exposure levels.

    A CT with its own lesion (``lesion_ct``) has two projections: ``L`` shows the lesion (images
    with findings), ``L_pad_healthy`` has it filled with lung (images without findings).
    """

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
        lesion = lesion_ct.lesion_mask(vol.names, vol.labels)
        self.lesion_idx = None if lesion is None else np.flatnonzero(lesion)
        self.lesion_thick = None if lesion is None else lesion.sum(axis=2).astype(np.float32) * self.spacing[2]
        self.L_pad_healthy = self.L_pad if lesion is None else self.pad_rows(
            project_ap(hu_to_mu(lesion_ct.remove_lesion(vol.hu, lesion, self.spacing)), self.spacing), smooth=True)
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

    def frame(self, rng: np.random.Generator, size: int = NIH_IMAGE_SIZE) -> "Frame":
        """A random view: scale, rotation, shift, elastic and breathing warps → remap maps."""
        sr, sc = self.spacing[:2]
        r0, r1, c0, c1 = self.lung_box
        lung_w_mm, lung_h_mm = (c1 - c0) * sc, (r1 - r0) * sr
        mm_px = max(lung_w_mm / (0.73 * size), lung_h_mm / (0.78 * size)) * rng.uniform(0.93, 1.07)
        ang = math.radians(rng.uniform(-4.0, 4.0))
        tx, ty = rng.uniform(-25.0, 25.0, 2) * size / NIH_IMAGE_SIZE
        breath = rng.uniform(-14.0, 14.0)  # mm: diaphragm lower (+) or higher (−)
        elastic = rng.standard_normal((2, 5, 5)).astype(np.float32) * 3.0  # mm
        ux, uy = LUNG_CENTRE_PX[0] * size / NIH_IMAGE_SIZE + tx, LUNG_CENTRE_PX[1] * size / NIH_IMAGE_SIZE + ty
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
        s = self.size / NIH_IMAGE_SIZE

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
        k = NIH_IMAGE_SIZE / self.size
        x0, x1 = xs.min() * k, (xs.max() + 1) * k
        y0, y1 = ys.min() * k, (ys.max() + 1) * k
        return (round(float(x0), 1), round(float(y0), 1), round(float(x1 - x0), 1), round(float(y1 - y0), 1))

