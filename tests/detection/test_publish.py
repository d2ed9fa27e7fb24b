"""A results folder from a finished run: the files Table 2 needs, and Table 2 recomputed exactly from them."""
import json
import shlex
import subprocess
import sys

import pytest

from cxr_keras.detection.publish import MAX_NPZ, PublishError, publish_run
from cxr_keras.paths import PipelinePaths, package_env
from tests.detection.test_table2 import _baseline, _hits, _run


def _finished_run(root):
    """A run folder as run_pipeline leaves it, with hand-made detections and a real table2 stage."""
    run = PipelinePaths(root)
    det = root / "detection"
    runs = [_run(det, "ori", "ori", {10: _hits(8)}, {10: _hits(3, 6)}, seed=0),
            _run(det, "ori_pix2pix", "ori_pix2pix", {10: _hits(12)}, {10: _hits(4, 6)}, seed=0),
            _run(det, "ori_seed1", "ori", {10: _hits(9)}, {10: _hits(2, 6)}, seed=1),
            _run(det, "ori_pix2pix_seed1", "ori_pix2pix", {10: _hits(13)}, {10: _hits(5, 6)}, seed=1),
            _baseline(det)]
    argv = ["evaluate_localisation", "--runs", *map(str, runs), "--iou", "0.1,0.3", "--steps", "10",
            "--window", "0", "--select", "val", "--draws", "300", "--no-coco", "--out", str(run.table2)]
    proc = subprocess.run([sys.executable, "-m", "cxr_keras.cli.evaluate_localisation", *argv[1:]],
                          env=package_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run.stages.mkdir()
    stages = ["detector_ori", "table2"]
    for name, seconds in zip(stages, (30.0, 5.0)):
        command = "cxr-keras " + " ".join(shlex.quote(a) for a in argv) if name == "table2" else "x"
        run.marker(name).write_text(json.dumps({"stage": name, "command": command, "seconds": seconds}))
    run.pipeline_json.write_text(json.dumps({"preset": "study", "kind": "ct", "seed": 0, "seeds": 2,
                                             "stages": stages}))
    (run.report_files).mkdir()
    (run.report_files / "samples.png").write_bytes(b"\x89PNG fake")
    run.report_md.write_text(f"# report\n\nRun folder: `{root}`\n\n![samples](report_files/samples.png)\n")
    run.od_configs.mkdir()
    (run.od_configs / "ori.config").write_text("model {}\n")
    return run


def test_publish_copies_what_table2_needs_and_recomputes_it_exactly(tmp_path):
    run = _finished_run(tmp_path / "study")
    out = publish_run(run.root, tmp_path / "docs" / "study", wall_seconds=60)
    assert sorted(p.name for p in (out / "det").iterdir()) == [
        "ori", "ori_pix2pix", "ori_pix2pix_seed1", "ori_seed1", "prior_box"]
    assert (out / "det" / "ori" / "detections_val" / "step_00000010.npz").is_file()
    assert not list((out / "det").rglob("ckpt-*"))
    for f in (out / "det").rglob("*.npz"):
        assert f.stat().st_size < MAX_NPZ
    assert (out / "table2" / "table2.csv").read_bytes() == (run.table2 / "table2.csv").read_bytes()
    readme = (out / "README.md").read_text()
    assert "identical" in readme and "--preset study" in readme and "--seed 0" in readme
    assert f"--runs {out.as_posix()}/det/*" in readme and "--select val" in readme
    assert (out / "report_files" / "samples.png").is_file()
    assert str(run.root) not in (out / "report.md").read_text()
    assert (out / "od_configs" / "ori.config").is_file()


def test_publish_takes_only_the_runs_table2_used(tmp_path):
    """A folder a stopped run left under detection/ (e.g. a seed dropped with --seeds) is not published,
    and Table 2 still recomputes exactly; a run of the table2 stage that is gone is an error."""
    run = _finished_run(tmp_path / "study")
    _run(run.root / "detection", "ori_seed2", "ori", {10: _hits(1)}, {10: _hits(1, 6)}, seed=2)
    out = publish_run(run.root, tmp_path / "pub")
    assert "ori_seed2" not in [p.name for p in (out / "det").iterdir()]
    assert "ori_seed2" not in (out / "README.md").read_text()
    assert "--publish" in (out / "README.md").read_text()
    import shutil

    shutil.rmtree(run.root / "detection" / "ori_pix2pix")
    with pytest.raises(PublishError, match="ori_pix2pix: a run of the table2 stage is missing"):
        publish_run(run.root, tmp_path / "pub2")


def test_publish_refuses_an_unfinished_run(tmp_path):
    with pytest.raises(PublishError, match="pipeline.json"):
        publish_run(tmp_path, tmp_path / "out")
