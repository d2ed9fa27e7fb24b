"""The stage runner: skip-when-complete, failure reporting, and the quick preset end to end."""
import json
import os
import sys
from pathlib import Path

import pytest

from cxr_keras.config import preset
from cxr_keras.pipeline import Stage, StageFailed, plan, run_stage, run_pipeline

REPO = Path(__file__).resolve().parents[1]


def _script(tmp_path, name, body):
    p = tmp_path / name
    p.write_text(body)
    return p


def test_a_finished_stage_leaves_a_marker_and_a_failed_one_does_not(tmp_path):
    ok = _script(tmp_path, "ok.py", "import sys; print('hello from stage'); open(sys.argv[1], 'w').write('x')\n")
    bad = _script(tmp_path, "bad.py", "import sys; print('boom'); sys.exit(3)\n")
    out = tmp_path / "run"
    run_stage(out, Stage("first", [str(ok), tmp_path / "made.txt"], tmp_path), 1, 2, dict(os.environ))
    marker = json.loads((out / "stages" / "first.json").read_text())
    assert "ok.py" in marker["command"] and (tmp_path / "made.txt").exists()
    assert "hello from stage" in (out / "logs" / "first.log").read_text()
    with pytest.raises(StageFailed, match=r"stage 'second' failed with exit code 3; see .*second\.log"):
        run_stage(out, Stage("second", [str(bad)], tmp_path), 2, 2, dict(os.environ))
    assert not (out / "stages" / "second.json").exists()


def test_plan_covers_the_protocol_and_real_data_skips_the_dataset(tmp_path):
    names = [s.name for s in plan(preset("demo"), tmp_path)]
    assert names[:2] == ["dataset", "records"]
    for stage in ("train_pix2pix", "train_pix2pix_n", "train_stargan", "synthesize_pix2pix",
                  "synthesize_stargan", "od_configs", "detector_ori", "detector_ori_pix2pix_n", "table2",
                  "reader_study", "auto_judge"):
        assert stage in names
    real = plan(preset("paper"), tmp_path, nih_root=tmp_path / "nih")
    assert real[0].name == "records" and str(tmp_path / "nih") in map(str, real[0].argv)


def test_unknown_stage_names_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown stage"):
        run_pipeline(tmp_path, "quick", only=["nope"], report=False)


@pytest.mark.slow
def test_quick_preset_end_to_end(tmp_path):
    """The README's main job at the quick preset: every stage, the report, and a clean fidelity check."""
    out = tmp_path / "quick"
    run_pipeline(out, "quick")
    report = (out / "report.md").read_text()
    for heading in ("## Data", "## Samples per finding", "## Fidelity", "## Table 2",
                    "## Table 1 by the automatic judge", "## Commands", "## Versions"):
        assert heading in report, heading
    assert (out / "report.html").read_text().count("data:image/png;base64") >= 2
    for gen in ("pix2pix", "pix2pix_n"):
        m = json.loads((out / "syn" / gen / "manifest.json").read_text())
        fid = m["fidelity"]
        assert m["items"] and fid["failed"] == 0 and fid["checked"] == len(m["items"]) == fid["passed"]
        assert fid["max_abs_diff_inside_boxes"] == 0
    assert (out / "table2" / "table2.md").is_file() and (out / "table2" / "table2.csv").is_file()
    # a second run finds every stage complete and only rewrites the report
    before = {p.name: p.stat().st_mtime for p in (out / "stages").glob("*.json")}
    run_pipeline(out, "quick")
    assert before == {p.name: p.stat().st_mtime for p in (out / "stages").glob("*.json")}
