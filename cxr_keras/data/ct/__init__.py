"""Frontal chest radiographs projected from real chest CTs, with lesions drawn in 3D.

Four source CTs (``sources``: one ``volumes.VolumeSpec`` each, fetched through
``cxr_keras.data.assets`` with pinned hashes) are read, reoriented so that rows run head→feet,
columns patient-right→left and depth anterior→posterior, downsampled to a working grid, given organ
labels (shipped, or by thresholds: ``masks``, ``prepare``) and cached on disk once prepared. A
radiograph is a digitally reconstructed radiograph (``physics``: HU → attenuation, line integrals
along the antero-posterior axis, a film-like exposure curve, processing and quantum noise). Lesions
are HU edits inside the organ labels before projection (``lesions``), placed where the random view
(``scene``) maps the real NIH box; the CTs' own lesions are kept and reported apart (``lesion_ct``).
``renderer.CTRenderer`` is the picklable renderer that ``cxr_keras.data.nih_folder.write_nih_folder``
calls, each image from the CT its patient maps to (``ct_map``); ``contact_sheet`` draws the README samples.
"""
from cxr_keras.data.ct.contact_sheet import SHEET_FINDINGS, nih_example_boxes, sample_sheet
from cxr_keras.data.ct.lesion_ct import LESION_LABEL
from cxr_keras.data.ct.lesions import LESION_FINDINGS, LESIONS
from cxr_keras.data.ct.physics import BONE_SCALE, MU_WATER, drr_to_uint8, film_curve, hu_to_mu, project_ap
from cxr_keras.data.ct.renderer import CTRenderer, render
from cxr_keras.data.ct.scene import Frame, Scene, SrcRect
from cxr_keras.data.ct.sources import CT_SOURCES, DEFAULT_SOURCE, SOURCES, load_prepared, prepare_source, volume_spec
from cxr_keras.data.ct.volumes import (CTVolume, CTVolumeError, VolumeSpec, clean_volume, load_volume, read_nifti,
                                       read_structures, synthetic_chest_volume)

__all__ = [
    "BONE_SCALE", "CTRenderer", "CTVolume", "CTVolumeError", "CT_SOURCES", "DEFAULT_SOURCE", "Frame",
    "LESIONS", "LESION_FINDINGS", "LESION_LABEL", "MU_WATER", "SHEET_FINDINGS", "SOURCES", "Scene", "SrcRect",
    "VolumeSpec", "clean_volume", "drr_to_uint8", "film_curve", "hu_to_mu", "load_prepared", "load_volume",
    "nih_example_boxes", "prepare_source", "project_ap", "read_nifti", "read_structures", "render",
    "sample_sheet", "synthetic_chest_volume", "volume_spec",
]
