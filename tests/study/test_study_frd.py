"""The Fréchet Radiomic Distance adapter (study/frd.py): a clear message without frd-score, the package's
real call (two lists of str paths, its printed line swallowed), -inf and failures reported, not fatal."""
from __future__ import annotations

import sys
import types

import pytest

from cxr_keras.config import StudyConfig
from cxr_keras.study import frd
from cxr_keras.study.judge import _frd_md, run_frd
from cxr_keras.study.layout import REAL, load_key, load_study


def test_without_frd_score_the_message_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "frd_score", None)  # import frd_score → ImportError
    with pytest.raises(frd.FRDUnavailable, match=r"frd-score package .*pip install frd-score==1\.0\.1"):
        frd.frd_module()


@pytest.fixture
def fake_frd(monkeypatch):
    """A stand-in ``frd_score`` with the real compute_frd's signature and habits (prints its value)."""
    calls = []

    def compute_frd(paths, frd_version="v1", num_workers=None, **kwargs):
        calls.append({"paths": paths, "frd_version": frd_version, "num_workers": num_workers})
        a, b = paths
        value = float("-inf") if a == b else float(len(b) - len(a)) + 0.5
        if any("broken" in p for p in b):
            raise RuntimeError("No features could be extracted from any image.\nsecond line")
        print(f"FRD ({frd_version}): {value}")
        return value

    module = types.SimpleNamespace(__version__="1.0.1", compute_frd=compute_frd)
    monkeypatch.setitem(sys.modules, "frd_score", module)
    return calls


def test_table_calls_compute_frd_with_str_lists_and_reports_failures(fake_frd, tmp_path, capsys):
    ref = [tmp_path / f"r{i}.png" for i in range(3)]
    table = frd.frd_table(ref, {"g": [tmp_path / f"g{i}.png" for i in range(4)], "same": list(ref),
                                "bad": [tmp_path / "broken.png", tmp_path / "x.png"], "one": [tmp_path / "y.png"]},
                          workers=2)
    assert capsys.readouterr().out == ""  # compute_frd's own print is swallowed
    first = fake_frd[0]
    assert first["paths"] == [[str(p) for p in ref], [str(tmp_path / f"g{i}.png") for i in range(4)]]
    assert all(isinstance(p, str) for s in first["paths"] for p in s)  # pathlib.Path crashes frd-score
    assert first["frd_version"] == "v1" and first["num_workers"] == 2
    assert table["package"] == "frd-score 1.0.1" and table["distances"]["g"] == 1.5
    assert table["distances"]["same"] is None and "identical radiomic statistics" in table["errors"]["same"]
    assert table["errors"]["bad"] == "RuntimeError: No features could be extracted from any image."
    assert table["distances"]["one"] is None and "at least 2 images" in table["errors"]["one"]


def test_judge_reports_frd_per_source_or_why_not(study, fake_frd, monkeypatch):
    s, key = load_study(study), load_key(study)
    real_ids = [i for i in s["order"] if key[i]["source"] == REAL]
    halves = (real_ids[::2], real_ids[1::2])
    result = run_frd(study, s, key, real_ids, halves, StudyConfig())
    assert result["available"] and set(result["distances"]) == {"pix2pix", "stargan"}
    assert result["real_halves"] is not None and "| pix2pix |" in "\n".join(_frd_md({"frd": result}))
    assert run_frd(study, s, key, real_ids, halves, StudyConfig(judge_frd=False)) == {
        "available": False, "message": "switched off in this preset (judge_frd)"}
    monkeypatch.setitem(sys.modules, "frd_score", None)
    missing = run_frd(study, s, key, real_ids, halves, StudyConfig())
    assert not missing["available"] and "pip install frd-score" in missing["message"]
    assert _frd_md({"frd": missing})[0].startswith("Not computed: the Fréchet Radiomic Distance needs")


@pytest.mark.slow
def test_real_frd_score_orders_blurred_above_fresh_draws(tmp_path):
    """Only where frd-score and pyradiomics are installed (the lock does not pin them yet)."""
    pytest.importorskip("frd_score")
    pytest.importorskip("radiomics")
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)

    def draw(name, n, blur=0.0):
        files = []
        for i in range(n):
            img = cv2.GaussianBlur(rng.normal(128, 40, (64, 64)).astype(np.float32), (0, 0), 2.0)
            img = cv2.GaussianBlur(img, (0, 0), blur) if blur else img
            files.append(tmp_path / f"{name}{i}.png")
            cv2.imwrite(str(files[-1]), np.clip(img, 0, 255).astype(np.uint8))
        return files

    ref, fresh, blurred = draw("a", 8), draw("b", 8), draw("c", 8, blur=3.0)
    table = frd.frd_table(ref, {"fresh": fresh, "blurred": blurred}, workers=1)
    assert table["distances"]["blurred"] > table["distances"]["fresh"], table
