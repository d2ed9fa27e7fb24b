"""What every generator's synthesis shares: its error, the [-1, 1] → uint8 rule and the SYN/ writer.

SYN/ layout (docs/interfaces.md): the images, the manifest and, for the Pix2Pix variants, the TF OD
detection record; every file goes through ``cxr_keras.paths.SynPaths`` and is written atomically.
"""
from __future__ import annotations

import json
import os
from typing import Dict

import numpy as np

from cxr_keras.data.images import encode_png
from cxr_keras.io_utils import atomic_write_bytes, atomic_write_text
from cxr_keras.paths import SynPaths


class SynthesisError(RuntimeError):
    """Synthesis cannot run (bad run, records or options; explained in the message)."""


def to_uint8(images) -> np.ndarray:
    """[-1, 1] floats → uint8 (exact inverse of the records' u / 127.5 − 1 for unchanged pixels)."""
    return np.clip(np.round((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def check_out_dir(out_dir: os.PathLike, overwrite: bool) -> SynPaths:
    """The SYN/ layout of ``out_dir``; refuse to replace a finished set unless ``overwrite``."""
    syn = SynPaths(out_dir)
    if syn.manifest.exists() and not overwrite:
        raise SynthesisError(f"{syn.root}: already holds a synthetic set; choose another --out or pass --overwrite")
    return syn


def image_file(syn: SynPaths, name: str) -> str:
    """The manifest's ``file`` of image ``name``: its path relative to SYN/, with forward slashes."""
    return syn.image(name).relative_to(syn.root).as_posix()


def write_image(syn: SynPaths, name: str, image: np.ndarray) -> bytes:
    """Write a uint8 [S, S] (or [S, S, 1]) image as ``syn.image(name)`` (lossless PNG); return the bytes."""
    png = encode_png(image)
    atomic_write_bytes(syn.image(name), png)
    return png


def write_manifest(syn: SynPaths, manifest: Dict) -> Dict:
    atomic_write_text(syn.manifest, json.dumps(manifest, indent=1))
    return manifest
