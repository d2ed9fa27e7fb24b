"""The TF OD API's own entry points run unchanged in the project's environment.

No flag and no environment variable: the start-up hook installed with the package
(``cxr_keras_od_startup.pth``) selects protobuf's Python implementation and restores the
``control_flow_ops`` names tf_slim needs. Each child gets an environment without
PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION or PYTHONPATH and runs outside the checkout.
"""
import os
import subprocess
import sys

import pytest

from cxr_keras.config import preset, replace
from cxr_keras.detection import train as odt
from cxr_keras.detection.configs import make_od_configs

OD_ERROR = "Descriptors cannot be created directly"


def _od(module, args, cwd, timeout=600):
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION")}
    return subprocess.run([sys.executable, "-m", f"object_detection.{module}"] + [str(a) for a in args],
                          cwd=cwd, env=dict(env, TF_CPP_MIN_LOG_LEVEL="2"), capture_output=True,
                          text=True, timeout=timeout)


def _helpfull(module, flag, cwd):
    """absl's --helpfull prints every flag and exits with 1: the entry point imported cleanly."""
    proc = _od(module, ["--helpfull"], cwd)
    assert OD_ERROR not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 1 and flag in proc.stdout, proc.stderr[-3000:]


def test_model_main_tf2_starts_without_any_setting(tmp_path):
    _helpfull("model_main_tf2", "--pipeline_config_path", tmp_path)


@pytest.mark.slow
def test_stock_model_main_tf2_trains_on_our_records_and_exporter_starts(make_records, tmp_path):
    """model_main_tf2 itself (it trains in iterations of 100 steps) on tiny phantom records: a
    ResNet-50 Faster R-CNN at 64×64 with few proposals, checkpointed at step 100."""
    write_records, _ = make_records
    write_records(tmp_path / "rec", n_train=4, n_test=2, size=64)
    cfg = replace(preset("quick").detection, image_size=64, first_stage_max_proposals=8,
                  second_stage_batch_size=4)
    config = make_od_configs(tmp_path / "rec", tmp_path / "od", cfg, protocols=["ori"], steps=100)["ori"]
    model_dir = tmp_path / "model"
    proc = _od("model_main_tf2", [f"--pipeline_config_path={config}", f"--model_dir={model_dir}",
                                  "--checkpoint_every_n=100"], tmp_path, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-5000:]
    steps = [odt.checkpoint_step(p) for p in odt.list_checkpoints(model_dir)]
    assert 100 in steps, steps
    _helpfull("exporter_main_v2", "--trained_checkpoint_dir", tmp_path)
