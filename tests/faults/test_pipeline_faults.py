"""Stage processes die with the pipeline, signals reach them once, one pipeline per run folder (issue #14).

A driver runs ``cxr-keras run_pipeline`` with its plan replaced by a stand-in stage that starts a
grandchild the way ``train_detector`` starts the OD API trainer, then sleeps; killing the driver with
SIGKILL must end both, and the rerun must finish."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from faultkit import TINY_FLAGS, alive, pids_running, wait_until

DRIVER = r"""
import json, sys
from pathlib import Path
from cxr_keras import pipeline
from cxr_keras.cli import run_pipeline as cli

out, stages = sys.argv[1], json.loads(sys.argv[2])

def plan(*args, **kwargs):
    return [pipeline.Stage(s["name"], s["argv"], Path(s["output"]), env=s.get("env", {}),
                           prepare=pipeline._resume_if_started() if s.get("resume") else None)
            for s in stages]

pipeline.plan = plan
sys.exit(cli.main(["--out", out, "--preset", "quick", "--no-report"]))
"""

STAGE = r"""
import os, signal, subprocess, sys, time
from pathlib import Path

work = Path(sys.argv[1])
if (work / "finish").exists():  # the rerun: done at once
    (work / "finished").write_text("ok")
    sys.exit(0)

def on_sigint(signum, frame):
    with open(work / "sigints", "a") as fh:
        fh.write("1")
    sys.exit(130)

signal.signal(signal.SIGINT, on_sigint)
grandchild = [sys.executable, "-c", "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); "
              "time.sleep(600)", str(work / "grandchild.pid")]
try:
    from cxr_keras import procs
    procs.start(grandchild)
except ImportError:  # the code before issue 14
    subprocess.Popen(grandchild)
(work / "stage.pid").write_text(str(os.getpid()))
time.sleep(600)
"""


@pytest.fixture
def setup(tmp_path):
    stages_dir = tmp_path / "fake_stages"
    stages_dir.mkdir()
    (stages_dir / "__init__.py").touch()
    (stages_dir / "sleeper.py").write_text(STAGE)
    work = tmp_path / "work"
    work.mkdir()
    repo = str(Path(__file__).resolve().parents[2])
    stage = {"name": "sleeper", "argv": ["fake_stages.sleeper", str(work)], "output": str(work),
             "env": {"PYTHONPATH": os.pathsep.join([str(tmp_path), repo])}}
    run = tmp_path / "run"
    return {"run": run, "work": work, "driver": [sys.executable, "-c", DRIVER, str(run), json.dumps([stage])]}


def _pid(path: Path) -> int:
    return wait_until(lambda: path.is_file() and path.read_text().strip() and int(path.read_text()), 60,
                      f"{path.name}")


def _start(spawn, cmd, log: Path):
    """Start ``cmd`` in its own process group (killed at teardown), its output in ``log``."""
    with open(log, "wb") as out:
        proc = spawn(cmd, stdout=out, stderr=subprocess.STDOUT)
    proc.log = log
    return proc


def _run(spawn, cmd, log: Path, timeout: float):
    """Run ``cmd`` to its end (at most ``timeout`` s); its exit code and output."""
    proc = _start(spawn, cmd, log)
    code = proc.wait(timeout=timeout)
    return code, log.read_text()


def test_kill_9_of_the_pipeline_leaves_no_stage_process_and_the_rerun_finishes(setup, spawn):
    driver = _start(spawn, setup["driver"], setup["work"] / "driver.log")
    stage, grandchild = _pid(setup["work"] / "stage.pid"), _pid(setup["work"] / "grandchild.pid")
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait(timeout=10)
    wait_until(lambda: not alive(stage) and not alive(grandchild), 10, "the stage processes to end")

    (setup["work"] / "finish").touch()
    code, text = _run(spawn, setup["driver"], setup["work"] / "rerun.log", 120)
    assert code == 0, text
    assert (setup["work"] / "finished").is_file() and (setup["run"] / "stages" / "sleeper.json").is_file()
    assert f"stale lock of PID {driver.pid}" in text
    assert not (setup["run"] / "pipeline.lock").exists()  # released at the end


def test_a_second_pipeline_on_the_same_folder_refuses(setup, spawn):
    first = _start(spawn, setup["driver"], setup["work"] / "first.log")
    stage = _pid(setup["work"] / "stage.pid")
    code, text = _run(spawn, setup["driver"], setup["work"] / "second.log", 60)
    assert code == 1
    assert f"another pipeline is working in this folder (PID {first.pid}" in text.strip().splitlines()[-1]
    assert alive(stage) and first.poll() is None  # the first one is undisturbed


def test_sigint_reaches_the_stage_once_and_stops_the_pipeline(setup, spawn):
    driver = _start(spawn, setup["driver"], setup["work"] / "driver.log")
    stage, grandchild = _pid(setup["work"] / "stage.pid"), _pid(setup["work"] / "grandchild.pid")
    os.kill(driver.pid, signal.SIGINT)
    assert driver.wait(timeout=60) == 128 + signal.SIGINT
    assert (setup["work"] / "sigints").read_text() == "1"  # passed on once (not twice, not never)
    wait_until(lambda: not alive(stage) and not alive(grandchild), 10, "the stage processes to end")
    assert "stopped by SIGINT" in driver.log.read_text()
    assert not (setup["run"] / "stages" / "sleeper.json").exists()


def test_run_lock_refuses_a_live_holder_and_takes_over_a_stale_one(tmp_path):
    from cxr_keras.procs import LockedError, RunLock

    path = tmp_path / "run" / "pipeline.lock"
    path.parent.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    path.write_text(f"{dead.stdout.strip()}\n2026-01-01 00:00:00\nold command\n")
    seen = []
    with RunLock(path, log=seen.append):
        assert "stale lock of PID" in seen[0] and path.read_text().split("\n")[0] == str(os.getpid())
        with pytest.raises(LockedError, match=rf"another pipeline .*PID {os.getpid()}"):
            RunLock(path).acquire()
    assert not path.exists()


@pytest.mark.slow
def test_kill_9_of_the_pipeline_during_gan_training(records, tmp_path, spawn):
    """The reported case: the killed pipeline's train_gan.py kept training beside the rerun's."""
    gan = tmp_path / "run" / "gan" / "pix2pix"
    stage = {"name": "train_pix2pix", "resume": True, "output": str(gan), "argv": [
        "train_gan", "--model", "pix2pix", "--records", str(records), "--out", str(gan), "--steps", "120",
        "--checkpoint-every", "1", *TINY_FLAGS]}
    driver_cmd = [sys.executable, "-c", DRIVER, str(tmp_path / "run"), json.dumps([stage])]
    driver = _start(spawn, driver_cmd, tmp_path / "driver.log")
    wait_until(lambda: list((gan / "checkpoints").glob("ckpt-*.index")), 240, "the first checkpoint")
    trainers = pids_running("cxr_keras.cli.train_gan", str(gan))
    assert len(trainers) == 1
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait(timeout=10)
    wait_until(lambda: not alive(trainers[0]), 5, "the killed pipeline's train_gan to end")  # not 100 steps later

    code, text = _run(spawn, driver_cmd, tmp_path / "rerun.log", 300)
    assert code == 0, text[-3000:]
    assert (tmp_path / "run" / "stages" / "train_pix2pix.json").is_file()
    assert "done at step 120" in (tmp_path / "run" / "logs" / "train_pix2pix.log").read_text()
    assert not pids_running("cxr_keras.cli.train_gan", str(gan))
