"""cxr_keras: pathology-preserving chest X-ray augmentation (Xing, Ge et al., MICCAI 2019).

Installs the package, the ``cxr-keras`` command (``cxr-keras COMMAND``, plus one ``cxr-COMMAND`` each),
and the start-up hook that lets the TF OD API's own entry points run on TensorFlow 2.15
(``cxr_keras_od_startup.py`` and the one-line ``cxr_keras_od_startup.pth`` in site-packages).
"""
import ast
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.command.develop import develop

HERE = Path(__file__).resolve().parent
STARTUP = "cxr_keras_od_startup"
PTH = f"{STARTUP}.pth"
# site.py runs .pth lines that start with "import" in every interpreter of the environment; this one
# does nothing if the module is gone (e.g. an editable install whose checkout was removed).
PTH_LINE = (f"import sys; exec('try:\\n import {STARTUP}\\nexcept ImportError:\\n pass\\n"
            f"else:\\n {STARTUP}.activate()')\n")


def commands():
    """The command names of ``cxr_keras/cli/__init__.py`` (read, not imported)."""
    tree = ast.parse((HERE / "cxr_keras" / "cli" / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "COMMANDS" for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise RuntimeError("cxr_keras/cli/__init__.py defines no COMMANDS")


class BuildPy(build_py):
    """Also write the .pth at the root of the build tree: wheels and ``pip install .`` put it in site-packages."""

    def run(self):
        super().run()
        target = Path(self.build_lib) / PTH
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(PTH_LINE)

    def get_outputs(self, include_bytecode=1):
        return super().get_outputs(include_bytecode) + [str(Path(self.build_lib) / PTH)]


class Develop(develop):
    """``pip install -e .`` (``make venv``): the .pth goes into site-packages directly. Its first line
    puts the checkout on sys.path, because site reads it before easy-install.pth (which adds it too)."""

    def run(self):
        super().run()
        target = Path(self.install_dir) / PTH
        if self.uninstall:
            target.unlink(missing_ok=True)
        else:
            target.write_text(f"{HERE}\n{PTH_LINE}")


setup(
    name="cxr_keras",
    version="0.1.0",
    description="Pix2Pix chest X-ray augmentation that never distorts the pathology, "
    "with StarGAN baseline, TF Object Detection API protocols and a reader study.",
    packages=find_packages(include=["cxr_keras", "cxr_keras.*"]),
    py_modules=[STARTUP],
    package_data={"cxr_keras.data": ["nih_metadata/*"],
                  "cxr_keras.detection": ["templates/*"],
                  "cxr_keras.study": ["templates/*", "static/*"]},
    entry_points={"console_scripts": ["cxr-keras=cxr_keras.cli:main"] + [
        f"cxr-{name.replace('_', '-')}=cxr_keras.cli.{name}:main" for name in commands()]},
    cmdclass={"build_py": BuildPy, "develop": Develop},
    python_requires=">=3.10,<3.12",
    # The pinned environment lives in requirements/lock.txt (installed by `make venv`).
    install_requires=["tensorflow==2.15.1", "numpy", "pandas", "opencv-python-headless"],
)
