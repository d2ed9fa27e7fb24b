"""train_gan.py under fire (issue #14): SIGKILL at seeded random moments, then --resume reaches the requested
step from the newest good checkpoint every time; a full disk during a checkpoint save (RLIMIT_FSIZE) is a
one-line error with the previous checkpoint intact and resumable."""
import random
import re
import resource
import subprocess
import time

import pytest
import tensorflow as tf

from cxr_keras.gan import training
from cxr_keras.paths import RunPaths

from faultkit import TINY_FLAGS, command, tiny_cfg, wait_until

STEPS = 60


def train_gan(records, run, *extra):
    return command("cxr_keras.cli.train_gan", "--model", "pix2pix", "--records", records, "--out", run,
                   "--steps", STEPS, "--checkpoint-every", 1, *TINY_FLAGS, *extra)


def numbers(paths):
    return sorted(int(p.name[5:-6]) for p in paths.checkpoints.glob("ckpt-*.index"))


def readable(prefix) -> bool:
    """Every tensor reads back (TensorFlow checks sizes and checksums)."""
    try:
        reader = tf.train.load_checkpoint(str(prefix))
        for key in reader.get_variable_to_dtype_map():
            reader.get_tensor(key)
        return True
    except Exception:  # noqa: BLE001
        return False


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume_reaches_the_step(records, tmp_path, spawn):
    rng = random.Random(14)
    run = tmp_path / "run"
    paths = RunPaths(run)
    expected_start = None
    for round_ in range(4):  # three kills, then a run to the end
        log = tmp_path / f"round{round_}.log"
        before = numbers(paths)
        with open(log, "wb") as out:
            proc = spawn(train_gan(records, run, *(["--resume"] if round_ else [])), stdout=out,
                         stderr=subprocess.STDOUT)
        if round_ < 3:
            wait_until(lambda: proc.poll() is not None or (numbers(paths) and numbers(paths) != before), 240,
                       "a new checkpoint")
            time.sleep(rng.uniform(0.0, 1.5))  # the random moment: mid-step, mid-save or between
            proc.kill()
        assert proc.wait(timeout=300) in (0, -9)
        text = log.read_text()
        assert "Traceback" not in text, text[-3000:]
        if expected_start is not None:
            assert re.search(rf"resumed \S+ckpt-{expected_start} at step {expected_start}\b", text), text[-3000:]
        good = [n for n in numbers(paths) if readable(paths.checkpoints / f"ckpt-{n}")]
        expected_start = good[-1]  # the next --resume must start here
    assert proc.returncode == 0 and f"done at step {STEPS}" in text
    assert numbers(paths)[-1] == STEPS and readable(paths.checkpoints / f"ckpt-{STEPS}")
    assert not list(paths.checkpoints.glob("*_temp"))
    assert [int(r["step"]) for r in training.read_history(paths.history)] == list(range(1, STEPS + 1))


def limit_file_size(limit):
    def preexec():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


@pytest.mark.slow
def test_a_full_disk_during_a_checkpoint_save_keeps_the_previous_checkpoint(records, tmp_path):
    run = tmp_path / "run"
    paths = RunPaths(run)
    training.train("pix2pix", records, run, tiny_cfg(steps=2), progress=False)
    data = next(paths.checkpoints.glob("ckpt-2.data-*"))
    limit = data.stat().st_size // 2  # the next checkpoint cannot be written; small files still can
    before = {p.name: p.read_bytes() for p in paths.checkpoints.glob("ckpt-2.*")}
    full = subprocess.run(train_gan(records, run, "--resume", "--steps", "4"), capture_output=True, text=True,
                          timeout=300, preexec_fn=limit_file_size(limit))
    assert full.returncode == 1, full.stdout + full.stderr
    assert "Traceback" not in full.stderr
    last = full.stderr.strip().splitlines()[-1]
    assert last.startswith("train_gan: ") and "saving the checkpoint of step 3 failed" in last
    assert "File too large" in last and "ckpt-2 is intact" in last
    assert numbers(paths) == [1, 2] and not list(paths.checkpoints.glob("*_temp"))
    assert {p.name: p.read_bytes() for p in paths.checkpoints.glob("ckpt-2.*")} == before
    assert tf.train.latest_checkpoint(str(paths.checkpoints)).endswith("ckpt-2")

    again = subprocess.run(train_gan(records, run, "--resume", "--steps", "4"), capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resumed" in again.stderr and "ckpt-2 at step 2" in again.stderr
    assert numbers(paths)[-1] == 4
