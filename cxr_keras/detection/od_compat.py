"""The one place that adapts the TF Object Detection API 2.8.0.post1 to TensorFlow 2.15.1.

Import this module before TensorFlow / protobuf / ``object_detection``. It does two things and
nothing else, and doing them twice is harmless (both are defined once, in the top-level
``cxr_keras_od_startup`` module, which the installed start-up hook also runs for the OD API's own
entry points: ``python -m object_detection.model_main_tf2 ...`` needs no variable set by hand):

1. ``PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python``: the OD API ships old-style generated
   ``*_pb2.py`` files that protobuf 4.x only accepts with the pure-Python implementation
   (otherwise ``TypeError: Descriptors cannot be created directly``). The variable is read when
   protobuf is first imported, so it must be set before anything imports protobuf.
2. Four aliases on ``tensorflow.python.ops.control_flow_ops``: tf_slim 1.1.0 (used by the OD API's
   record decoder) still calls ``control_flow_ops.case / cond / while_loop / Assert``, which
   TF >= 2.14 moved to ``control_flow_case``, ``cond``, ``while_loop`` and ``control_flow_assert``.

Launcher, so the OD API's own entry points run unchanged with the shim in place even where the
start-up hook is not installed (a checkout used without ``pip install``)::

    python -m cxr_keras.detection.od_compat model_main_tf2 --pipeline_config_path=... --model_dir=...
    python -m cxr_keras.detection.od_compat exporter_main_v2 --input_type=image_tensor ...

(a bare name is looked up as ``object_detection.<name>``; a dotted name is used as is).
``child_env()`` is the environment the package's OD API child processes (training, export) get.
"""
from __future__ import annotations

import sys
from typing import Dict

import cxr_keras_od_startup as _startup
from cxr_keras.paths import package_env

_startup.use_python_protobuf()
_installed = False


class ODAPIUnavailable(ImportError):
    """The TF Object Detection API (tf-models-research-object-detection) is not importable."""


def install() -> None:
    """Set the protobuf variable and the tf_slim aliases (idempotent; call before OD imports)."""
    global _installed
    _startup.use_python_protobuf()
    if _installed:
        return
    _startup.install_aliases()
    _startup.patch_pillow()
    _installed = True


def child_env() -> Dict[str, str]:
    """This process's environment for an OD API child process: the protobuf setting above, and
    this cxr_keras importable by ``python -m cxr_keras...`` from any working folder."""
    env = package_env()
    env[_startup.PROTOBUF_VARIABLE] = "python"
    return env


def require_od_api():
    """Install the shim and import ``object_detection``, with a clear error if it is missing."""
    install()
    from google.protobuf.internal import api_implementation

    if api_implementation.Type() != "python":
        raise ODAPIUnavailable(
            f"protobuf was imported with its {api_implementation.Type()!r} implementation before "
            "cxr_keras.detection.od_compat; the OD API's generated protos need the pure-Python one: "
            "import cxr_keras.detection.od_compat first or export "
            "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python")
    try:
        import object_detection  # noqa: F401
        from object_detection import model_lib_v2  # noqa: F401  (imports tf_slim, tf_io, protos)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ODAPIUnavailable(
            "the TF Object Detection API is not importable "
            f"({exc}); install requirements/lock.txt (tf-models-research-object-detection=="
            "2.8.0.post1 with tensorflow==2.15.1, tf-models-official==2.15.0, pillow==11.3.0)"
        ) from exc
    import object_detection

    return object_detection


def run_entry_point(name: str, argv) -> None:
    """Run an OD API entry point (``model_main_tf2``, ``exporter_main_v2``…) as ``__main__``."""
    import runpy

    install()
    module = name if "." in name else f"object_detection.{name}"
    sys.argv = [module] + list(argv)
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        raise SystemExit(0 if argv else 2)
    run_entry_point(argv[0], argv[1:])


if __name__ == "__main__":
    main()
