"""The patient → CT map: deterministic, one CT per patient, balanced on the shipped NIH metadata."""
from collections import Counter

import numpy as np
import pytest

from cxr_keras.config import FINDINGS, HEALTHY
from cxr_keras.data import nih
from cxr_keras.data.ct import CT_SOURCES, ct_map


@pytest.fixture(scope="module")
def shipped():
    bbox, entry = nih.metadata_paths(None)
    return nih.read_bbox_list(bbox), nih.read_data_entry(entry)


def test_patient_ids():
    assert ct_map.patient_id("00000013_005.png") == 13
    assert ct_map.patient_id("healthy.png") is None and ct_map.patient_id("x_1.png") is None
    table = {13: "b"}
    assert ct_map.ct_for_image("00000013_000.png", ("a", "b"), table) == "b"
    assert ct_map.ct_for_image("healthy.png", ("a", "b")) == ct_map.ct_for_image("healthy.png", ("a", "b"))


def test_balanced_table_is_deterministic_and_order_free():
    rng = np.random.default_rng(0)
    findings = ("A", "B", "C")
    boxes = [(f"{int(p):08d}_000.png", findings[int(rng.integers(3))]) for p in rng.choice(10 ** 6, 400, replace=False)]
    table = ct_map.balanced_table(boxes, findings, CT_SOURCES)
    assert table == ct_map.balanced_table(list(reversed(boxes)), findings, CT_SOURCES)
    for f in findings:
        counts = Counter(table[ct_map.patient_id(i)] for i, g in boxes if g == f)
        assert max(counts.values()) - min(counts.values()) <= 1


def test_shipped_map_is_balanced_over_boxes_patients_and_healthy_images(shipped):
    boxes, entries = shipped
    table = ct_map.shipped_table(CT_SOURCES)
    assert table == ct_map.shipped_table(CT_SOURCES)  # deterministic
    six = boxes[boxes["finding"].isin(FINDINGS)]
    ct_of = {im: ct_map.ct_for_image(im, CT_SOURCES, table) for im in set(boxes["image"]) | set(entries["image"])}
    n = len(CT_SOURCES)
    for f in FINDINGS:  # every finding's boxes spread equally: the CT never predicts the finding
        counts = Counter(ct_of[im] for im in six.loc[six["finding"] == f, "image"])
        assert set(counts) == set(CT_SOURCES) and max(counts.values()) - min(counts.values()) <= 2, (f, counts)
    patients = Counter(table.values())
    assert max(patients.values()) - min(patients.values()) <= 1
    images = Counter(ct_of[im] for im in set(six["image"]))
    assert max(images.values()) <= 1.05 * len(set(six["image"])) / n
    healthy = [im for im, lab in zip(entries["image"], entries["labels"]) if lab == (HEALTHY,)]
    share = np.array([Counter(ct_of[im] for im in healthy)[s] for s in CT_SOURCES]) / len(healthy)
    assert np.all(np.abs(share - 1 / n) < 0.01), share
    # one CT per patient: follow-up images keep their anatomy
    by_patient = {}
    for im, ct in ct_of.items():
        assert by_patient.setdefault(ct_map.patient_id(im), ct) == ct
