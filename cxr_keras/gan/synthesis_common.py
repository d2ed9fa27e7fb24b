"""What every generator's synthesis shares: its error, the [-1, 1] → uint8 rule and the SYN/ writer.

SYN/ layout (docs/interfaces.md): the images, the manifest and, for the Pix2Pix variants, the TF OD
detection record; every file goes through ``cxr_keras.paths.SynPaths`` and is written atomically.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, Iterator

import numpy as np

from cxr_keras.data.images import encode_png
from cxr_keras.procs import alive
from cxr_keras.io_utils import atomic_write_bytes, atomic_write_text
from cxr_keras.paths import SynPaths


class SynthesisError(RuntimeError):
    """Synthesis cannot run (bad run, records or options; explained in the message)."""


def to_uint8(images) -> np.ndarray:
    """[-1, 1] floats → uint8 (exact inverse of the records' u / 127.5 − 1 for unchanged pixels)."""
    return np.clip(np.round((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def check_out_dir(out_dir: os.PathLike, overwrite: bool) -> SynPaths:
    """The SYN/ layout of ``out_dir``; refuse to replace a finished set unless ``overwrite``, and any
    folder holding other files (``staged_dir`` replaces the whole folder)."""
    syn = SynPaths(out_dir)
    if syn.manifest.exists() and not overwrite:
        raise SynthesisError(f"{syn.root}: already holds a synthetic set; choose another --out or pass --overwrite")
    if syn.root.exists() and not syn.root.is_dir():
        raise SynthesisError(f"{syn.root}: is a file, not a folder")
    ours = {syn.images.name, syn.manifest.name, syn.detection.name}
    foreign = sorted(p.name for p in syn.root.iterdir() if p.name not in ours) if syn.root.is_dir() else []
    if foreign:
        raise SynthesisError(f"{syn.root}: not a synthetic set folder (holds {', '.join(foreign[:5])}); "
                             "choose a new or empty --out")
    return syn


@contextlib.contextmanager
def staged_dir(out_dir: os.PathLike) -> Iterator[Path]:
    """A new folder beside ``out_dir`` to write into: it replaces ``out_dir`` (and an earlier set
    there) only when the block succeeds and is deleted when it fails, so a failure leaves nothing."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.*.tmp"):  # left by a synthesis that was killed
        pid = stale.name[len(out.name) + 2:].split(".")[0]
        if pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.{os.getpid()}.", suffix=".tmp", dir=out.parent))
    old = out.with_name(f"{tmp.name[:-len('.tmp')]}.old")
    try:
        yield tmp
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o777 & ~mask)  # mkdtemp made it private: give it a normal folder's permissions
        if out.exists():
            os.replace(out, old)
        try:
            os.replace(tmp, out)
        except OSError:
            if old.exists():
                os.replace(old, out)  # put the earlier set back
            raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
