"""CT-projected radiographs, rendering: scene, lesion boxes, determinism (synthetic volumes; the real CT: slow)."""
import pickle

import numpy as np
import pytest

from cxr_keras.data import ct as ctr

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
    assert r._scenes and not clone._scenes  # caches are rebuilt, not shipped
    after = clone("p.png", [("Effusion", *TARGETS["Effusion"])], np.random.default_rng(2))
    assert before[0].tobytes() == after[0].tobytes() and before[1] == after[1]


def test_bad_boxes_are_clear_errors(renderer):
    with pytest.raises(ValueError, match="unknown finding 'Fracture'"):
        renderer("b.png", [("Fracture", 10, 10, 50, 50)], np.random.default_rng(0))
    with pytest.raises(ValueError, match="positive"):
        renderer("b.png", [("Nodule", 10, 10, 0, 50)], np.random.default_rng(0))


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
    return ctr.CTRenderer(source=ctr.DEFAULT_SOURCE, assets=paths, size=512)


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
