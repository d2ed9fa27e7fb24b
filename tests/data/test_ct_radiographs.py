"""CT-projected radiographs: DRR physics, lesion boxes, determinism (tiny synthetic volumes)."""
import pickle

import numpy as np
import pytest

from cxr_keras.data import ct_radiographs as ctr

# NIH-like target boxes (x, y, w, h in 1024² pixels), one per finding, at typical positions.
TARGETS = {
    "Cardiomegaly": (330, 420, 480, 380),
    "Effusion": (140, 520, 250, 300),
    "Pneumothorax": (600, 120, 250, 300),
    "Infiltrate": (620, 300, 250, 250),
    "Pneumonia": (170, 450, 250, 300),
    "Atelectasis": (600, 580, 250, 120),
    "Nodule": (300, 350, 70, 70),
    "Mass": (600, 350, 170, 190),
}


@pytest.fixture(scope="module")
def volume():
    return ctr.synthetic_chest_volume()


@pytest.fixture(scope="module")
def renderer(volume):
    return ctr.CTRenderer(volume=volume, size=256)


def _centre(b):
    return np.array([b[0] + b[2] / 2, b[1] + b[3] / 2])


def _iou(a, b):
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0.0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _check_near(target, drawn, finding):
    assert 0 <= drawn[0] and 0 <= drawn[1] and drawn[2] > 0 and drawn[3] > 0, (finding, drawn)
    assert drawn[0] + drawn[2] <= 1024 and drawn[1] + drawn[3] <= 1024, (finding, drawn)
    dist = np.linalg.norm(_centre(target) - _centre(drawn))
    assert dist <= 0.5 * max(target[2], target[3]) + 40, (finding, target, drawn, dist)
    assert _iou(target, drawn) > 0.15, (finding, target, drawn)


# -- physics ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.0, 1.5, 0.5)])
def test_sphere_line_integral(spacing):
    """A sphere of μ and radius r: 2rμ through its centre, the chord length off-centre, 0 outside."""
    mu, r = 0.03, 24.0  # 1/mm, mm
    shape = (64, 64, int(round(64 / spacing[2])))
    grids = np.meshgrid(*[(np.arange(n) + 0.5) * s - 32.0 for n, s in zip(shape, spacing)], indexing="ij")
    vol = np.where(sum(g ** 2 for g in grids) <= r * r, mu, 0.0).astype(np.float32)
    L = ctr.project_ap(vol, spacing)
    assert L.shape == shape[:2]
    rows = (np.arange(shape[0]) + 0.5) * spacing[0] - 32.0
    cols = (np.arange(shape[1]) + 0.5) * spacing[1] - 32.0
    i, j = np.argmin(np.abs(rows)), np.argmin(np.abs(cols))
    tol = 2 * mu * spacing[2] + 0.02 * 2 * r * mu
    assert L[i, j] == pytest.approx(2 * r * mu * np.sqrt(1 - (rows[i] ** 2 + cols[j] ** 2) / r ** 2), abs=tol)
    a = 15.0  # chord at distance a from the centre: 2·sqrt(r² − a²)·μ
    k = np.argmin(np.abs(cols - a))
    expected = 2 * np.sqrt(r * r - rows[i] ** 2 - cols[k] ** 2) * mu
    assert L[i, k] == pytest.approx(expected, abs=tol)
    R, C = np.meshgrid(rows, cols, indexing="ij")
    outside = R ** 2 + C ** 2 > (r + 1e-3) ** 2
    assert np.all(L[outside] == 0.0)
    assert L.max() <= 2 * r * mu + tol


def test_project_ap_rejects_2d():
    with pytest.raises(ValueError, match="3-D"):
        ctr.project_ap(np.zeros((4, 4)), 1.0)


def test_hu_to_mu_calibration():
    mu = ctr.hu_to_mu(np.array([-1000.0, -2000.0, 0.0, 1000.0]), mu_water=0.02, bone_scale=1.5)
    assert mu[0] == 0.0 and mu[1] == 0.0  # air (and below) do not attenuate
    assert mu[2] == pytest.approx(0.02)
    assert mu[3] == pytest.approx(0.02 * 2.5)  # bone emphasised beyond the linear HU scale
    lung = ctr.hu_to_mu(-850.0, mu_water=0.02)
    assert lung == pytest.approx(0.003, rel=1e-4)


def test_film_curve_is_a_negative():
    L = np.linspace(0.0, 6.0, 50, dtype=np.float32)[None, :]
    img = ctr.drr_to_uint8(L, dark=2.0, bright=4.0)
    assert img.dtype == np.uint8
    assert np.all(np.diff(img[0].astype(int)) >= 0)  # more attenuation → brighter
    assert img[0, 0] < 10 and img[0, -1] > 245  # air is black, dense is white
    y = ctr.film_curve(np.array([2.0, 4.0]), 2.0, 4.0)
    assert y == pytest.approx([0.15, 0.85], abs=1e-5)
    with pytest.raises(ValueError, match="must exceed"):
        ctr.film_curve(L, 3.0, 3.0)
    with pytest.raises(ValueError, match="rng"):
        ctr.drr_to_uint8(L, 2.0, 4.0, noise=0.1)


# -- rendering -------------------------------------------------------------------------------------
def test_healthy_image(volume):
    img, boxes = ctr.CTRenderer(volume=volume)("00000001_000.png", [], np.random.default_rng(0))
    assert img.dtype == np.uint8 and img.shape == (1024, 1024)
    assert boxes == []
    # a radiograph: dark lungs, white mediastinum, background air black, full dynamic range used
    assert img.min() < 20 and img.max() > 235 and 40 < img.mean() < 215


@pytest.mark.parametrize("finding", sorted(TARGETS))
def test_lesion_box_inside_image_and_near_target(renderer, finding):
    target = TARGETS[finding]
    img, boxes = renderer("x.png", [(finding, *target)], np.random.default_rng(3))
    assert img.shape == (256, 256)
    assert len(boxes) == 1 and boxes[0][0] == finding
    _check_near(target, boxes[0][1:], finding)


@pytest.mark.parametrize("finding", ["Effusion", "Cardiomegaly", "Pneumonia", "Pneumothorax"])
def test_lesion_changes_the_image_inside_its_box(volume, finding):
    """The lesion is drawn where its box says; far from the box the image is unchanged."""
    r = ctr.CTRenderer(volume=volume, size=256)
    healthy, _ = r("a.png", [], np.random.default_rng(5))
    sick, boxes = r("a.png", [(finding, *TARGETS[finding])], np.random.default_rng(5))
    x, y, w, h = (int(round(v / 4)) for v in boxes[0][1:])
    diff = np.abs(sick.astype(int) - healthy.astype(int))
    inside = diff[y:y + h, x:x + w].mean()
    mask = np.ones_like(diff, bool)
    mask[max(0, y - 20):y + h + 20, max(0, x - 20):x + w + 20] = False
    assert inside > 8
    assert inside > 4 * diff[mask].mean()
    if finding == "Pneumothorax":  # a rim of air without lung: a clearly darker part of the box
        darker = healthy[y:y + h, x:x + w].astype(int) - sick[y:y + h, x:x + w] > 15
        assert darker.mean() > 0.05
    else:  # fluid, heart, consolidation: whiter
        assert sick[y:y + h, x:x + w].mean() > healthy[y:y + h, x:x + w].mean()


def test_several_boxes_in_one_image(renderer):
    boxes_in = [("Effusion", *TARGETS["Effusion"]), ("Nodule", *TARGETS["Nodule"]),
                ("Cardiomegaly", *TARGETS["Cardiomegaly"])]
    _, boxes = renderer("y.png", boxes_in, np.random.default_rng(1))
    assert [b[0] for b in boxes] == ["Effusion", "Nodule", "Cardiomegaly"]
    for target, drawn in zip(boxes_in, boxes):
        _check_near(target[1:], drawn[1:], target[0])


def test_same_seed_same_bytes(volume):
    r = ctr.CTRenderer(volume=volume, size=256)
    boxes = [("Pneumothorax", *TARGETS["Pneumothorax"]), ("Infiltrate", *TARGETS["Infiltrate"])]
    a = r("z.png", boxes, np.random.default_rng(11))
    b = r("z.png", boxes, np.random.default_rng(11))
    c = r("z.png", boxes, np.random.default_rng(12))
    assert a[0].tobytes() == b[0].tobytes() and a[1] == b[1]
    assert a[0].tobytes() != c[0].tobytes()
    # without an rng the renderer's own seed and the image name decide
    assert r("n.png", [])[0].tobytes() == r("n.png", [])[0].tobytes()
    assert r("n.png", [])[0].tobytes() != r("m.png", [])[0].tobytes()


def test_renderer_pickles(volume):
    r = ctr.CTRenderer(seed=4, volume=volume, size=128)
    before = r("p.png", [("Effusion", *TARGETS["Effusion"])], np.random.default_rng(2))
    clone = pickle.loads(pickle.dumps(r))
    assert r._scene is not None and clone._scene is None  # caches are rebuilt, not shipped
    after = clone("p.png", [("Effusion", *TARGETS["Effusion"])], np.random.default_rng(2))
    assert before[0].tobytes() == after[0].tobytes() and before[1] == after[1]


def test_bad_boxes_are_clear_errors(renderer):
    with pytest.raises(ValueError, match="unknown finding 'Fracture'"):
        renderer("b.png", [("Fracture", 10, 10, 50, 50)], np.random.default_rng(0))
    with pytest.raises(ValueError, match="positive"):
        renderer("b.png", [("Nodule", 10, 10, 0, 50)], np.random.default_rng(0))


def test_read_structures_errors_name_the_file(tmp_path):
    good = tmp_path / "structures.csv"
    good.write_text("group,original_idx,structure,id\norgans,10,lung_upper_lobe_left,10\ncardiac,1,heart,51\n")
    names, groups = ctr.read_structures(good)
    assert names == {"lung_upper_lobe_left": 10, "heart": 51} and groups["cardiac"] == (51,)
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ctr.CTVolumeError, match="bad.csv"):
        ctr.read_structures(bad)
    with pytest.raises(ctr.CTVolumeError, match="missing.csv"):
        ctr.read_structures(tmp_path / "missing.csv")


def test_volume_without_lungs_is_rejected(volume):
    names = {k: v for k, v in volume.names.items() if not k.startswith("lung_")}
    broken = ctr.CTVolume(volume.hu, volume.labels, volume.spacing, names, volume.groups)
    with pytest.raises(ctr.CTVolumeError, match="lung_upper_lobe_right"):
        ctr.Scene(broken)


# -- the real CT (slow) ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_renderer():
    from cxr_keras.data import assets

    try:
        paths = assets.ct_assets()
    except assets.AssetError as exc:
        pytest.skip(f"CT assets neither cached nor downloadable: {exc}")
    return ctr.CTRenderer(assets=paths, size=512)


@pytest.mark.slow
def test_real_ct_radiographs(real_renderer):
    img, boxes = real_renderer("h.png", [], np.random.default_rng(0))
    assert img.shape == (512, 512) and boxes == []
    # anatomy in the right place: lungs (dark) either side of a bright mediastinum, right on the left
    rows = img[150:300]
    left_lung, mediastinum, right_lung = rows[:, 110:200].mean(), rows[:, 240:270].mean(), rows[:, 320:400].mean()
    assert mediastinum > left_lung + 40 and mediastinum > right_lung + 40
    for i, (finding, target) in enumerate(sorted(TARGETS.items())):
        img, boxes = real_renderer("s.png", [(finding, *target)], np.random.default_rng(i))
        assert len(boxes) == 1
        _check_near(target, boxes[0][1:], finding)
    again = real_renderer("s.png", [(finding, *target)], np.random.default_rng(i))  # the last one again
    assert again[0].tobytes() == img.tobytes() and again[1] == boxes
