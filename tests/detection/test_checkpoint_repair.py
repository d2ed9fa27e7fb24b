"""Detector runs resume from their newest good checkpoint (issue #14): a damaged newest checkpoint is set
aside with a warning, a lost state file does not restart training at step 0, and *_temp leftovers go.

A stand-in trainer restores ``tf.train.latest_checkpoint`` like the OD API's ``train_loop`` (and, like it,
saves a step-0 checkpoint and starts over when there is none)."""
from cxr_keras.detection import od_compat  # noqa: F401

import sys

import pytest

from cxr_keras.config import preset, replace
from cxr_keras.detection import train as odt
from cxr_keras.detection.configs import make_od_configs

TRAINER = """
import sys
import tensorflow as tf
model_dir, steps, every = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
step = tf.Variable(0, dtype=tf.int64)
ckpt = tf.train.Checkpoint(step=step)
manager = tf.train.CheckpointManager(ckpt, model_dir, max_to_keep=None)
latest = tf.train.latest_checkpoint(model_dir)
ckpt.restore(latest)  # as model_lib_v2.train_loop: a damaged checkpoint makes this raise
print("restored", latest, "at step", int(step), flush=True)
if int(step) == 0:
    manager.save()
while int(step) < steps:
    step.assign_add(every)
    manager.save()
"""


@pytest.fixture
def protocol(records_dir, tmp_path, monkeypatch):
    """A run folder trained to step 6 by the stand-in (checkpoints ckpt-1..ckpt-4 = steps 0, 2, 4, 6)."""
    from cxr_keras.detection import inference

    class NoScorer:  # nothing is in a scoring window; never called
        def restore(self, prefix):
            raise AssertionError("no checkpoint should be scored")

    monkeypatch.setattr(inference.CheckpointDetector, "for_config", classmethod(lambda cls, config: NoScorer()))
    monkeypatch.setattr(odt, "child_command", lambda config, mdir, steps, every, *rest: [
        sys.executable, "-c", TRAINER, str(mdir), str(steps), str(every)])
    root, _ = records_dir
    cfg = replace(preset("quick").detection, checkpoint_every=2, eval_steps=(1000,), window=0)
    config = make_od_configs(root, tmp_path / "od", cfg, protocols=["ori"], steps=6)["ori"]
    run = tmp_path / "run"
    result = odt.train_protocol(config, run, cfg, max_checkpoints=100, poll_seconds=0.05)
    assert result.final_step == 6
    return {"config": config, "run": run, "cfg": cfg, "model": run / "model"}


def _train(p, steps, lines):
    return odt.train_protocol(p["config"], p["run"], p["cfg"], steps=steps, max_checkpoints=100,
                              poll_seconds=0.05, log=lines.append)


def _add_checkpoint(model, number, step):
    """A checkpoint the watcher has not pruned yet (as after a kill between a save and the pruning)."""
    import tensorflow as tf

    ckpt = tf.train.Checkpoint(step=tf.Variable(step, dtype=tf.int64))
    return tf.train.CheckpointManager(ckpt, str(model), max_to_keep=None).save(checkpoint_number=number)


def _truncate_data(prefix):
    data = sorted(prefix.parent.glob(prefix.name + ".data-*"))[0]
    with open(data, "r+b") as fh:
        fh.truncate(20)
    return data


def test_a_damaged_newest_detector_checkpoint_falls_back(protocol):
    from pathlib import Path

    model = protocol["model"]
    assert [odt.checkpoint_step(p) for p in odt.list_checkpoints(model)] == [6]
    data = _truncate_data(Path(_add_checkpoint(model, 5, 8)))
    lines = []
    result = _train(protocol, 10, lines)
    assert result.final_step == 10
    text = "\n".join(lines)
    assert data.name in text and "damaged" in text
    assert (model / "damaged" / data.name).is_file()
    log = (protocol["run"] / "train.log").read_text()
    assert "at step 6" in log.split("restored")[-1]  # resumed from the previous good one


def test_a_lone_damaged_detector_checkpoint_is_a_clear_error(protocol):
    from pathlib import Path

    from cxr_keras.gan.checkpoints import CheckpointError

    data = _truncate_data(Path(odt.list_checkpoints(protocol["model"])[-1]))
    with pytest.raises(CheckpointError, match=f"every checkpoint is damaged.*{data.name}"):
        _train(protocol, 10, [])


def test_a_lost_state_file_does_not_restart_the_detector_at_step_0(protocol):
    model = protocol["model"]
    (model / "checkpoint").unlink()
    (model / "ckpt-9_temp").mkdir()
    lines = []
    result = _train(protocol, 8, lines)
    assert result.final_step == 8
    log = (protocol["run"] / "train.log").read_text()
    assert "at step 6" in log.split("restored")[-1]  # not "at step 0"
    assert not (model / "ckpt-9_temp").exists()
    assert [odt.checkpoint_step(p) for p in odt.list_checkpoints(model)][-1] == 8
