"""The stage runner: skip-when-complete, failure reporting, and the quick preset end to end."""
import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

from cxr_keras.cli import COMMANDS
from cxr_keras.config import preset
from cxr_keras.paths import package_env
from cxr_keras.pipeline import Stage, StageFailed, plan, run_stage, run_pipeline


def _stage_module(tmp_path, name, body):
    """A module ``fake_stages.<name>`` under ``tmp_path`` (a stage runs ``python -m`` of a module)."""
    package = tmp_path / "fake_stages"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").touch()
    (package / f"{name}.py").write_text(body)
    return f"fake_stages.{name}"


def test_a_finished_stage_leaves_a_marker_and_a_failed_one_does_not(tmp_path):
    ok = _stage_module(tmp_path, "ok", "import sys; print('hello from stage'); open(sys.argv[1], 'w').write('x')\n")
    bad = _stage_module(tmp_path, "bad", "import sys; print('boom'); sys.exit(3)\n")
    out = tmp_path / "run"
    env = {"PYTHONPATH": str(tmp_path)}
    run_stage(out, Stage("first", [ok, tmp_path / "made.txt"], tmp_path, env=env), 1, 2, dict(os.environ))
    marker = json.loads((out / "stages" / "first.json").read_text())
    assert marker["command"].startswith("python -m fake_stages.ok ") and (tmp_path / "made.txt").exists()
    assert "hello from stage" in (out / "logs" / "first.log").read_text()
    with pytest.raises(StageFailed, match=r"stage 'second' failed with exit code 3; see .*second\.log"):
        run_stage(out, Stage("second", [bad], tmp_path, env=env), 2, 2, dict(os.environ))
    assert not (out / "stages" / "second.json").exists()


def test_stages_run_the_package_commands_not_checkout_paths(tmp_path):
    """Each stage is ``python -m cxr_keras.cli.NAME`` of an existing command, shown as ``cxr-keras NAME``."""
    for stage in plan(preset("demo"), tmp_path):
        name = stage.argv[0]
        assert name in COMMANDS, stage.name
        cmd = stage.command()
        assert cmd[:3] == [sys.executable, "-m", f"cxr_keras.cli.{name}"]
        assert importlib.util.find_spec(stage.module) is not None, stage.module
        assert stage.shown().startswith(f"cxr-keras {name} ")
        assert not any("scripts" in part for part in cmd), cmd


def test_package_env_makes_this_package_importable_from_anywhere(tmp_path):
    env = package_env({"PYTHONPATH": "/somewhere/else"})
    code = "import cxr_keras, sys; print(cxr_keras.__file__)"
    import subprocess

    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    import cxr_keras

    assert Path(proc.stdout.strip()) == Path(cxr_keras.__file__)
    root = str(Path(cxr_keras.__file__).resolve().parents[1])  # a checkout: not a site-packages folder
    assert env["PYTHONPATH"].split(os.pathsep) == [root, "/somewhere/else"]


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
    # Table 2: the prior-box column, bootstrap intervals, ori's difference from the prior box, the
    # checkpoint chosen on held-out validation images (issue 13)
    table2 = (out / "table2" / "table2.md").read_text()
    assert "| Finding | prior box | ori @2 |" in table2 and "ori − prior box @2" in table2
    assert "95% bootstrap interval" in table2 and "`--select val`" in table2
    assert "| **Total** |" in table2 and "] |" in table2.split("| **Total** |")[1].splitlines()[0]
    # a second run finds every stage complete and only rewrites the report
    before = {p.name: p.stat().st_mtime for p in (out / "stages").glob("*.json")}
    run_pipeline(out, "quick")
    assert before == {p.name: p.stat().st_mtime for p in (out / "stages").glob("*.json")}


def test_strategy_reaches_every_gan_and_detector_trainer(tmp_path):
    """Issue 15: ``run_pipeline --strategy`` is passed to train_gan and train_detector; auto adds nothing."""
    stages = plan(preset("demo"), tmp_path, strategy="multi_worker")
    trainers = [s for s in stages if s.argv[0] in ("train_gan", "train_detector") and "--prior-box" not in s.argv]
    assert len(trainers) == 3 + len(preset("demo").detection.protocols)
    for s in trainers:
        i = s.argv.index("--strategy")
        assert s.argv[i + 1] == "multi_worker", s.name
    others = [s for s in stages if s not in trainers]
    assert not any("--strategy" in s.argv for s in others)
    assert not any("--strategy" in s.argv for s in plan(preset("demo"), tmp_path))


def test_run_pipeline_command_passes_seeds_publish_and_strategy(tmp_path, monkeypatch):
    from cxr_keras import pipeline
    from cxr_keras.cli import run_pipeline as cli

    got = {}
    monkeypatch.setattr(pipeline, "run_pipeline", lambda *a, **k: got.update(args=a, kwargs=k))
    cli.main(["--preset", "quick", "--out", str(tmp_path / "run"), "--seeds", "3", "--strategy", "mirrored",
              "--publish", str(tmp_path / "pub")])
    assert got["kwargs"]["seeds"] == 3 and got["kwargs"]["strategy"] == "mirrored"
    assert Path(got["kwargs"]["publish"]) == tmp_path / "pub"
    cli.main(["--preset", "quick", "--out", str(tmp_path / "run")])
    assert got["kwargs"]["seeds"] is None and got["kwargs"]["publish"] is None
    assert got["kwargs"]["strategy"] == "auto"


def test_ctrl_c_outside_a_stage_is_one_line_not_a_traceback(tmp_path, monkeypatch, capsys):
    """Ctrl-C while the report is written (no stage running) ends with exit 130 and one line."""
    from cxr_keras import pipeline
    from cxr_keras.cli import run_pipeline as cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "run_pipeline", interrupted)
    assert cli.main(["--preset", "quick", "--out", str(tmp_path / "run")]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("run_pipeline: interrupted")
