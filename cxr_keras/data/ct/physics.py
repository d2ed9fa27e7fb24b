"""X-ray physics of the CT-projected radiographs: HU → attenuation, line integrals, film and processing.

A radiograph is a digitally reconstructed radiograph (DRR): HU → linear attenuation (bone
emphasised), line integrals along the antero-posterior axis, a film-like exposure curve (dark
lungs, white bones), processing and quantum noise.
"""
from __future__ import annotations

import math
from typing import Optional

import cv2
import numpy as np

MU_WATER = 0.02  # 1/mm: water at a chest-radiograph effective energy (~0.2 /cm)
BONE_SCALE = 1.3  # bone emphasis: HU > 0 attenuate this much more than linear-in-HU


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
