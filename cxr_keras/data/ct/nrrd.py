"""A minimal NRRD reader (3-D, attached raw or gzip data): enough for the pyradiomics test CTs,
without a new dependency. The voxel→world affine is returned in RAS, nibabel's world frame."""
from __future__ import annotations

import gzip
import os
import re
from pathlib import Path
from typing import Dict, Tuple

import numpy as np

NRRD_TYPES = {
    "signed char": "i1", "int8": "i1", "int8_t": "i1", "uchar": "u1", "unsigned char": "u1", "uint8": "u1",
    "uint8_t": "u1", "short": "i2", "short int": "i2", "signed short": "i2", "int16": "i2", "int16_t": "i2",
    "ushort": "u2", "unsigned short": "u2", "uint16": "u2", "uint16_t": "u2", "int": "i4", "signed int": "i4",
    "int32": "i4", "int32_t": "i4", "uint": "u4", "unsigned int": "u4", "uint32": "u4", "uint32_t": "u4",
    "float": "f4", "double": "f8",
}
# NRRD "space" → the sign flips that turn it into RAS
NRRD_SPACES = {
    "right-anterior-superior": (1, 1, 1), "ras": (1, 1, 1),
    "left-anterior-superior": (-1, 1, 1), "las": (-1, 1, 1),
    "left-posterior-superior": (-1, -1, 1), "lps": (-1, -1, 1),
}


class NrrdError(ValueError):
    """An NRRD file is unreadable or uses a feature this reader does not support."""


def _header(raw: bytes, path: Path) -> Tuple[Dict[str, str], int]:
    """The text header's fields (lower-case keys) and the offset of the attached payload."""
    if not raw.startswith(b"NRRD000"):
        raise NrrdError(f"{path}: not a NRRD file (no NRRD000x magic)")
    end = raw.find(b"\n\n")
    if end < 0:
        raise NrrdError(f"{path}: NRRD header has no terminating blank line")
    fields: Dict[str, str] = {}
    for line in raw[:end].decode("ascii", "replace").splitlines()[1:]:
        if line.startswith("#") or ":=" in line or ":" not in line:
            continue  # comments and key/value pairs carry nothing we need
        key, value = line.split(":", 1)
        fields[key.strip().lower()] = value.strip()
    return fields, end + 2


def _vectors(text: str) -> np.ndarray:
    """``(a,b,c) (d,e,f) ...`` → one row of floats per vector."""
    return np.array([[float(v) for v in g.split(",")] for g in re.findall(r"\(([^)]*)\)", text)], float)


def read_nrrd(path: os.PathLike) -> Tuple[np.ndarray, np.ndarray]:
    """A 3-D attached-data NRRD (raw or gzip) → (array indexed [i, j, k], voxel→RAS affine 4×4)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise NrrdError(f"{path}: cannot read ({exc})") from exc
    h, offset = _header(raw, path)
    detached = {k: h[k] for k in ("data file", "datafile", "line skip", "byte skip") if h.get(k, "0") != "0"}
    if detached or h.get("dimension") != "3":
        raise NrrdError(f"{path}: only 3-D NRRDs with attached data are supported "
                        f"(dimension {h.get('dimension')}, {detached or 'attached'})")
    dtype = NRRD_TYPES.get(h.get("type", ""))
    space = NRRD_SPACES.get(h.get("space", "").lower())
    if dtype is None or space is None or h.get("encoding") not in ("raw", "gzip", "gz"):
        raise NrrdError(f"{path}: unsupported type/space/encoding {h.get('type')!r}, {h.get('space')!r}, "
                        f"{h.get('encoding')!r}")
    try:
        sizes = [int(v) for v in h["sizes"].split()]
        payload = raw[offset:] if h["encoding"] == "raw" else gzip.decompress(raw[offset:])
        directions = _vectors(h["space directions"]).T  # column a = the step of axis a in mm
        origin = _vectors(h.get("space origin", "(0,0,0)"))[0]
    except (KeyError, ValueError, IndexError, OSError, EOFError) as exc:
        raise NrrdError(f"{path}: bad NRRD header or payload ({exc})") from exc
    order = ">" if h.get("endian", "little") == "big" else "<"
    n = int(np.prod(sizes))
    if len(payload) < n * np.dtype(dtype).itemsize:
        raise NrrdError(f"{path}: payload holds {len(payload)} bytes, {sizes} × {dtype} needs more")
    data = np.frombuffer(payload, order + dtype, count=n).reshape(sizes[::-1]).transpose(2, 1, 0)
    affine = np.eye(4)
    affine[:3, :3], affine[:3, 3] = directions, origin
    affine[:3] *= np.asarray(space, float)[:, None]  # the file's space → RAS
    return data, affine
