"""How well a Pix2Pix run reconstructs the surroundings of boxes it never saw (the test split).

For every test annotation the generator paints everything outside the box; the painted region is
compared with the real image: L1 (mean absolute error), PSNR and SSIM on intensities in [0, 1],
restricted to the painted pixels (the box itself is copied, so it would only inflate the scores).
SSIM uses the same Gaussian window as ``tf.image.ssim`` (11×11, σ = 1.5) and averages its map over
the windows centred outside the box; whole-image ``tf.image.psnr`` / ``tf.image.ssim`` are reported too.
Output: RUN/eval_<split>.json and RUN/eval_<split>.md (``cxr_keras.paths.RunPaths``).
"""
from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf

from cxr_keras.gan.runs import load_run
from cxr_keras.gan.synthesis_common import SynthesisError
from cxr_keras.gan.synthesis_pix2pix import load_pairs
from cxr_keras.io_utils import atomic_write_text
from cxr_keras.paths import RecordsPaths, RunPaths

SSIM_SIZE, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03


def _gaussian_kernel(size: int = SSIM_SIZE, sigma: float = SSIM_SIGMA) -> tf.Tensor:
    x = tf.range(size, dtype=tf.float32) - (size - 1) / 2.0
    g = tf.exp(-(x ** 2) / (2.0 * sigma ** 2))
    g = g / tf.reduce_sum(g)
    return (g[:, None] * g[None, :])[:, :, None, None]


def ssim_map(a: tf.Tensor, b: tf.Tensor, max_val: float = 1.0) -> tf.Tensor:
    """Per-window SSIM [B, H−10, W−10, 1] of single-channel images (the map ``tf.image.ssim`` averages)."""
    k = _gaussian_kernel()
    conv = lambda t: tf.nn.conv2d(t, k, 1, "VALID")  # noqa: E731
    a, b = tf.cast(a, tf.float32), tf.cast(b, tf.float32)
    mu_a, mu_b = conv(a), conv(b)
    c1, c2 = (SSIM_K1 * max_val) ** 2, (SSIM_K2 * max_val) ** 2
    var_a = conv(a * a) - mu_a ** 2
    var_b = conv(b * b) - mu_b ** 2
    cov = conv(a * b) - mu_a * mu_b
    lum = (2 * mu_a * mu_b + c1) / (mu_a ** 2 + mu_b ** 2 + c1)
    cs = (2 * cov + c2) / (var_a + var_b + c2)
    return lum * cs


def painted_metrics(fake: tf.Tensor, real: tf.Tensor, mask: tf.Tensor) -> Dict[str, np.ndarray]:
    """Per-image metrics of [B,S,S,1] images in [0, 1] over the painted region (mask == 0)."""
    fake, real = tf.cast(fake, tf.float32), tf.cast(real, tf.float32)
    out_region = tf.cast(mask <= 0.5, tf.float32)
    n = tf.maximum(tf.reduce_sum(out_region, [1, 2, 3]), 1.0)
    err = fake - real
    l1 = tf.reduce_sum(tf.abs(err) * out_region, [1, 2, 3]) / n
    mse = tf.reduce_sum(err ** 2 * out_region, [1, 2, 3]) / n
    psnr = 10.0 * tf.math.log(1.0 / tf.maximum(mse, 1e-12)) / math.log(10.0)
    smap = ssim_map(fake, real)
    h = SSIM_SIZE // 2
    centre = out_region[:, h:-h, h:-h, :]
    ssim = tf.reduce_sum(smap * centre, [1, 2, 3]) / tf.maximum(tf.reduce_sum(centre, [1, 2, 3]), 1.0)
    return {"l1": l1.numpy(), "psnr": psnr.numpy(), "ssim": ssim.numpy(),
            "psnr_full": tf.image.psnr(fake, real, 1.0).numpy(),
            "ssim_full": tf.image.ssim(fake, real, 1.0).numpy(),
            "seam": seam_excess(fake.numpy(), real.numpy(), np.asarray(mask))}


METRICS = ("l1", "psnr", "ssim", "psnr_full", "ssim_full", "seam")


def seam_excess(fake: np.ndarray, real: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per image: the mean |step| between neighbouring pixels across the box edge in the composite, minus
    the same in the real image (0: the painting meets the box as smoothly as the real image; > 0: a seam)."""
    m = np.asarray(mask)[..., 0] > 0.5
    across_h, across_v = m[:, :, 1:] != m[:, :, :-1], m[:, 1:] != m[:, :-1]

    def steps(a):
        a = np.asarray(a, np.float32)[..., 0]
        return (np.abs(np.diff(a, axis=2)) * across_h).sum((1, 2)) + (np.abs(np.diff(a, axis=1)) * across_v).sum((1, 2))

    pairs = np.maximum(across_h.sum((1, 2)) + across_v.sum((1, 2)), 1)
    return (steps(fake) - steps(real)) / pairs


def anatomy_follow(fake: np.ndarray, real: np.ndarray, mask: np.ndarray) -> Dict[str, Optional[float]]:
    """Do the paintings follow their own patient (not one chest for every input)? [N,S,S,1] arrays in [0, 1].

    ``own`` / ``other``: mean Pearson correlation, over image i's painted region, of its composite with its
    own real image / with the other real images of the set; ``follow`` = own − other (0 when every input
    gets the same painting). ``spread``: per-pixel std of the composites across inputs over that of the
    real images, on the pixels painted in every image (0: the same chest whatever the input).
    """
    n = len(fake)
    if n < 2:
        return {"n": n, "follow": None, "own": None, "other": None, "spread": None}
    f = np.asarray(fake, np.float32).reshape(n, -1)
    r = np.asarray(real, np.float32).reshape(n, -1)
    painted = np.asarray(mask).reshape(n, -1) <= 0.5
    own, other = [], []
    for i in range(n):
        p = painted[i]
        fi = f[i, p] - f[i, p].mean()
        rj = r[:, p] - r[:, p].mean(axis=1, keepdims=True)
        corr = (rj @ fi) / np.maximum(np.linalg.norm(rj, axis=1) * np.linalg.norm(fi), 1e-12)
        own.append(corr[i])
        other.append(np.delete(corr, i).mean())
    common = painted.all(axis=0)
    spread = (float(f[:, common].std(axis=0).mean() / max(r[:, common].std(axis=0).mean(), 1e-12))
              if common.any() else None)
    return {"n": n, "follow": float(np.mean(own) - np.mean(other)), "own": float(np.mean(own)),
            "other": float(np.mean(other)), "spread": spread}


def evaluate_run(run_dir: os.PathLike, records_dir: os.PathLike, split: str = "test", seed: int = 0,
                 batch_size: int = 8, sample: bool = True, checkpoint: Optional[str] = None,
                 limit: Optional[int] = None) -> Dict:
    """Per-finding painted-region L1 / PSNR / SSIM of a Pix2Pix run; writes RUN/eval_<split>.{json,md}."""
    run, records_dir = RunPaths(run_dir), Path(records_dir)
    loaded = load_run(run.root, checkpoint)
    if not hasattr(loaded.model, "generate"):
        raise SynthesisError(f"{run.root}: evaluate_gan supports the Pix2Pix models, not {loaded.name!r}")
    pairs = load_pairs(RecordsPaths(records_dir).pairs(split), loaded.cfg.image_size)
    if limit is not None:
        pairs = pairs[:limit]
    tf.random.set_seed(seed)
    per: Dict[str, Dict[str, List[float]]] = defaultdict(lambda: defaultdict(list))
    batches: Dict[str, List[np.ndarray]] = defaultdict(list)  # for anatomy_follow over the whole set
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        y = tf.constant(np.stack([p.image for p in chunk])[..., None], tf.float32) / 127.5 - 1.0
        m = tf.constant(np.stack([p.mask for p in chunk])[..., None], tf.float32)
        fake = loaded.model.generate(y, m, sample=sample)
        scores = painted_metrics((fake + 1.0) / 2.0, (y + 1.0) / 2.0, m)
        for key, t in (("fake", (fake + 1.0) / 2.0), ("real", (y + 1.0) / 2.0), ("mask", m)):
            batches[key].append(np.asarray(t, np.float32))
        for i, p in enumerate(chunk):
            for key in METRICS:
                per[p.finding][key].append(float(scores[key][i]))
                per["all"][key].append(float(scores[key][i]))
    summary = {f: {"n": len(v["l1"]), **{k: float(np.mean(v[k])) for k in METRICS}}
               for f, v in sorted(per.items(), key=lambda kv: (kv[0] == "all", kv[0]))}
    result = {"run": str(run.root), "model": loaded.name, "step": loaded.step, "checkpoint": loaded.checkpoint,
              "split": split, "records": str(records_dir), "dropout_sampling": sample, "seed": seed,
              "region": "painted pixels (outside the box); intensities in [0, 1]",
              "per_finding": summary,
              "anatomy": anatomy_follow(*(np.concatenate(batches[k]) for k in ("fake", "real", "mask")))}
    atomic_write_text(run.eval_json(split), json.dumps(result, indent=1))
    atomic_write_text(run.eval_md(split), markdown_table(result))
    return result


def markdown_table(result: Dict) -> str:
    """RUN/eval_<split>.md: one row per finding (and "all")."""
    lines = [f"# {result['model']} at step {result['step']}: painted region vs real ({result['split']} split)",
             "", "| finding | n | L1 | PSNR (dB) | SSIM | PSNR whole | SSIM whole | seam |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for f, s in result["per_finding"].items():
        lines.append(f"| {f} | {s['n']} | {s['l1']:.4f} | {s['psnr']:.2f} | {s['ssim']:.4f} | "
                     f"{s['psnr_full']:.2f} | {s['ssim_full']:.4f} | {s.get('seam', float('nan')):+.4f} |")
    lines += ["", "L1, PSNR and SSIM over the pixels the generator painted (outside the box), intensities "
              "in [0, 1]; 'whole' = tf.image.psnr / tf.image.ssim of the whole composite; 'seam' = mean step "
              "across the box edge in the composite minus in the real image (0: no seam).", ""]
    a = result.get("anatomy") or {}
    if a.get("follow") is not None:
        lines += [f"Anatomy follow (correlation of each painting with its own real image minus with the other "
                  f"{a['n'] - 1} test images): {a['follow']:+.4f} (own {a['own']:.4f}, other {a['other']:.4f}); "
                  f"spread of the paintings across inputs / of the real images: {a['spread']:.3f}.", ""]
    return "\n".join(lines)
