"""Damaged, missing and half-written GAN checkpoints (issue #14): --resume restores the newest good
checkpoint with a warning naming the damaged files, never restarts from step 0 while checkpoints exist,
never saves over a later checkpoint, and removes the *_temp folders of killed saves."""
import os
import shutil
from pathlib import Path

import pytest
import tensorflow as tf

from cxr_keras.gan import runs, training
from cxr_keras.paths import RunPaths

from faultkit import tiny_cfg


def truncate(path, size=1000):
    with open(path, "r+b") as fh:
        fh.truncate(size)


def flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _first(paths, pattern):
    found = sorted(paths.checkpoints.glob(pattern))
    assert found, pattern
    return found[0]


@pytest.fixture(scope="module")
def trained_once(records, tmp_path_factory):
    run = tmp_path_factory.mktemp("trained") / "run"
    training.train("pix2pix", records, run, tiny_cfg(steps=4), progress=False)
    return run


@pytest.fixture
def trained(trained_once, tmp_path):
    """A copy of a run trained to step 4, a checkpoint every step (ckpt-2, -3, -4 kept)."""
    return Path(shutil.copytree(trained_once, tmp_path / "run"))


def resume(records, run, steps, seen=None):
    on_start = (lambda step, model: seen.update(step=step)) if seen is not None else None
    return training.train(None, records, run, steps=steps, resume=True, progress=False, on_start=on_start)


@pytest.mark.parametrize("damage", ["truncated data", "truncated index", "flipped byte in data"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(trained, records, capfd, damage):
    paths = RunPaths(trained)
    target = _first(paths, "ckpt-4.index" if "index" in damage else "ckpt-4.data-*")
    (flip_a_byte if "flipped" in damage else truncate)(target)
    capfd.readouterr()
    seen = {}
    result = resume(records, trained, 6, seen)
    err = capfd.readouterr().err
    assert seen["step"] == 3 and result.step == 6 and result.status == "done"
    assert target.name in err and "damaged" in err and "ckpt-3" in err  # names the damaged file
    assert (paths.checkpoints / "damaged" / target.name).is_file()  # kept aside, not overwritten
    assert [int(r["step"]) for r in training.read_history(paths.history)] == list(range(1, 7))
    assert runs.load_run(trained).step == 6


def test_a_lost_state_file_resumes_from_the_newest_checkpoint_not_step_0(trained, records, capfd):
    paths = RunPaths(trained)
    (paths.checkpoints / "checkpoint").unlink()
    stamp = os.stat(_first(paths, "ckpt-4.index")).st_mtime_ns
    with pytest.raises(runs.RunExistsError, match="--resume"):  # a new run would overwrite them
        training.train("pix2pix", records, trained, tiny_cfg(steps=4), progress=False)
    assert os.stat(_first(paths, "ckpt-4.index")).st_mtime_ns == stamp
    seen = {}
    result = resume(records, trained, 5, seen)
    assert seen["step"] == 4 and result.step == 5
    assert "starting from step 0" not in capfd.readouterr().err
    assert tf.train.latest_checkpoint(str(paths.checkpoints)).endswith("ckpt-5")
    assert sorted(p.name for p in paths.checkpoints.glob("ckpt-*.index")) == [
        "ckpt-3.index", "ckpt-4.index", "ckpt-5.index"]  # keep_checkpoints=3 still applies


def test_the_temp_folder_of_a_killed_save_is_removed(trained, records, capfd):
    paths = RunPaths(trained)
    temp = paths.checkpoints / "ckpt-5_temp"
    temp.mkdir()
    (temp / "part-00000-of-00001.data-00000-of-00001.tempstate123").write_bytes(b"half a checkpoint")
    result = resume(records, trained, 5)
    assert result.step == 5 and not temp.exists()
    assert "ckpt-5_temp" in capfd.readouterr().err


def test_every_checkpoint_damaged_refuses_and_changes_nothing(trained, records):
    from cxr_keras.gan.checkpoints import CheckpointError

    paths = RunPaths(trained)
    for data in paths.checkpoints.glob("ckpt-*.data-*"):
        truncate(data, 10)
    before = sorted(p.name for p in paths.checkpoints.iterdir())
    with pytest.raises(CheckpointError, match=r"every checkpoint is damaged.*ckpt-4.*ckpt-3.*ckpt-2"):
        resume(records, trained, 6)
    assert sorted(p.name for p in paths.checkpoints.iterdir()) == before


def test_synthesis_and_evaluation_load_the_newest_good_checkpoint(trained, capfd):
    paths = RunPaths(trained)
    truncate(_first(paths, "ckpt-4.data-*"))
    loaded = runs.load_run(trained)
    assert loaded.step == 3 and loaded.checkpoint.endswith("ckpt-3")
    assert "ckpt-4" in capfd.readouterr().err
    assert _first(paths, "ckpt-4.index")  # a reader does not move files


def test_no_save_over_a_checkpoint_of_a_higher_or_equal_step(trained):
    from cxr_keras.gan.checkpoints import CheckpointError, CheckpointStore

    paths = RunPaths(trained)
    step = tf.Variable(0, dtype=tf.int64)
    store = CheckpointStore(tf.train.Checkpoint(step=step), paths.checkpoints, 3)
    stamp = os.stat(_first(paths, "ckpt-4.index")).st_mtime_ns
    for n in (3, 4):
        with pytest.raises(CheckpointError, match="higher or equal step"):
            store.save(checkpoint_number=n)
    assert os.stat(_first(paths, "ckpt-4.index")).st_mtime_ns == stamp
