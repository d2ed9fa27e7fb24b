"""Scoring: Table 1 from a hand-made answer set, metrics, kappa, and the files written for a study."""
from __future__ import annotations

import csv
import io
import json

import pytest

from cxr_keras.study import db as study_db
from cxr_keras.study.layout import REAL, load_key, load_study, paths
from cxr_keras.study.score import cohen_kappa, markdown, score_judgements, table_csv, write_scores

# 2 findings × (real, gan) × 2 images
KEY = {
    "a1": {"source": "real", "finding": "Effusion"}, "a2": {"source": "real", "finding": "Effusion"},
    "b1": {"source": "gan", "finding": "Effusion"}, "b2": {"source": "gan", "finding": "Effusion"},
    "c1": {"source": "real", "finding": "Pneumonia"}, "c2": {"source": "real", "finding": "Pneumonia"},
    "d1": {"source": "gan", "finding": "Pneumonia"}, "d2": {"source": "gan", "finding": "Pneumonia"},
}
R = "real"
F = "fake"
ANSWERS = {
    "R1": {"a1": R, "a2": R, "b1": R, "b2": F, "c1": R, "c2": F, "d1": F, "d2": F},
    "R2": {"a1": R, "a2": F, "b1": R, "b2": R, "c1": R, "c2": F, "d1": F, "d2": F},
}


def test_hand_made_table():
    res = score_judgements(KEY, ANSWERS, ["Effusion", "Pneumonia"], ["real", "gan"])
    rows = list(csv.reader(io.StringIO(table_csv(res["table"]))))
    assert rows == [
        ["Finding", "real", "gan"],
        ["Effusion", "2|1 /2", "1|2 /2"],
        ["Pneumonia", "1|1 /2", "0|0 /2"],
        ["Total", "3|2 /4", "1|2 /4"],
    ]
    m1, m2 = res["metrics"]["R1"], res["metrics"]["R2"]
    assert (m1["sensitivity"], m1["specificity"], m1["accuracy"]) == (0.75, 0.75, 0.75)
    assert (m2["sensitivity"], m2["specificity"]) == (0.5, 0.5)
    assert m1["sensitivity_per_source"] == {"gan": 0.75}
    (k,) = res["kappa"]
    assert k["readers"] == ["R1", "R2"] and k["n"] == 8
    assert k["agreement"] == pytest.approx(0.75) and k["kappa"] == pytest.approx(0.5)
    md = markdown(res)
    assert "| Effusion | 2\\|1 /2 | 1\\|2 /2 |" in md and "kappa 0.50" in md


def test_partial_answers_and_kappa_edge_cases():
    partial = {"R1": {"a1": R, "b1": F}, "R2": {}}
    res = score_judgements(KEY, partial, ["Effusion", "Pneumonia"], ["real", "gan"])
    rows = list(csv.reader(io.StringIO(table_csv(res["table"]))))
    assert rows[1] == ["Effusion", "1|- /2", "0|- /2"]  # '-': R2 judged nothing there
    assert res["metrics"]["R2"]["sensitivity"] is None
    assert res["kappa"][0]["kappa"] is None and res["kappa"][0]["n"] == 0
    same = {"x": R, "y": R}
    assert cohen_kappa(same, same)["kappa"] is None  # both always "real": kappa undefined
    assert cohen_kappa({"x": R, "y": F}, {"x": F, "y": R})["kappa"] == pytest.approx(-1.0)


def test_write_scores_for_a_study(study):
    db_path = paths(study).db
    key = load_key(study)
    order = load_study(study)["order"]
    readers = [study_db.add_reader(db_path, n) for n in ("Alice", "Bob")]
    conn = study_db.connect(db_path)
    try:
        for pos, image_id in enumerate(order):  # Alice is perfect; Bob calls everything real
            truth = R if key[image_id]["source"] == REAL else F
            study_db.record_answer(conn, readers[0].id, pos, image_id, truth)
            study_db.record_answer(conn, readers[1].id, pos, image_id, R)
    finally:
        conn.close()
    result = write_scores(study)
    out = paths(study).scores
    rows = list(csv.reader(io.StringIO((out / "table1.csv").read_text())))
    assert rows[0] == ["Finding", "real", "pix2pix", "stargan"]
    pneumonia = next(r for r in rows if r[0] == "Pneumonia")
    assert pneumonia == ["Pneumonia", "2|2 /2", "0|2 /2", "0|1 /1"]
    assert rows[-1] == ["Total", "12|12 /12", "0|12 /12", "0|11 /11"]
    assert result["metrics"]["R1"]["accuracy"] == 1.0
    assert result["metrics"]["R2"]["specificity"] == 1.0 and result["metrics"]["R2"]["sensitivity"] == 0.0
    assert result["reader_names"] == {"R1": "Alice", "R2": "Bob"}
    long_rows = list(csv.DictReader(io.StringIO((out / "judgements.csv").read_text())))
    assert len(long_rows) == 2 * 6 * 3
    assert json.loads((out / "scores.json").read_text())["total_images"] == len(order)
    assert "R1 (Alice)" in (out / "table1.md").read_text()
