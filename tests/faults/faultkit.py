"""Helpers of the fault-injection tests: tiny pair records and Pix2Pix config, child commands, waiting."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import List

import numpy as np

from cxr_keras.config import Pix2PixConfig
from cxr_keras.paths import RecordsPaths, package_env
from cxr_keras.records.pairs import write_pair_examples

S = 32  # the smallest image size the commands accept: fast models
TINY = dict(image_size=S, gen_filters=4, disc_filters=4, num_downs=3, disc_layers=2, batch_size=2,
            log_every=1, image_every=10_000, checkpoint_every=1, keep_checkpoints=3, augment=False)
TINY_FLAGS = ["--image-size", str(S), "--gen-filters", "4", "--disc-filters", "4", "--num-downs", "3",
              "--disc-layers", "2", "--batch-size", "2", "--log-every", "1", "--image-every", "10000",
              "--keep-checkpoints", "3", "--no-augment", "--quiet"]


def tiny_cfg(**kw) -> Pix2PixConfig:
    return Pix2PixConfig(**{**TINY, **kw})


def write_records(root: Path, size: int = S, n: int = 4) -> Path:
    """RECORDS/ with ``n`` annotated train pairs (2 test) of smooth random ``size``² images."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size

    def img():
        a, b = rng.uniform(-1, 1, 2)
        return np.clip(127.5 + 60 * (a * xx + b * yy) + rng.normal(0, 4, (size, size)), 0, 255).astype(np.uint8)

    k = size / 32
    items = [dict(image=img(), box=(k * (2 + i), k * 4, k * (16 + i), k * 20), label=1 + i % 6,
                  finding="Atelectasis", image_id=f"a{i}.png", ann_id=i) for i in range(n)]
    records = RecordsPaths(root)
    write_pair_examples(records.pairs("train"), items)
    write_pair_examples(records.pairs("test"), items[:2])
    return root


def command(module: str, *args) -> List[str]:
    """``python -m <module> args...`` (a command of the package, or a test driver)."""
    return [sys.executable, "-m", module] + [str(a) for a in args]


def child_env(**extra) -> dict:
    return package_env(dict(os.environ, PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION="python", TF_CPP_MIN_LOG_LEVEL="2",
                            PYTHONUNBUFFERED="1", PYTHONWARNINGS="ignore", **extra))


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def pids_running(*parts: str) -> List[int]:
    """PIDs of the live processes whose command line contains every one of ``parts``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if all(p in cmdline for p in parts) and alive(int(entry)):
            found.append(int(entry))
    return found
