"""The installed package: console commands, package data, the OD API start-up hook, the script shells.

The install tests build the package from a copy of its sources into a fresh virtual environment that
reuses the pinned site-packages (a .pth line), and run everything from a folder outside the checkout,
so nothing can come from the checkout by accident.
"""
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("setup.py", "cxr_keras_od_startup.py", "cxr_keras")
HOOK_PTH = "cxr_keras_od_startup.pth"
# the commands whose modules this part of the package owns (cxr_keras/cli/<name>.py + scripts/<name>.py)
OWN_COMMANDS = ("make_od_configs", "train_detector", "export_detector", "evaluate_localisation",
                "reader_study", "run_pipeline")


def clean_env(**extra):
    """This environment without anything that points into the checkout or pre-selects protobuf."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "PYTHONSTARTUP")}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return {**env, **extra}


def _run(cmd, cwd, **kw):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=clean_env(), capture_output=True,
                          text=True, **kw)
    return proc


def _ok(cmd, cwd, **kw):
    proc = _run(cmd, cwd, **kw)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _copy_sources(dst: Path) -> Path:
    dst.mkdir()
    for name in SOURCES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, dst / name)
    return dst


def _venv(path: Path) -> Path:
    """A new venv whose site-packages also sees the pinned one (TensorFlow, the OD API, pip...)."""
    _ok([sys.executable, "-m", "venv", "--without-pip", path], cwd=path.parent)
    python = path / "bin" / "python"
    purelib = Path(_ok([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                       cwd=path.parent).stdout.strip())
    (purelib / "_pinned_site_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def _purelib(python: Path, cwd: Path) -> Path:
    return Path(_ok([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                    cwd=cwd).stdout.strip())


def _package_files(root: Path):
    return {p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


@pytest.mark.slow
def test_wheel_install_gives_working_commands_data_and_od_hook(tmp_path):
    src = _copy_sources(tmp_path / "src")
    _ok([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "-w", tmp_path / "wheels", src], cwd=tmp_path)
    wheel = next((tmp_path / "wheels").glob("cxr_keras-*.whl"))
    python = _venv(tmp_path / "venv")
    _ok([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", wheel], cwd=tmp_path)
    bin_dir, away = python.parent, tmp_path / "elsewhere"
    away.mkdir()
    site = _purelib(python, away)

    where = _ok([python, "-c", "import cxr_keras, cxr_keras_od_startup as s; print(cxr_keras.__file__); "
                 "print(s.__file__)"], cwd=away).stdout.split()
    assert all(Path(w).is_relative_to(site) for w in where), where  # not the checkout
    assert (site / HOOK_PTH).is_file()
    # every data file of the package (templates, static, metadata, the OD config template) is installed
    assert _package_files(src / "cxr_keras") <= _package_files(site / "cxr_keras")

    usage = _ok([bin_dir / "cxr-keras", "--help"], cwd=away).stdout
    assert "usage: cxr-keras COMMAND" in usage and "train-detector" in usage
    assert "--records" in _ok([bin_dir / "cxr-keras", "make_od_configs", "--help"], cwd=away).stdout
    assert "--synthetic" in _ok([bin_dir / "cxr-make-od-configs", "--help"], cwd=away).stdout
    assert "--model" in _ok([bin_dir / "cxr-keras", "train_gan", "--help"], cwd=away).stdout

    # the OD API's own entry point, no variable set: the installed hook selects protobuf's Python
    # implementation (absl's --helpfull prints the flags and exits with 1)
    proc = _run([python, "-m", "object_detection.model_main_tf2", "--helpfull"], cwd=away, timeout=600)
    assert "Descriptors cannot be created directly" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 1 and "--pipeline_config_path" in proc.stdout, proc.stderr[-3000:]


def test_editable_install_writes_the_hook_and_commands(tmp_path):
    """``pip install -e .`` (what ``make venv`` runs) also installs the hook and the commands."""
    src = _copy_sources(tmp_path / "src")
    python = _venv(tmp_path / "venv")
    _ok([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "-e", src],
        cwd=tmp_path)
    away = tmp_path / "elsewhere"
    away.mkdir()
    assert (_purelib(python, away) / HOOK_PTH).is_file()
    code = ("import sys, cxr_keras, cxr_keras_od_startup as s; print(cxr_keras.__file__); "
            "print(any(isinstance(f, s.ODImportHook) for f in sys.meta_path))")
    module, active = _ok([python, "-c", code], cwd=away).stdout.split()
    assert Path(module).is_relative_to(src) and active == "True"
    assert "usage: cxr-keras COMMAND" in _ok([python.parent / "cxr-keras", "--help"], cwd=away).stdout


def test_hook_leaves_other_processes_alone(tmp_path):
    """A process that never touches object_detection keeps protobuf's fast implementation."""
    code = ("import cxr_keras_od_startup as s; s.activate(); "
            "from google.protobuf.internal import api_implementation as a; print(a.Type())")
    env = clean_env(PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() != "python"


@pytest.mark.parametrize("name", OWN_COMMANDS)
def test_script_shell_and_module_are_the_same_command(name, tmp_path):
    """``scripts/NAME.py`` is a thin shell over ``python -m cxr_keras.cli.NAME`` (same flags)."""
    env = clean_env(PYTHONPATH=str(REPO))
    shell = subprocess.run([sys.executable, str(REPO / "scripts" / f"{name}.py"), "--help"], cwd=tmp_path,
                           env=env, capture_output=True, text=True)
    module = subprocess.run([sys.executable, "-m", f"cxr_keras.cli.{name}", "--help"], cwd=tmp_path,
                            env=env, capture_output=True, text=True)
    assert shell.returncode == module.returncode == 0, shell.stderr + module.stderr
    assert shell.stdout == module.stdout and "usage:" in shell.stdout
