"""Frontal chest radiographs projected from a real chest CT, with lesions drawn in 3D.

The CT and its organ label map are loaded once per process (``volumes``: one spec per source CT,
fetched through ``cxr_keras.data.assets``), reoriented so that rows run head→feet, columns
patient-right→left and depth anterior→posterior, and downsampled to a working grid. A radiograph
is a digitally reconstructed radiograph (``physics``: HU → attenuation, line integrals along the
antero-posterior axis, a film-like exposure curve, processing and quantum noise). Lesions are HU
edits inside the organ labels before projection (``lesions``), placed where the random view
(``scene``) maps the real NIH box. ``renderer.CTRenderer`` is the picklable renderer that
``cxr_keras.data.nih_folder.write_nih_folder`` calls; ``contact_sheet`` draws the README samples.
"""
from cxr_keras.data.ct.contact_sheet import SHEET_FINDINGS, nih_example_boxes, sample_sheet
from cxr_keras.data.ct.lesions import LESION_FINDINGS, LESIONS
from cxr_keras.data.ct.physics import BONE_SCALE, MU_WATER, drr_to_uint8, film_curve, hu_to_mu, project_ap
from cxr_keras.data.ct.renderer import CTRenderer, render
from cxr_keras.data.ct.scene import Frame, Scene, SrcRect
from cxr_keras.data.ct.volumes import (DEFAULT_SOURCE, SOURCES, CTVolume, CTVolumeError, VolumeSpec, clean_volume,
                                       load_volume, read_nifti, read_structures, synthetic_chest_volume,
                                       volume_spec)

__all__ = [
    "BONE_SCALE", "CTRenderer", "CTVolume", "CTVolumeError", "DEFAULT_SOURCE", "Frame", "LESIONS",
    "LESION_FINDINGS", "MU_WATER", "SHEET_FINDINGS", "SOURCES", "Scene", "SrcRect", "VolumeSpec",
    "clean_volume", "drr_to_uint8", "film_curve", "hu_to_mu", "load_volume", "nih_example_boxes",
    "project_ap", "read_nifti", "read_structures", "render", "sample_sheet", "synthetic_chest_volume",
    "volume_spec",
]
