"""Synthetic 2D chest X-ray phantoms with a finding-specific lesion drawn inside each real box.

They stand in for the NIH images (which are not redistributable) so the whole pipeline can run
end to end: ``nih_folder.write_nih_folder(out, PhantomRenderer())`` writes an NIH-layout folder whose
metadata are the real rows and whose pictures are these phantoms.

The image is built as a projected "density" map (body, lungs, heart, mediastinum, spine, ribs,
clavicles, vessels, lesions) mapped to brightness by 1 − exp(−g·density), then noise and blur.
The lungs are stretched a little so that lung findings' boxes fall on the lung field. Anatomy,
lesions and noise use three independent child generators, so ``lesions=False`` renders exactly
the same image without the lesions: only the box contents change.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import cv2
import numpy as np

from cxr_keras.data.images import NIH_IMAGE_SIZE, Box, clip_finding_box
from cxr_keras.data.nih_folder import image_rng


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur; wide ones run on a 2-4× smaller copy (the result is smooth anyway)."""
    if sigma <= 0.3:
        return a
    h, w = a.shape[:2]
    if sigma >= 3 and min(h, w) >= 64:
        f = 4 if sigma >= 6 else 2
        small = cv2.resize(a, (w // f, h // f), interpolation=cv2.INTER_AREA)
        return cv2.resize(_blur(small, sigma / f), (w, h), interpolation=cv2.INTER_LINEAR)
    k = int(2 * math.ceil(3 * sigma) + 1)
    return cv2.GaussianBlur(a, (k, k), sigma, borderType=cv2.BORDER_REPLICATE)


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _smooth_noise(rng: np.random.Generator, shape: Tuple[int, int], cells: int) -> np.ndarray:
    """Low-frequency noise in about [-1, 1]: a ``cells``×``cells`` random grid upsampled (cubic)."""
    h, w = shape
    grid = rng.standard_normal((cells, cells)).astype(np.float32)
    up = cv2.resize(grid, (max(w, 1), max(h, 1)), interpolation=cv2.INTER_CUBIC)
    return np.clip(up / 1.5, -1.0, 1.0)


@dataclass
class _BoxPatch:
    """Where one lesion is drawn: the box's slices of the image, its pixel grids and feathered window."""

    sl: Tuple[slice, slice]
    xx: np.ndarray
    yy: np.ndarray
    win: np.ndarray  # 1 inside, falling to 0 at the box edge
    lateral_left: bool  # the lateral chest wall is on the box's left

    @property
    def bw(self) -> int:
        return self.xx.shape[1]

    @property
    def bh(self) -> int:
        return self.xx.shape[0]

    def opacify(self, layers: Dict, amount: np.ndarray, extra: float, hide_vessels: float = 0.7) -> None:
        """Replace lung air by ``amount`` (0..1) inside the box, plus ``extra`` density."""
        amount = np.clip(amount, 0.0, 1.0) * self.win
        layers["fill"][self.sl] = np.maximum(layers["fill"][self.sl], amount)
        layers["lesion"][self.sl] += extra * amount
        layers["vessel_keep"][self.sl] *= 1.0 - hide_vessels * amount


class PhantomRenderer:
    """Picklable renderer: ``__call__(image_name, boxes, rng) -> (uint8 size×size, boxes_out)``.

    ``boxes`` are the real NIH rows ``(finding, x, y, w, h)`` in 1024² pixels; ``boxes_out`` are
    the same boxes clipped to the image (boxes with no area left are dropped, nothing is drawn).
    ``size`` < 1024 renders a scaled-down phantom (boxes are scaled for drawing only).
    """

    def __init__(self, size: int = NIH_IMAGE_SIZE, seed: int = 0, noise: float = 1.0):
        if size < 32:
            raise ValueError(f"PhantomRenderer size must be >= 32, got {size}")
        self.size = int(size)
        self.seed = int(seed)  # mixed into every image's generator; nih_folder also seeds per image
        self.noise = float(noise)

    def __repr__(self) -> str:
        return f"PhantomRenderer(size={self.size}, seed={self.seed}, noise={self.noise})"

    # -- public ---------------------------------------------------------------------------------
    def __call__(self, image_name: str, boxes: Sequence[Box], rng: Optional[np.random.Generator] = None,
                 lesions: bool = True):
        """Render one phantom. ``lesions=False``: the same image (same anatomy fitted to the boxes,
        same noise) without the lesions, i.e. the healthy counterpart. ``rng`` defaults to
        ``nih_folder.image_rng(self.seed, image_name)``."""
        if rng is None:
            rng = image_rng(self.seed, image_name)
        child = rng.integers(0, 2**63 - 1, size=3)
        anat_rng, lesion_rng, noise_rng = (
            np.random.default_rng([int(c), self.seed]) for c in child
        )
        boxes_out = [b for b in (clip_finding_box(tuple(b)) for b in boxes) if b is not None]
        scale = self.size / NIH_IMAGE_SIZE
        scaled = [(f, x * scale, y * scale, w * scale, h * scale) for f, x, y, w, h in boxes_out]
        layers = self._anatomy(anat_rng, scaled)
        if lesions:
            for finding, x, y, w, h in scaled:
                self._lesion(layers, finding, (x, y, w, h), lesion_rng)
        image = self._expose(layers, noise_rng)
        return image, boxes_out

    # -- anatomy --------------------------------------------------------------------------------
    def _fit_to_boxes(self, p: Dict, boxes: Sequence[Box]) -> None:
        """Stretch the lungs (apex, domes, width) so that lung findings' boxes lie on the lung field.

        The real boxes come from real patients; without this a box could fall on the abdomen.
        """
        S, cx = self.size, p["cx"]
        for finding, x, y, w, h in boxes:
            if finding.strip().lower() == "cardiomegaly":
                continue
            p["top"] = max(S * 0.07, min(p["top"], y + 0.02 * S))
            reach = {"dome_r": cx - x, "dome_l": x + w - cx}  # how far the box extends into each side
            for key, depth in reach.items():
                if depth > 0.1 * S:
                    p[key] = min(S * 0.8, max(p[key], y + h - 0.09 * S))
            lateral = max(abs(x - cx), abs(x + w - cx)) - 0.02 * S
            p["W"] = min(S * 0.44, max(p["W"], lateral))

    def _anatomy(self, rng: np.random.Generator, boxes: Sequence[Box] = ()) -> Dict:
        """Every anatomical layer of one image (and the free lesion layers), fitted to the boxes."""
        S = self.size
        p = {
            "cx": S * (0.5 + _u(rng, -0.025, 0.025)),
            "top": S * _u(rng, 0.10, 0.16),  # lung apices
            "W": S * _u(rng, 0.34, 0.41),  # hemithorax width (midline to lateral rib margin)
            "dome_r": S * _u(rng, 0.64, 0.72),  # right hemidiaphragm (image left), higher
            "heart_w": _u(rng, 0.86, 1.08),
            "body_w": _u(rng, 1.12, 1.22),
        }
        p["dome_l"] = p["dome_r"] + S * _u(rng, 0.01, 0.035)
        self._fit_to_boxes(p, boxes)
        # the draw order is the order of the random numbers: keep it
        body = self._body(p)
        lungs = self._lungs(p, rng)
        heart, med = self._heart_and_mediastinum(p, rng)
        trachea = self._trachea(p, rng)
        bone = self._bones(p, lungs, heart, med, rng)
        gas = self._gas(p, rng)
        ves = self._vessels(p, lungs, heart, med, rng)
        return {
            "params": p,
            "body": body,
            "lungs": lungs,
            "heart": heart,
            "med": med,
            "trachea": trachea,
            "gas": gas,
            "bone": bone,
            "vessels": ves,
            "vessel_keep": np.ones((S, S), np.float32),
            "fill": np.zeros((S, S), np.float32),  # fraction of lung air replaced (opacities)
            "lesion": np.zeros((S, S), np.float32),  # extra density of lesions
            "lucency": np.zeros((S, S), np.float32),  # removed density (pneumothorax)
        }

    def _body(self, p: Dict) -> np.ndarray:
        """Body outline: neck, shoulders, then the chest wall; thickness ~ elliptical cross-section."""
        S, cx, top = self.size, p["cx"], p["top"]
        yn = np.arange(S, dtype=np.float32) / S
        neck_y = top / S - 0.07
        half = np.interp(yn, [0.0, neck_y, neck_y + 0.03, neck_y + 0.06, neck_y + 0.1, 0.3, 0.6, 1.0],
                         [0.11, 0.12, 0.25, 0.38, 0.45, 0.47, 0.46, 0.43]).astype(np.float32)
        half = half * S * p["body_w"] / 1.17
        k = max(3, int(S * 0.05)) | 1  # round the shoulders: smooth the outline profile
        pad = np.pad(half, (k, k), mode="edge")
        for _ in range(2):
            pad = np.convolve(pad, np.ones(k, np.float32) / k, mode="same")
        half = pad[k:-k]
        dx = (np.arange(S, dtype=np.float32)[None, :] - cx) / half[:, None]
        body = np.sqrt(np.clip(1.0 - dx * dx, 0.0, 1.0)) ** 0.7
        return _blur(body.astype(np.float32), S / 200)

    def _lungs(self, p: Dict, rng: np.random.Generator) -> np.ndarray:
        S, cx, W, top = self.size, p["cx"], p["W"], p["top"]
        lungs = np.zeros((S, S), np.float32)
        for side in (-1, 1):  # -1: image left (patient right)
            dome = p["dome_r"] if side < 0 else p["dome_l"]
            poly = self._lung_polygon(cx, top + (S * 0.01 if side < 0 else 0.0), W, dome, side, S, rng)
            cv2.fillPoly(lungs, [np.round(poly * 16).astype(np.int32)], 1.0, cv2.LINE_AA, shift=4)
        return _blur(lungs, S / 170)

    def _heart_and_mediastinum(self, p: Dict, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
        S, cx, W, top = self.size, p["cx"], p["W"], p["top"]
        # Heart: left-ventricle ellipse towards image right plus a right-atrium bulge.
        heart = np.zeros((S, S), np.float32)
        base = (p["dome_r"] + p["dome_l"]) / 2
        hw = W * 0.62 * p["heart_w"]
        c_lv = (cx + hw * 0.3, base - S * 0.045)
        cv2.ellipse(heart, (int(c_lv[0]), int(c_lv[1])), (int(hw * 0.7), int(S * 0.125)),
                    -22 + _u(rng, -5, 5), 0, 360, 1.0, -1, cv2.LINE_AA)
        c_ra = (cx - hw * 0.3, base - S * 0.04)
        cv2.ellipse(heart, (int(c_ra[0]), int(c_ra[1])), (int(hw * 0.3), int(S * 0.095)),
                    0, 0, 360, 1.0, -1, cv2.LINE_AA)
        # Great vessels / mediastinum up to the neck, aortic knob on the image right.
        med = np.zeros((S, S), np.float32)
        mw = S * _u(rng, 0.05, 0.065)
        pts = np.array([[cx - mw * 0.9, 0], [cx + mw * 0.8, 0], [cx + mw * 0.9, top + S * 0.1],
                        [cx + mw * 1.2, base - S * 0.15], [cx - mw * 1.25, base - S * 0.15],
                        [cx - mw * 1.1, top + S * 0.12]], np.float32)
        cv2.fillPoly(med, [np.round(pts).astype(np.int32)], 1.0, cv2.LINE_AA)
        knob = (int(cx + mw * 1.05), int(top + S * _u(rng, 0.15, 0.19)))
        cv2.circle(med, knob, int(S * _u(rng, 0.032, 0.042)), 1.0, -1, cv2.LINE_AA)
        return _blur(heart, S / 200), _blur(med, S / 150)

    def _trachea(self, p: Dict, rng: np.random.Generator) -> np.ndarray:
        """Trachea (air column) down to the carina, and the main bronchi."""
        S, cx, top = self.size, p["cx"], p["top"]
        trachea = np.zeros((S, S), np.float32)
        carina = (cx + S * 0.005, top + S * _u(rng, 0.22, 0.26))
        tw = max(2, int(S * 0.02))
        cv2.line(trachea, (int(cx), 0), (int(carina[0]), int(carina[1])), 1.0, 2 * tw, cv2.LINE_AA)
        for side in (-1, 1):
            end = (int(carina[0] + side * S * 0.045), int(carina[1] + S * (0.04 if side < 0 else 0.03)))
            cv2.line(trachea, (int(carina[0]), int(carina[1])), end, 0.6, int(tw * 1.2), cv2.LINE_AA)
        return _blur(trachea, S / 250)

    def _bones(self, p: Dict, lungs, heart, med, rng: np.random.Generator) -> np.ndarray:
        S, cx, W, top = self.size, p["cx"], p["W"], p["top"]
        bones = np.zeros((S, S), np.uint8)
        self._spine(bones, cx, S, rng)
        self._clavicles(bones, cx, top, W, S, rng)
        ribs = np.zeros((S, S), np.uint8)
        self._ribs(ribs, cx, top, W, S, rng)
        # Ribs stand out against lung air, much less against the mediastinum and soft tissue.
        rib_contrast = (0.35 + 0.65 * lungs) * (1.0 - 0.5 * med) * (1.0 - 0.5 * heart)
        return _blur(bones.astype(np.float32) / 255.0, S / 700) + _blur(
            ribs.astype(np.float32) / 255.0, S / 700) * rib_contrast

    def _gas(self, p: Dict, rng: np.random.Generator) -> np.ndarray:
        """The gastric bubble under the left hemidiaphragm (in 70 % of images)."""
        S, cx, W = self.size, p["cx"], p["W"]
        gas = np.zeros((S, S), np.float32)
        if rng.uniform() < 0.7:
            c = (int(cx + W * _u(rng, 0.35, 0.6)), int(p["dome_l"] + S * _u(rng, 0.05, 0.08)))
            cv2.ellipse(gas, c, (int(S * _u(rng, 0.035, 0.06)), int(S * _u(rng, 0.02, 0.035))), 0, 0, 360, 1.0, -1,
                        cv2.LINE_AA)
            gas = _blur(gas, S / 250)
        return gas

    def _vessels(self, p: Dict, lungs, heart, med, rng: np.random.Generator) -> np.ndarray:
        S, cx, W, top = self.size, p["cx"], p["W"], p["top"]
        vessels = np.zeros((S, S), np.uint8)
        for side in (-1, 1):
            hilum = (cx + side * W * 0.30, top + S * (0.30 if side < 0 else 0.28))
            self._vessel_tree(vessels, hilum, side, S, rng)
        ves = _blur(vessels.astype(np.float32) / 255.0, S / 400) * lungs * (1 - 0.8 * heart) * (1 - 0.8 * med)
        ves *= _u(rng, 0.7, 1.2)
        return ves

    @staticmethod
    def _lung_polygon(cx, top, W, dome, side, S, rng) -> np.ndarray:
        """Outline of one lung: rounded apex, lateral wall, costophrenic angle, dome, medial edge."""
        n = 40
        medial = S * 0.05 * (1.0 + 0.1 * rng.uniform(-1, 1))
        cp_y = dome + S * rng.uniform(0.06, 0.09)  # costophrenic angle lies below the dome top
        lat_w = W * rng.uniform(0.95, 1.0)
        H = cp_y - top
        xa = medial + (lat_w - medial) * rng.uniform(0.3, 0.42)  # highest point of the apex
        # Apex arch down to the widest point, then the lateral wall to the costophrenic angle.
        th = np.linspace(0.0, np.pi / 2, n)
        arch = np.stack([xa + (lat_w - xa) * np.sin(th), top + 0.5 * H * (1 - np.cos(th))], 1)
        t = np.linspace(0.0, 1.0, n)[1:]
        wall = np.stack([lat_w * (1.0 - 0.04 * t ** 2), top + 0.5 * H + 0.5 * H * t], 1)
        off_lat = np.concatenate([arch[:, 0], wall[:, 0]])
        lateral = np.stack([cx + side * off_lat, np.concatenate([arch[:, 1], wall[:, 1]])], 1)
        # Diaphragm dome from the costophrenic angle back to the cardiophrenic angle.
        s = np.linspace(0.0, 1.0, n)
        x_d = off_lat[-1] + (medial * 0.8 - off_lat[-1]) * s
        peak = 0.5
        lat_part = (cp_y - dome) * (np.abs(peak - s) / peak) ** 1.7
        med_part = (S * 0.035) * (np.abs(s - peak) / (1 - peak)) ** 2
        y_d = dome + np.where(s < peak, lat_part, med_part)
        dome_pts = np.stack([cx + side * x_d, y_d], 1)
        # Medial edge back up (mediastinum / hilum), curving into the apex arch.
        m = np.linspace(1.0, 0.0, n)
        shoulder = top + S * 0.12
        y_m = shoulder + (y_d[-1] - shoulder) * m
        off_m = medial * (1.0 - 0.2 * m ** 2)
        th = np.linspace(np.pi / 2, 0.0, n)[1:]
        cap = np.stack([xa - (xa - medial) * np.sin(th), top + (shoulder - top) * (1 - np.cos(th))], 1)
        medial_pts = np.concatenate([np.stack([cx + side * off_m, y_m], 1),
                                     np.stack([cx + side * cap[:, 0], cap[:, 1]], 1)])
        return np.concatenate([lateral, dome_pts, medial_pts]).astype(np.float32)

    @staticmethod
    def _spine(canvas, cx, S, rng) -> None:
        w = S * rng.uniform(0.03, 0.04)
        cv2.rectangle(canvas, (int(cx - w), 0), (int(cx + w), S), 25, -1)
        y, step = S * 0.02, S * rng.uniform(0.048, 0.056)
        while y < S:
            h = step * 0.8
            cv2.rectangle(canvas, (int(cx - w * 1.05), int(y)), (int(cx + w * 1.05), int(y + h)), 45, -1)
            for side in (-1, 1):  # pedicles: small ovals with a bright cortex
                c = (int(cx + side * w * 0.7), int(y + h * 0.35))
                cv2.ellipse(canvas, c, (max(1, int(w * 0.22)), max(1, int(h * 0.25))), 0, 0, 360, 80,
                            max(1, S // 300), cv2.LINE_AA)
            y += step * (1.0 + 0.012 * y / S * 10)

    @staticmethod
    def _ribs(canvas, cx, top, W, S, rng) -> None:
        """Posterior arcs (dense, from the spine) and fainter anterior ribs, 10 pairs."""
        th = max(2, int(S * rng.uniform(0.018, 0.023)))
        cortex = max(1, th // 5)
        y0 = top - S * 0.02
        for i in range(10):
            gap = S * (0.047 + 0.0035 * i) * rng.uniform(0.96, 1.04)
            for side in (-1, 1):
                t = np.linspace(0.0, 1.0, 30)
                reach = W * (0.6 + 0.4 * min(1.0, 0.3 + i * 0.14)) - S * 0.03
                x = cx + side * (S * 0.035 + t * reach)
                rise = S * (0.045 + 0.004 * i)
                y = y0 - rise * np.sin(np.pi * 0.5 * np.minimum(t / 0.45, 1.0)) \
                    + S * 0.10 * np.clip((t - 0.55) / 0.45, 0, 1) ** 2
                pts = np.stack([x, y], 1)
                pts = np.round(pts * 16).astype(np.int32)
                cv2.polylines(canvas, [pts], False, 120, th, cv2.LINE_AA, shift=4)
                cv2.polylines(canvas, [pts], False, 85, max(1, th - 2 * cortex), cv2.LINE_AA, shift=4)
                # Anterior rib: from the lateral wall down and medially, thinner and fainter.
                xa = x[-1] - side * t * reach * 0.65
                ya = y[-1] + S * 0.015 + S * 0.11 * t ** 1.3
                pa = np.round(np.stack([xa, ya], 1) * 16).astype(np.int32)
                cv2.polylines(canvas, [pa], False, 35, max(1, int(th * 0.8)), cv2.LINE_AA, shift=4)
            y0 += gap

    @staticmethod
    def _clavicles(canvas, cx, top, W, S, rng) -> None:
        th = max(2, int(S * rng.uniform(0.028, 0.034)))
        for side in (-1, 1):
            t = np.linspace(0.0, 1.0, 30)
            x = cx + side * (S * 0.05 + t * W * rng.uniform(0.75, 0.85))
            y = top + S * (0.05 - 0.06 * t + 0.012 * np.sin(2 * np.pi * t))
            pts = np.round(np.stack([x, y], 1) * 16).astype(np.int32)
            cv2.polylines(canvas, [pts], False, 190, th, cv2.LINE_AA, shift=4)
            cv2.polylines(canvas, [pts], False, 150, max(1, th - 4), cv2.LINE_AA, shift=4)

    @staticmethod
    def _vessel_tree(canvas, hilum, side, S, rng) -> None:
        """Branching vessels from the hilum, tapering towards the periphery."""
        stack = []
        for ang in (-95, -55, -20, 15, 50, 85):  # 0 = lateral, negative = upwards
            a = math.radians(ang + rng.uniform(-12, 12))
            stack.append((hilum[0], hilum[1], a, S * 0.011, S * rng.uniform(0.06, 0.085), 0))
        while stack:
            x, y, a, w, length, depth = stack.pop()
            x2 = x + side * math.cos(a) * length
            y2 = y + math.sin(a) * length
            val = int(min(255, 26000 * w / S))
            cv2.line(canvas, (int(x * 16), int(y * 16)), (int(x2 * 16), int(y2 * 16)), val,
                     max(1, int(round(w))), cv2.LINE_AA, shift=4)
            if depth < 5 and w > S * 0.0012:
                for da in (-1, 1):
                    na = a + da * math.radians(rng.uniform(15, 35))
                    stack.append((x2, y2, na, w * rng.uniform(0.6, 0.72), length * rng.uniform(0.72, 0.9),
                                  depth + 1))

    # -- lesions --------------------------------------------------------------------------------
    def _lesion(self, layers: Dict, finding: str, box, rng: np.random.Generator) -> None:
        """Draw one finding inside ``box`` (x, y, w, h in this image's pixels); nothing outside the box."""
        S = self.size
        x, y, w, h = box
        x0, y0 = int(math.floor(x)), int(math.floor(y))
        x1, y1 = min(S, int(math.ceil(x + w))), min(S, int(math.ceil(y + h)))
        if x1 - x0 < 2 or y1 - y0 < 2:
            return
        bh, bw = y1 - y0, x1 - x0
        yy, xx = np.mgrid[0:bh, 0:bw].astype(np.float32)
        # Window: 1 inside, feathered towards the box edge so nothing is drawn outside the box.
        feather = max(1.0, min(bw, bh) * 0.06)
        edge = np.minimum(np.minimum(xx + 0.5, bw - 0.5 - xx), np.minimum(yy + 0.5, bh - 0.5 - yy))
        bp = _BoxPatch(sl=(slice(y0, y1), slice(x0, x1)), xx=xx, yy=yy, win=_smoothstep(edge / feather),
                       lateral_left=(x0 + x1) / 2 < layers["params"]["cx"])
        f = finding.strip().lower()
        if f == "effusion":
            self._effusion(layers, bp, rng)
        elif f == "cardiomegaly":
            self._cardiomegaly(layers, bp, rng)
        elif f == "pneumothorax":
            self._pneumothorax(layers, bp, rng)
        elif f in ("infiltrate", "infiltration", "pneumonia"):
            self._consolidation(layers, bp, rng, confluent=f == "pneumonia")
        elif f == "atelectasis":
            self._atelectasis(layers, bp, rng)
        else:  # Mass, Nodule, or anything else with a box: a round (slightly lobulated) opacity
            self._round_opacity(layers, bp, rng, lobulated=f == "mass")

    @staticmethod
    def _effusion(layers: Dict, bp: "_BoxPatch", rng: np.random.Generator) -> None:
        xx, yy, bw, bh = bp.xx, bp.yy, bp.bw, bp.bh
        d = (xx / bw) if bp.lateral_left else (1.0 - xx / bw)  # 0 at the lateral wall
        level = rng.uniform(0.03, 0.2)
        # Meniscus: a concave upper edge that climbs the lateral chest wall.
        top = bh * (level + (rng.uniform(0.4, 0.6) - level) * np.sqrt(d))
        fluid = _smoothstep((yy - top) / max(2.0, bh * 0.05))
        grad = 0.75 + 0.25 * np.clip((yy - top) / max(1.0, bh * 0.4), 0, 1)  # denser at the bottom
        bp.opacify(layers, fluid * grad, 0.12, 0.9)

    @staticmethod
    def _cardiomegaly(layers: Dict, bp: "_BoxPatch", rng: np.random.Generator) -> None:
        sl, bw, bh = bp.sl, bp.bw, bp.bh
        big = np.zeros((bh, bw), np.float32)
        cv2.ellipse(big, (int(bw * 0.57), int(bh * 0.55)), (int(bw * 0.42), int(bh * 0.42)),
                    -15 + rng.uniform(-5, 5), 0, 360, 1.0, -1, cv2.LINE_AA)
        cv2.ellipse(big, (int(bw * 0.27), int(bh * 0.6)), (int(bw * 0.24), int(bh * 0.36)),
                    0, 0, 360, 1.0, -1, cv2.LINE_AA)
        big = _blur(big, max(1.0, min(bw, bh) * 0.015)) * bp.win
        layers["heart"][sl] = np.maximum(layers["heart"][sl], big)
        layers["vessel_keep"][sl] *= 1.0 - 0.8 * big

    def _pneumothorax(self, layers: Dict, bp: "_BoxPatch", rng: np.random.Generator) -> None:
        S, sl, xx, bw, bh, win = self.size, bp.sl, bp.xx, bp.bw, bp.bh, bp.win
        # Distance from the chest wall (lung + mediastinum outline), so the rim hugs the wall.
        if "wall_dist" not in layers:
            thorax = ((layers["lungs"] + layers["med"] + layers["heart"]) > 0.3).astype(np.uint8)
            p = layers["params"]  # close the gap between the lungs and the mediastinum
            mid = slice(int(p["cx"] - 0.12 * S), int(p["cx"] + 0.12 * S))
            thorax[int(p["top"] + 0.05 * S):, mid] = 1
            layers["wall_dist"] = cv2.distanceTransform(thorax, cv2.DIST_L2, 5)
        dist = layers["wall_dist"][sl]
        inside = (layers["lungs"][sl] > 0.3).astype(np.float32)
        depth = max(4.0, min(bw, bh) * rng.uniform(0.2, 0.35))
        if inside.mean() < 0.2:  # box mostly off the lung field: measure from its lateral edge
            dist = xx if bp.lateral_left else (bw - 1 - xx)
            inside = np.ones_like(inside)
        rim = _smoothstep((depth - dist) / 3.0) * inside  # air between chest wall and lung
        line = np.exp(-((dist - depth) / max(0.7, S / 600)) ** 2) * inside  # visceral pleura
        layers["vessel_keep"][sl] *= 1.0 - rim * win
        layers["lucency"][sl] += 0.07 * rim * win
        layers["lesion"][sl] += 0.10 * line * win
        bp.opacify(layers, (1 - rim) * inside * 0.12, 0.0, 0.0)  # the collapsed lung is a little denser

    def _consolidation(self, layers: Dict, bp: "_BoxPatch", rng: np.random.Generator, confluent: bool) -> None:
        """Patchy infiltrates, or confluent pneumonia with air bronchograms."""
        S, bw, bh = self.size, bp.bw, bp.bh
        n = int(rng.integers(6, 10)) if confluent else int(rng.integers(14, 26))
        sh, sw = max(2, bh // 4), max(2, bw // 4)  # sum of soft Gaussian patches, on a 4x coarser grid
        gy, gx = np.mgrid[0:sh, 0:sw].astype(np.float32)
        blobs = np.zeros((sh, sw), np.float32)
        for _ in range(n):
            r = min(sw, sh) * (rng.uniform(0.1, 0.22) if confluent else rng.uniform(0.04, 0.1))
            c = (rng.uniform(0.2, 0.8) * sw, rng.uniform(0.2, 0.8) * sh)
            blobs += rng.uniform(0.4, 1.0) * np.exp(-((gx - c[0]) ** 2 + (gy - c[1]) ** 2) / (2 * r * r))
        blobs = cv2.resize(blobs, (bw, bh), interpolation=cv2.INTER_CUBIC)
        texture = 0.7 + 0.3 * _smooth_noise(rng, (bh, bw), 8 if confluent else 14)
        op = np.tanh(blobs * (1.5 if confluent else 1.2)) * texture
        if confluent:  # air bronchograms: dark branching lines inside the consolidation
            air = np.zeros((bh, bw), np.float32)
            for _ in range(3):
                p0 = np.array([rng.uniform(0.3, 0.7) * bw, rng.uniform(0.3, 0.7) * bh])
                for _ in range(3):
                    p1 = p0 + rng.normal(0, 0.18, 2) * (bw, bh)
                    cv2.line(air, tuple(int(v) for v in p0), tuple(int(v) for v in p1), 1.0,
                             max(1, int(S / 300)), cv2.LINE_AA)
                    p0 = p1
            op = op * (1.0 - 0.3 * _blur(air, S / 700))
        bp.opacify(layers, op * (0.85 if confluent else 0.65), 0.07, 0.5)

    @staticmethod
    def _atelectasis(layers: Dict, bp: "_BoxPatch", rng: np.random.Generator) -> None:
        """A plate-like band of collapsed lung across the box."""
        bw, bh = bp.bw, bp.bh
        band = np.zeros((bh, bw), np.float32)
        ang = math.radians(rng.uniform(-25, 25))
        c = np.array([bw * rng.uniform(0.4, 0.6), bh * rng.uniform(0.4, 0.6)])
        d = np.array([math.cos(ang), math.sin(ang)]) * max(bw, bh)
        thick = max(2, int(bh * rng.uniform(0.2, 0.4)))
        p0, p1 = tuple(int(v) for v in c - d), tuple(int(v) for v in c + d)
        cv2.line(band, p0, p1, 1.0, thick, cv2.LINE_AA)
        band = _blur(band, max(1.0, thick * 0.3))
        band *= 0.85 + 0.15 * _smooth_noise(rng, (bh, bw), 6)
        bp.opacify(layers, band * 0.9, 0.08, 0.8)

    def _round_opacity(self, layers: Dict, bp: "_BoxPatch", rng: np.random.Generator, lobulated: bool) -> None:
        """A sphere (thickest in the middle), lobulated for masses."""
        S, sl, xx, yy, bw, bh = self.size, bp.sl, bp.xx, bp.yy, bp.bw, bp.bh
        r = min(bw, bh) * rng.uniform(0.3, 0.4)
        # Centre: of a few random candidates that keep the sphere in the box, the one most on lung.
        cand = np.stack([rng.uniform(r, max(r, bw - r), 8), rng.uniform(r, max(r, bh - r), 8)], 1)
        cand[0] = (bw / 2, bh / 2)
        iy, ix = cand[:, 1].astype(int).clip(0, bh - 1), cand[:, 0].astype(int).clip(0, bw - 1)
        on_lung = layers["lungs"][sl][iy, ix]
        c = tuple(cand[int(np.argmax(on_lung - 0.1 * (np.arange(8) > 0)))])
        ang = np.arctan2(yy - c[1], xx - c[0])
        lobes = 1.0 + (0.08 * np.sin(3 * ang + rng.uniform(0, 6.3)) + 0.05 * np.sin(5 * ang)
                       if lobulated else 0.0)
        rho = np.sqrt((xx - c[0]) ** 2 + (yy - c[1]) ** 2) / (r * lobes)
        sphere = np.sqrt(np.clip(1.0 - rho * rho, 0.0, 1.0))
        peak = 0.4 + 0.4 * min(1.0, 2 * r / (0.3 * S))  # thin nodules are fainter than the heart
        bp.opacify(layers, np.clip(sphere * 1.5, 0, 1) * peak, 0.08, 0.9)

    # -- exposure -------------------------------------------------------------------------------
    def _expose(self, layers: Dict, rng: np.random.Generator) -> np.ndarray:
        S = self.size
        body, lungs = layers["body"], layers["lungs"]
        heart = np.maximum(layers["heart"], 0.0)
        med = layers["med"]
        air = lungs * (1.0 - 0.85 * heart) * (1.0 - 0.85 * med) * (1.0 - layers["fill"])
        density = (
            0.80 * body
            - 0.56 * air * body
            + 0.06 * heart * body
            + 0.04 * med * body
            - 0.16 * layers["trachea"]
            - 0.25 * layers["gas"]
            + 0.24 * layers["bone"] * body
            + 0.22 * layers["vessels"] * layers["vessel_keep"]
            + layers["lesion"] * body
            - layers["lucency"]
        )
        density = np.maximum(density, 0.0)
        gain = rng.uniform(0.8, 1.4)  # exposure / detector response
        img = (1.0 - np.exp(-gain * density)) / (1.0 - math.exp(-gain * 0.95))
        # Film/detector look: mild heel effect, quantum noise, slight blur, then gamma and levels.
        img += np.linspace(-1, 1, S, dtype=np.float32)[None, :] * rng.uniform(-0.03, 0.03)
        if self.noise > 0:
            mottle = _smooth_noise(rng, (S, S), 24) * 0.015
            grain = rng.standard_normal((S, S), dtype=np.float32) * 0.018
            img += self.noise * (mottle + _blur(grain, S / 1400) * (0.5 + img))
        img = _blur(img.astype(np.float32), S / 900)
        img = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
        gamma = rng.uniform(0.85, 1.2)
        lo, hi = rng.uniform(0.0, 0.05), rng.uniform(0.9, 1.0)
        lut = (lo + (hi - lo) * (np.arange(256) / 255.0) ** gamma) * 255.0 + 0.5
        return cv2.LUT(img, np.clip(lut, 0, 255).astype(np.uint8))
