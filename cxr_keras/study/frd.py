"""Fréchet Radiomic Distance (FRD; Konz, Osuala et al., Medical Image Analysis 2026) between image sets.

Computed by the ``frd-score`` package (its public ``compute_frd``, FRD v1: radiomic features of the
original, LoG- and wavelet-filtered image over the whole image, z-scored against the first set, the
result being log of the squared Fréchet distance: lower = closer). The package is optional and imported
only here, only when a distance is asked for; without it the caller gets ``FRDUnavailable`` with the
install line. frd-score extracts features in a forked worker pool: the judge calls it before it starts
TensorFlow.
"""
from __future__ import annotations

import contextlib
import io
import math
import os
from typing import Dict, Mapping, Sequence

VERSION = "v1"
PACKAGE = "frd-score"
# frd-score runs on pyradiomics without declaring it; pyradiomics-bhklab builds from PyPI on Python 3.11
INSTALL = "pip install frd-score==1.0.1 pyradiomics-bhklab==3.1.4"


class FRDUnavailable(RuntimeError):
    """frd-score, or the pyradiomics it runs on, is not installed."""


def frd_module():
    """The ``frd_score`` module, or FRDUnavailable saying how to install it."""
    try:
        import frd_score
    except ImportError as exc:
        raise FRDUnavailable(f"the Fréchet Radiomic Distance needs the {PACKAGE} package ({exc}); "
                             f"install it with: {INSTALL}") from None
    return frd_score


def distance(images_a: Sequence[os.PathLike], images_b: Sequence[os.PathLike], workers: int = 1,
             version: str = VERSION) -> float:
    """FRD between two lists of image files (2-D PNGs); ``images_a`` is the reference set."""
    frd_score = frd_module()
    if len(images_a) < 2 or len(images_b) < 2:
        raise ValueError(f"FRD needs at least 2 images per set, got {len(images_a)} and {len(images_b)}")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # compute_frd prints its result
            value = frd_score.compute_frd([[str(p) for p in images_a], [str(p) for p in images_b]],
                                          frd_version=version, num_workers=max(1, int(workers)))
    except ImportError as exc:  # pyradiomics is imported by compute_frd on first use
        raise FRDUnavailable(f"{PACKAGE} cannot run: {str(exc).splitlines()[0]}; install: {INSTALL}") from None
    if not math.isfinite(float(value)):  # v1 is log(d²): identical feature statistics give -inf
        raise ValueError(f"FRD is {float(value)} (the two sets have identical radiomic statistics)")
    return float(value)


def frd_table(reference: Sequence[os.PathLike], sets: Mapping[str, Sequence[os.PathLike]],
              workers: int = 1) -> Dict:
    """FRD of every set against ``reference``: {"package", "version", "distances": {name: value}, "errors"}.

    Raises FRDUnavailable without frd-score; a set whose distance cannot be computed gets None and a
    one-line entry in "errors" (an optional metric must not sink the judge).
    """
    frd_score = frd_module()
    out: Dict = {"package": f"{PACKAGE} {getattr(frd_score, '__version__', '?')}", "version": VERSION,
                 "distances": {}, "errors": {}}
    for name, files in sets.items():
        try:
            out["distances"][name] = distance(reference, files, workers)
        except FRDUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - an optional metric: its failure is reported, not fatal
            out["distances"][name] = None
            out["errors"][name] = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
    return out
