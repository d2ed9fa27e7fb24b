"""tf.distribute for the GANs (cxr_keras.gan.distribute): on two replicas — two logical CPU devices
(mirrored) or two local worker processes on 127.0.0.1 (multi_worker) — a few steps of Pix2Pix-N and of
StarGAN (WGAN-GP, n_critic 2) give one device's losses and weights for the same global batch and data
order; only the chief writes; a two-worker run resumes after its chief is killed.

The trainings run in child processes (tests/gan/test_distribute_child.py): a CPU can only be split, and
a multi-worker strategy only created, before TensorFlow starts in a process.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf

from cxr_keras.gan import distribute
from cxr_keras.paths import RunPaths

HERE = Path(__file__).resolve().parent
CHILD = HERE / "test_distribute_child.py"
sys.path.insert(0, str(HERE))
from test_distribute_child import tiny_config, write_records  # noqa: E402

MODELS = {"pix2pix_n": 3, "stargan": 4}  # steps: Pix2Pix-N crosses an epoch; StarGAN steps G twice
TIMEOUT = 240  # seconds for one child (they take 20-70 s on 2 busy cores)


# -- set-up checks ----------------------------------------------------------------------------------
def test_tf_config_is_checked(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(distribute.StrategyError, match="TF_CONFIG is not set"):
        distribute.make_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(distribute.StrategyError, match="TF_CONFIG: not a cluster"):
        distribute.tf_config()
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:2"]},
                                                "task": {"type": "worker", "index": 2}}))
    with pytest.raises(distribute.StrategyError, match="task index 2 is outside the 2 worker"):
        distribute.tf_config()
    with pytest.raises(distribute.StrategyError, match="unknown strategy 'ring'"):
        distribute.make_strategy("ring")


def _fake(task_type, task_id, cluster):
    spec = SimpleNamespace(as_dict=lambda: cluster)
    return SimpleNamespace(cluster_resolver=SimpleNamespace(task_type=task_type, task_id=task_id,
                                                            cluster_spec=lambda: spec))


def test_the_chief_is_the_chief_task_else_worker_0():
    workers = {"worker": ["a:1", "b:2"]}
    assert distribute.is_chief(tf.distribute.get_strategy())  # one process: it writes
    assert distribute.is_chief(_fake("worker", 0, workers))
    assert not distribute.is_chief(_fake("worker", 1, workers))
    with_chief = {"chief": ["c:0"], **workers}
    assert distribute.is_chief(_fake("chief", 0, with_chief))
    assert not distribute.is_chief(_fake("worker", 0, with_chief))


def test_a_process_without_a_strategy_reads_its_role_from_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert distribute.is_chief_process()
    for index, chief in ((0, True), (1, False)):
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:2"]},
                                                    "task": {"type": "worker", "index": index}}))
        assert distribute.is_chief_process() is chief


def test_the_global_batch_must_split_evenly():
    dataset = tf.data.Dataset.from_tensors({"image": tf.zeros([4, 8, 8, 1])}).repeat()
    with pytest.raises(distribute.StrategyError, match="--batch-size 4 is not divisible by the 3 replicas"):
        distribute.distribute_batches(SimpleNamespace(num_replicas_in_sync=3), dataset)


# -- the same training on two replicas ---------------------------------------------------------------
@pytest.fixture(scope="module")
def records(tmp_path_factory):
    root = tmp_path_factory.mktemp("records")
    write_records(root)
    return root


def run_child(args, log: Path, env=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(CHILD), *map(str, args)], stdout=log.open("w"),
                            stderr=subprocess.STDOUT, env=env)


def wait_all(procs, logs, timeout=TIMEOUT) -> None:
    """Wait for every child (killing all of them on failure or timeout, and always before returning)."""
    deadline = time.monotonic() + timeout
    try:
        for p, log in zip(procs, logs):
            rc = p.wait(timeout=max(deadline - time.monotonic(), 1))
            assert rc == 0, f"{log.name} exited with {rc}:\n{log.read_text()[-3000:]}"
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()


def assert_same_training(model: str, ref: Path, got: Path) -> None:
    """Same losses, and every weight within a tenth of an Adam step of one device's. Not closer: the
    replicas sum their gradients in another order, and a (Leaky)ReLU input that rounding moves across 0
    now and then changes the next gradient by a few percent of a step (measured up to 3 % of StarGAN's
    lr in many weights). A replica on the wrong data, draws or loss scale parts the losses (a critic gradient
    not divided by the replica count did) or the weights by far more."""
    a, b = np.load(ref), np.load(got)
    assert int(a["replicas"]) == 1 and int(b["replicas"]) == 2 and int(b["step"]) == MODELS[model]
    np.testing.assert_allclose(b["losses"], a["losses"], rtol=1e-5, atol=1e-5, err_msg="losses per step")
    tol = 0.1 * tiny_config(model, 1).learning_rate
    moved = 0.0
    for i in range(sum(1 for k in a.files if k.startswith("final_"))):
        np.testing.assert_array_equal(b[f"init_{i}"], a[f"init_{i}"])
        np.testing.assert_allclose(b[f"final_{i}"], a[f"final_{i}"], rtol=0, atol=tol, err_msg=f"weight {i}")
        moved = max(moved, float(np.abs(a[f"final_{i}"] - a[f"init_{i}"]).max()))
    assert moved > 5 * tol, f"training moved the weights by at most {moved}"
    # the generator's function: 35x the weights' difference in the measured case above
    np.testing.assert_allclose(b["probe"], a["probe"], atol=40 * tol, err_msg="generator outputs")


@pytest.mark.parametrize("model", sorted(MODELS))
def test_two_logical_devices_train_like_one(model, records, tmp_path):
    log = tmp_path / "child.log"
    args = ["--model", model, "--strategies", "one", "mirrored", "--cpu-devices", 2, "--records", records,
            "--run", tmp_path / "run", "--out", tmp_path / "result", "--steps", MODELS[model]]
    wait_all([run_child(args, log)], [log])
    assert_same_training(model, tmp_path / "result.one.npz", tmp_path / "result.mirrored.npz")
    assert RunPaths(tmp_path / "run.mirrored").history.is_file()


def free_ports(n: int):
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def worker_envs(n: int):
    """TF_CONFIG of ``n`` local workers on free ports (worker 0 is the chief)."""
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(n)]}
    return [{**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}
            for i in range(n)]


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(MODELS))
def test_two_workers_train_like_one(model, records, tmp_path):
    common = ["--model", model, "--records", records, "--run", tmp_path / "run", "--out", tmp_path / "result",
              "--steps", MODELS[model]]
    log = tmp_path / "reference.log"
    wait_all([run_child([*common, "--strategies", "one"], log)], [log])
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    args = [*common, "--strategies", "multi_worker", "--init", tmp_path / "result.one.npz"]
    wait_all([run_child(args, log, env) for log, env in zip(logs, worker_envs(2))], logs)
    assert_same_training(model, tmp_path / "result.one.npz", tmp_path / "result.multi_worker.npz")
    chief, other = np.load(tmp_path / "result.multi_worker.npz"), np.load(tmp_path / "result.multi_worker.worker1.npz")
    for key in chief.files:
        np.testing.assert_array_equal(other[key], chief[key], err_msg=key)
    run = RunPaths(tmp_path / "run.multi_worker")
    assert run.history.is_file() and run.config.is_file()
    assert len(list(run.logs.iterdir())) == 1  # one TensorBoard file: the chief's


# -- a killed chief, then the whole cluster resumed --------------------------------------------------
@contextmanager
def train_gan_workers(argv, logs):
    """Two ``cxr-keras train_gan --strategy multi_worker`` workers; every one killed on the way out."""
    cmd = [sys.executable, "-m", "cxr_keras.cli.train_gan", *map(str, argv), "--strategy", "multi_worker", "--quiet"]
    procs = [subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
             for log, env in zip(logs, worker_envs(2))]
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()


@pytest.mark.slow
def test_a_two_worker_run_resumes_after_its_chief_is_killed(records, tmp_path):
    run = RunPaths(tmp_path / "run")
    steps = 60
    argv = ["--records", records, "--out", run.root, "--steps", steps, "--precision", "float32"]
    new = ["--model", "pix2pix", "--preset", "quick", "--image-size", 32, "--gen-filters", 4, "--disc-filters", 4,
           "--num-downs", 3, "--disc-layers", 2, "--batch-size", 4, "--no-augment", "--log-every", 5,
           "--image-every", 1000, "--checkpoint-every", 5, "--keep-checkpoints", 50]
    logs = [tmp_path / f"first{i}.log" for i in range(2)]
    with train_gan_workers([*argv, *new], logs) as procs:
        deadline = time.monotonic() + TIMEOUT
        while not list(run.checkpoints.glob("ckpt-5.index")):
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), \
                "no first checkpoint:\n" + "\n".join(log.read_text()[-2000:] for log in logs)
            time.sleep(0.05)
        procs[0].send_signal(signal.SIGKILL)  # the chief dies mid-run
        procs[0].wait()
    killed_at = max(int(p.name.split("-")[1].split(".")[0]) for p in run.checkpoints.glob("ckpt-*.index"))
    assert killed_at < steps, "the run ended before the chief was killed"

    logs = [tmp_path / f"resumed{i}.log" for i in range(2)]
    with train_gan_workers([*argv, "--resume"], logs) as procs:
        wait_all(procs, logs)
    chief = logs[0].read_text()
    assert f"done at step {steps}" in chief and f"done at step {steps}" in logs[1].read_text()
    assert "resumed" in chief and (run.checkpoints / f"ckpt-{steps}.index").is_file()
    history = [int(float(line.split(",")[0])) for line in run.history.read_text().splitlines()[1:]]
    assert history == list(range(5, steps + 1, 5))  # each log step once, the chief's only


@pytest.mark.slow
def test_the_benchmark_times_one_device_two_logical_devices_and_two_workers():
    bench = HERE.parents[1] / "benchmarks" / "gan_step.py"
    out = subprocess.run([sys.executable, str(bench), "--strategies", "one", "mirrored", "multi_worker",
                          "--image-size", "32", "--batches", "2", "--steps", "1", "--rounds", "1", "--warmup", "1",
                          "--timeout", str(TIMEOUT)], capture_output=True, text=True, timeout=3 * TIMEOUT)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = {line.split()[2]: line.split() for line in out.stdout.splitlines() if line.split()[:2] == ["32", "2"]}
    assert set(rows) == {"one", "mirrored", "multi_worker"}, out.stdout
    assert [rows[k][3] for k in ("one", "mirrored", "multi_worker")] == ["1", "2", "2"]  # replicas
    assert all(float(r[4]) > 0 for r in rows.values()) and rows["one"][5] == "1.00x"
    assert "bfloat16" in out.stdout.splitlines()[0]  # the machine's bf16 support in the header
