"""Fixtures for the reader-study tests: tiny SYN-like folders, a built study, a live server, Chromium.

Chromium comes from Debian's ``chromium`` package (``apt-get install -y chromium``), never from a
Playwright download. Without it the browser test skips locally but fails in CI (``CI=true``).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Dict, Optional

import cv2
import numpy as np
import pytest

from cxr_keras.config import FINDINGS, StudyConfig

COMMAND = [sys.executable, "-m", "cxr_keras.cli.reader_study"]  # `cxr-keras reader_study`
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_INSTALL = "apt-get update && apt-get install -y chromium"


def write_folder(root: Path, generator: Optional[str], counts: Dict[str, int], size: int = 64,
                 seed: int = 0, style: str = "smooth", prefix: str = "img") -> Path:
    """A SYN-like folder: images/*.png + manifest.json (``generator`` None for a real folder)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    items = []
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    for finding, n in counts.items():
        for i in range(n):
            if style == "smooth":  # gentle gradients: "real"
                a, b, c = rng.uniform(0.2, 1.0, 3)
                img = 255 * (0.3 + 0.3 * a * xx + 0.3 * b * yy) * (0.8 + 0.2 * c)
            else:  # bright with coarse stripes: an obviously "generated" look at any resolution
                img = 170 + 60 * np.sign(np.sin(2 * np.pi * 8 * xx + rng.uniform(0, 6.28))) * rng.uniform(0.6, 1.0)
            name = f"images/{prefix}_{finding}_{i:03d}.png"
            cv2.imwrite(str(root / name), np.clip(img, 0, 255).astype(np.uint8))
            items.append({"file": name, "finding": finding, "source_image": f"src_{finding}_{i:03d}.png"})
    manifest = {"items": items}
    if generator:
        manifest["generator"] = generator
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture(name="write_folder")
def write_folder_fixture():
    """The ``write_folder`` helper, as a fixture (test modules here are not a package)."""
    return write_folder


@pytest.fixture
def inputs(tmp_path) -> Dict:
    """Real folder (4 per finding), pix2pix (4 per finding), stargan (only 1 Pneumonia)."""
    four = {f: 4 for f in FINDINGS}
    short = dict(four, Pneumonia=1)
    return {
        "real": write_folder(tmp_path / "real", None, four, seed=1, style="smooth", prefix="realimg"),
        "generated": {
            "pix2pix": write_folder(tmp_path / "syn_p2p", "pix2pix", four, seed=2, style="noise", prefix="p2pimg"),
            "stargan": write_folder(tmp_path / "syn_sg", "stargan", short, seed=3, style="noise", prefix="sgimg"),
        },
    }


@pytest.fixture
def study(tmp_path, inputs) -> Path:
    """A built study: per_finding=2 on 64-pixel images (3 sources, stargan short by one)."""
    from cxr_keras.study.build import build_study

    out = tmp_path / "study"
    build_study(inputs["real"], inputs["generated"], out, StudyConfig(per_finding=2, image_size=64))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(study_dir: Path, port: int, log: Path) -> subprocess.Popen:
    """``reader_study.py serve`` as a subprocess (output to ``log``); returns once it answers HTTP."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log, "ab") as out:  # a file, not a pipe: a full pipe would block the server
        proc = subprocess.Popen([*COMMAND, "serve", str(study_dir), "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    proc.log = log
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text()}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).read()
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server did not start within 60 s: {log.read_text()}")


@pytest.fixture
def server_factory(tmp_path):
    """Start ``reader_study.py serve`` subprocesses; all are killed at teardown."""
    procs = []

    def start(study_dir: Path, port: Optional[int] = None):
        port = port or free_port()
        proc = start_server(study_dir, port, tmp_path / f"server_{len(procs)}.log")
        procs.append(proc)
        return proc, port

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def locate_chromium() -> Optional[str]:
    env = os.environ.get("CHROMIUM_PATH")
    if env and Path(env).is_file():
        return env
    for c in CHROMIUM_CANDIDATES:
        if Path(c).is_file():
            return c
    return shutil.which("chromium")


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """System Chromium for Playwright: skip locally when absent, try to install it and fail in CI."""
    path = locate_chromium()
    in_ci = os.environ.get("CI", "").lower() == "true"
    if path is None and in_ci and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["sh", "-c", CHROMIUM_INSTALL], check=False, timeout=900,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        path = locate_chromium()
    if path is None:
        msg = f"system Chromium not found (install it with: {CHROMIUM_INSTALL})"
        if in_ci:
            pytest.fail(msg)
        pytest.skip(msg)
    return path
