"""The GANs' numerics (cxr_keras.gan.precision): which policy ``auto`` picks, bf16 training close to float32,
float16 with loss scaling through FusedAdam, the policy kept by a run, exact composites from a bf16 run."""
import importlib.metadata
import json
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from cxr_keras.config import Pix2PixConfig, StarGANConfig
from cxr_keras.gan import precision, runs, synthesis, training
from cxr_keras.gan.runs import dtype_policy, make_checkpoint
from cxr_keras.models import pix2pix, stargan
from cxr_keras.paths import RunPaths

S = 32
TINY = Pix2PixConfig(image_size=S, gen_filters=8, disc_filters=8, num_downs=3, disc_layers=2, batch_size=4,
                     dropout=0.0, steps=1000)


def fixed_batch(n=4):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:S, 0:S] / S
    img = np.stack([np.clip(0.6 * (a * xx + b * yy) + rng.normal(0, 0.05, (S, S)), -1, 1)
                    for a, b in rng.uniform(-1, 1, (n, 2))])[..., None].astype(np.float32)
    mask = np.zeros_like(img)
    mask[:, 8:20, 10:22] = 1.0
    return {"image": tf.constant(img), "mask": tf.constant(mask)}


def weights(model):
    return model.generator.weights + model.discriminator.weights


def train_steps(policy, n, init=None, cfg=TINY):
    """A Pix2Pix built under ``policy`` (from ``init``'s weights) trained ``n`` steps on one fixed batch."""
    with dtype_policy(policy):
        model = pix2pix.build_model(cfg)
    for v, w in zip(weights(model), init or []):
        v.assign(w)
    step = model.make_train_function()
    it = iter(tf.data.Dataset.from_tensors(fixed_batch()).repeat())
    return model, [{k: float(v) for k, v in step(it).items()} for _ in range(n)]


# -- the choice ----------------------------------------------------------------------------------------
def test_native_bf16_is_read_from_the_cpu_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n")
    assert precision.native_bf16(str(info)) is None
    assert "not native" in precision.bf16_support(str(info))
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni\n")
    assert precision.native_bf16(str(info)) == "avx512_bf16"
    info.write_text("flags\t\t: fpu avx2 amx_tile amx_bf16\n")
    assert precision.native_bf16(str(info)) == "amx_bf16"
    assert precision.native_bf16(str(tmp_path / "missing")) is None


@pytest.mark.parametrize("gpu, bf16, model, policy", [
    (False, "avx512_bf16", "pix2pix", "mixed_bfloat16"),
    (False, "amx_bf16", "stargan", "mixed_bfloat16"),
    (False, None, "pix2pix_n", "float32"),
    (True, None, "pix2pix", "mixed_float16"),
    (True, "avx512_bf16", "stargan", "float32"),  # WGAN-GP is not loss-scaled: no float16
])
def test_auto_picks_the_fastest_policy_of_the_device(monkeypatch, gpu, bf16, model, policy):
    monkeypatch.setattr(precision, "gpu_visible", lambda: gpu)
    monkeypatch.setattr(precision, "native_bf16", lambda cpuinfo=None: bf16)
    assert precision.resolve("auto", model) == policy
    assert precision.resolve("float32", model) == "float32"
    assert precision.resolve("bfloat16", model) == "mixed_bfloat16"


def test_explicit_choices_and_refusals():
    assert precision.resolve("float16", "pix2pix") == "mixed_float16"
    with pytest.raises(ValueError, match="stargan cannot train in float16"):
        precision.resolve("float16", "stargan")
    with pytest.raises(ValueError, match="unknown precision 'half'"):
        precision.resolve("half")
    assert precision.run_policy({"precision": "mixed_bfloat16"}) == "mixed_bfloat16"
    assert precision.run_policy({"mixed_precision": False}) == "float32"  # a run written before --precision
    with dtype_policy("mixed_float16"), pytest.raises(ValueError, match="float32 or mixed_bfloat16"):
        stargan.build_model(StarGANConfig(image_size=16, gen_filters=4, disc_filters=4, res_blocks=1, disc_layers=2))


# -- bf16 against float32 ------------------------------------------------------------------------------
BF16_STEPS = 50
BF16_L1_RTOL = 0.05  # measured: within 1 % of float32 over 60 steps on an AVX512_BF16 EPYC


@pytest.mark.skipif(precision.native_bf16() is None, reason=f"bfloat16 is {precision.bf16_support()}; "
                    "the comparison only means something (and runs in reasonable time) where it is native")
def test_bf16_training_follows_float32():
    """Same initial weights and fixed batch: after BF16_STEPS steps the bf16 run's L1 is within
    BF16_L1_RTOL (relative) of the float32 run's, and both learned (L1 fell by a fifth or more)."""
    init = [v.numpy() for v in weights(train_steps("float32", 0)[0])]
    _, ref = train_steps("float32", BF16_STEPS, init)
    model, got = train_steps("mixed_bfloat16", BF16_STEPS, init)
    assert model.generator.compute_dtype == "bfloat16" and model.generator.weights[0].dtype == tf.float32
    l1_ref, l1 = np.mean([r["l1"] for r in ref[-5:]]), np.mean([g["l1"] for g in got[-5:]])
    assert abs(l1 - l1_ref) <= BF16_L1_RTOL * l1_ref, (l1, l1_ref)
    assert l1 <= 0.8 * got[0]["l1"] and l1_ref <= 0.8 * ref[0]["l1"]
    assert all(np.isfinite(list(g.values())).all() for g in got)


def test_stargan_trains_in_bf16():
    cfg = StarGANConfig(image_size=16, gen_filters=4, disc_filters=4, res_blocks=1, disc_layers=2, n_critic=1)
    with dtype_policy("mixed_bfloat16"):
        model = stargan.build_model(cfg)
    rng = np.random.default_rng(0)
    batch = {"image": tf.constant(rng.uniform(-1, 1, (2, 16, 16, 1)), tf.float32), "label": tf.constant([0, 3])}
    step = model.make_train_function()
    it = iter(tf.data.Dataset.from_tensors(batch).repeat())
    outs = [{k: float(v) for k, v in step(it).items()} for _ in range(2)]
    assert all(np.isfinite(list(o.values())).all() for o in outs) and outs[1]["g_loss"] != 0
    assert model.translate(batch["image"], 2).dtype == tf.float32


# -- float16 with loss scaling: FusedAdam under LossScaleOptimizer -----------------------------------
def test_float16_with_loss_scaling_trains_and_restores(tmp_path):
    model, outs = train_steps("mixed_float16", 8)
    assert isinstance(model.g_optimizer, tf.keras.mixed_precision.LossScaleOptimizer)
    assert type(model.g_optimizer.inner_optimizer).__name__ == "FusedAdam"
    assert all(np.isfinite(list(o.values())).all() for o in outs)
    assert outs[-1]["l1"] < outs[0]["l1"]  # the generator stepped once the loss scale settled
    init = train_steps("mixed_float16", 0)[0]
    assert any(not np.array_equal(a.numpy(), b.numpy())
               for a, b in zip(model.generator.trainable_variables, init.generator.trainable_variables))
    path = make_checkpoint(model, tf.Variable(8, dtype=tf.int64)).save(str(tmp_path / "ckpt"))
    with dtype_policy("mixed_float16"):
        restored = pix2pix.build_model(TINY)
    step = tf.Variable(0, dtype=tf.int64)
    make_checkpoint(restored, step).restore(path).assert_existing_objects_matched()
    assert int(step) == 8 and int(restored.g_optimizer.iterations) == int(model.g_optimizer.iterations)
    assert float(restored.g_optimizer.loss_scale) == float(model.g_optimizer.loss_scale)
    for a, b in zip(weights(model), weights(restored)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


# -- a run keeps its policy; a bf16 run's composites stay exact ----------------------------------------
def test_a_run_records_its_policy_and_synthesizes_exact_composites(records, tmp_path):
    run = tmp_path / "run"
    cfg = Pix2PixConfig(image_size=64, gen_filters=4, disc_filters=4, num_downs=4, disc_layers=2, batch_size=2,
                        steps=2, log_every=1, image_every=100, checkpoint_every=2)
    training.train("pix2pix", records, run, cfg, precision="bfloat16", progress=False)
    info = json.loads(RunPaths(run).config.read_text())
    assert info["precision"] == "mixed_bfloat16" and info["mixed_precision"] is True
    resumed = runs.resolve_run(None, records, run, resume=True, steps=3, precision="float32")
    assert resumed.policy == "mixed_bfloat16"  # the run's own, whatever is asked on resume
    loaded = runs.load_run(run)
    assert loaded.model.generator.compute_dtype == "bfloat16"
    manifest = synthesis.synthesize(run, records, tmp_path / "syn", count=4, outputs_per_input=1, progress=False)
    fidelity = manifest["fidelity"]
    assert fidelity["checked"] == fidelity["passed"] == 4 and fidelity["max_abs_diff_inside_boxes"] == 0


# -- the GPU environment: requirements/lock-gpu.txt ----------------------------------------------------
REQUIREMENTS = Path(__file__).resolve().parents[2] / "requirements"


def pins(path: Path) -> dict:
    """name (normalised, extras dropped) → version of every ``name==version`` line of a requirements file."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line and not line.startswith("-"):
            name, version = line.split("==")
            out[re.sub(r"[-_.]+", "-", name.split("[")[0]).lower()] = version.strip()
    return out


def test_the_gpu_lock_is_the_cpu_lock_plus_tensorflows_own_cuda_pins():
    text = (REQUIREMENTS / "lock-gpu.txt").read_text()
    assert "-r lock.txt" in text.splitlines()
    cpu, gpu = pins(REQUIREMENTS / "lock.txt"), pins(REQUIREMENTS / "lock-gpu.txt")
    assert f"tensorflow[and-cuda]=={cpu['tensorflow']}" in text.splitlines()
    extra = {}
    for req in importlib.metadata.requires("tensorflow"):
        m = re.fullmatch(r"([\w.-]+) \(==([\w.]+)\) ; extra == 'and-cuda'", req)
        if m:
            extra[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    assert extra and {k: v for k, v in gpu.items() if k != "tensorflow"} == extra
    assert not set(extra) & set(cpu)  # nothing of the CPU lock is re-pinned


PIP_TOOLING = {"pip", "setuptools", "wheel", "distribute"}  # `pip freeze` (which wrote lock.txt) never lists them


def registry_reachable(host: str = "pypi.org") -> bool:
    try:
        socket.create_connection((host, 443), timeout=5).close()
        return True
    except OSError:
        return False


@pytest.mark.slow
def test_make_venv_gpu_resolves_against_the_pinned_lock(tmp_path):
    """What ``make venv GPU=1`` installs resolves (pip's resolver, dry run, the package registry) to exactly
    the pinned versions: nothing unpinned is pulled in."""
    if not registry_reachable():
        pytest.skip("the package registry (pypi.org:443) cannot be reached from here: the dry-run resolve needs it")
    report = tmp_path / "report.json"
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                          "--report", str(report), "-r", str(REQUIREMENTS / "lock-gpu.txt")],
                         capture_output=True, text=True, timeout=1500, cwd=REQUIREMENTS)
    assert out.returncode == 0, out.stderr[-3000:]
    resolved = {re.sub(r"[-_.]+", "-", i["metadata"]["name"]).lower(): i["metadata"]["version"]
                for i in json.loads(report.read_text())["install"]}
    locked = {**pins(REQUIREMENTS / "lock.txt"), **pins(REQUIREMENTS / "lock-gpu.txt")}
    unpinned = {k: v for k, v in resolved.items() if locked.get(k) != v and k not in PIP_TOOLING}
    assert unpinned == {}
    assert resolved["nvidia-cudnn-cu12"] == "8.9.4.25" and resolved["tensorflow"] == "2.15.1"


@pytest.mark.parametrize("args, lock, stamp", [((), "requirements/lock.txt", ".venv/.installed"),
                                               (("GPU=1",), "requirements/lock-gpu.txt", ".venv/.installed-gpu"),
                                               (("venv-gpu",), "requirements/lock-gpu.txt", ".venv/.installed-gpu")])
def test_make_venv_installs_the_lock_of_the_device(args, lock, stamp):
    """``make venv GPU=1`` / ``make venv-gpu`` install lock-gpu.txt (its own stamp), plain ``make venv`` lock.txt."""
    if shutil.which("make") is None:
        pytest.skip("no make on this machine")
    target = [] if "venv-gpu" in args else ["venv"]
    out = subprocess.run(["make", "-n", "-B", *target, *args], capture_output=True, text=True, timeout=60,
                         cwd=REQUIREMENTS.parent)
    assert out.returncode == 0, out.stderr
    assert f"pip install --quiet -r {lock}" in out.stdout
    assert f"touch {stamp}" in out.stdout
    assert ("lock-gpu.txt" in out.stdout) == ("gpu" in lock)
