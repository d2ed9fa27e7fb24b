"""The OD API configs checked in under od_configs/paper/: rendered from the template, not drifted."""
from cxr_keras.detection import od_compat  # noqa: F401  (before TensorFlow / protobuf)

import shutil
import subprocess
from pathlib import Path

import pytest

from cxr_keras.config import preset
from cxr_keras.detection import configs as odc

REPO = Path(__file__).resolve().parents[2]
PAPER = REPO / "od_configs" / "paper"


def test_checked_in_paper_configs_match_the_template(tmp_path):
    """Fails when the template, the paper preset or the files changed without `make od-configs`."""
    written = odc.write_repo_configs(tmp_path, "paper")
    assert sorted(p.name for p in PAPER.glob("*.config")) == sorted(p.name for p in written.values())
    for protocol, path in written.items():
        assert (PAPER / path.name).read_text() == path.read_text(), (
            f"od_configs/paper/{path.name} drifted from the template: run `make od-configs`")


def test_paper_configs_are_the_paper_protocols_with_repo_relative_paths():
    parsed = {p.stem: odc.load_pipeline_configs(p) for p in sorted(PAPER.glob("*.config"))}
    assert set(parsed) == {"ori", "ori_pix2pix", "ori_pix2pix_n"}
    paper = preset("paper").detection
    for protocol, c in parsed.items():
        assert odc.config_preset(PAPER / f"{protocol}.config") == "paper"
        assert c["model"] == parsed["ori"]["model"] and c["train_config"] == parsed["ori"]["train_config"]
        assert c["model"].faster_rcnn.feature_extractor.type == paper.feature_extractor
        assert c["train_config"].num_steps == paper.steps
        assert c["train_input_config"].label_map_path == "tfrecords/label_map.pbtxt"
        assert list(c["eval_input_configs"][0].tf_record_input_reader.input_path) == [
            "tfrecords/det_test.tfrecord"]
    inputs = {p: list(c["train_input_config"].tf_record_input_reader.input_path) for p, c in parsed.items()}
    assert inputs["ori"] == ["tfrecords/det_train.tfrecord"]
    assert inputs["ori_pix2pix"] == inputs["ori"] + ["runs/syn/pix2pix/detection.tfrecord"]
    assert inputs["ori_pix2pix_n"] == inputs["ori"] + ["runs/syn/pix2pix_n/detection.tfrecord"]


def test_paper_configs_are_not_git_ignored():
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    files = [p.relative_to(REPO).as_posix() for p in sorted(PAPER.parent.rglob("*")) if p.is_file()]
    proc = subprocess.run(["git", "check-ignore", "--no-index", *files], cwd=REPO, capture_output=True,
                          text=True)
    assert proc.returncode == 1, f"ignored by .gitignore: {proc.stdout} {proc.stderr}"  # 1: none is
