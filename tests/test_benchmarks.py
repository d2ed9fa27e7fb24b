"""benchmarks/gan_step.py: in-process and child-process (TensorFlow defaults) variants in one table."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tf_default_onednn(env) -> bool:
    code = "from tensorflow.python.util import _pywrap_util_port as p; print(int(p.IsMklEnabled()))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip().endswith("1")


def test_gan_step_times_a_tf_defaults_worker_beside_the_package_settings():
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gan_step.py"), "--batches", "1",
                          "--variants", "tutorial", "ours@tf_defaults", "--baseline", "tutorial",
                          "--steps", "1", "--rounds", "1", "--warmup", "0"], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = {line.split()[2]: line.split() for line in out.stdout.splitlines()
            if line.split()[:2] == ["256", "1"]}
    assert set(rows) == {"tutorial", "ours@tf_defaults"}, out.stdout
    # importing cxr_keras turned oneDNN on in the parent; the worker kept TensorFlow's own default
    # although the "ours" variant imports cxr_keras inside it
    assert rows["tutorial"][3] == "on"
    assert rows["ours@tf_defaults"][3] == ("on" if _tf_default_onednn(env) else "off")
    assert float(rows["tutorial"][4]) > 0 and float(rows["ours@tf_defaults"][4]) > 0
    assert rows["tutorial"][5] == "1.00x"


def test_gan_step_rejects_an_unknown_variant():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gan_step.py"), "--variants", "nope@tf_defaults"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "unknown variant" in out.stderr


def test_profile_step_breaks_a_step_down_by_op_type():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "profile_step.py"), "stargan",
                          "--image-size", "64", "--steps", "1", "--top", "50"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    head, *rows = out.stdout.strip().splitlines()
    assert head.startswith("stargan, batch 1, oneDNN on:")
    total = float(head.split(":")[1].split()[0])
    ops = {r.split()[-1]: float(r.split()[0]) for r in rows}
    assert any("Conv2D" in name for name in ops), ops  # the convolutions are in the breakdown
    assert 0 < sum(ops.values()) <= total + 1
