"""Start-up hook that lets the TF Object Detection API 2.8 run unchanged on TensorFlow 2.15.

Installed beside ``cxr_keras`` with a one-line ``cxr_keras_od_startup.pth`` that calls ``activate()``
when any interpreter of the environment starts, so the OD API's own entry points
(``python -m object_detection.model_main_tf2 ...``, ``exporter_main_v2``) need no flag or variable.
It acts only in processes that run or import ``object_detection``; everything else is untouched:

1. ``PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python``, set before ``object_detection`` is imported
   (the OD API's old-style ``*_pb2.py`` files are refused by protobuf 4's C implementation:
   ``Descriptors cannot be created directly``). Protobuf reads it once, at its first import.
2. ``case / cond / while_loop / Assert`` put back on ``tensorflow.python.ops.control_flow_ops``
   (tf_slim 1.1.0, the OD API's record decoder, still calls them there; TF >= 2.14 moved them),
   as soon as TensorFlow is loaded and an ``object_detection`` module is imported.
3. ``getsize`` put back on Pillow's font classes (Pillow 10 removed it; the OD API's
   ``visualization_utils`` still calls it when its own evaluation draws image summaries), at the
   same moment as 2.

Standard library only, and it never imports ``cxr_keras`` (whose import changes TensorFlow settings).
``cxr_keras.detection.od_compat`` uses the same functions: this is their one definition.
"""
from __future__ import annotations

import os
import sys

PROTOBUF_VARIABLE = "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"
OD_PACKAGE = "object_detection"
CONTROL_FLOW_OPS = "tensorflow.python.ops.control_flow_ops"
# (old name on control_flow_ops, module that holds it now, attribute there)
ALIASES = (
    ("case", "tensorflow.python.ops.control_flow_case", "case"),
    ("cond", "tensorflow.python.ops.cond", "cond"),
    ("while_loop", "tensorflow.python.ops.while_loop", "while_loop"),
    ("Assert", "tensorflow.python.ops.control_flow_assert", "Assert"),
)


def use_python_protobuf() -> None:
    """Select protobuf's pure-Python implementation (effective only before protobuf's first import)."""
    os.environ[PROTOBUF_VARIABLE] = "python"


def install_aliases() -> None:
    """Set the four ``control_flow_ops`` aliases tf_slim needs (imports TensorFlow; idempotent)."""
    import importlib

    control_flow_ops = importlib.import_module(CONTROL_FLOW_OPS)
    for old, module_name, attr in ALIASES:
        if not hasattr(control_flow_ops, old):
            setattr(control_flow_ops, old, getattr(importlib.import_module(module_name), attr))


def _font_getsize(self, text, *args, **kwargs):
    """Pillow 9's ``getsize``: the bottom-right corner of the text's box drawn at (0, 0)."""
    _, _, right, bottom = self.getbbox(text, *args, **kwargs)
    return right, bottom


def patch_pillow() -> None:
    """Give Pillow >= 10's font classes back the ``getsize`` the OD API calls (idempotent)."""
    from PIL import ImageFont

    for cls in (ImageFont.FreeTypeFont, ImageFont.ImageFont, ImageFont.TransposedFont):
        if not hasattr(cls, "getsize"):
            cls.getsize = _font_getsize


def _is_od_name(name: str) -> bool:
    return name == OD_PACKAGE or name.startswith(OD_PACKAGE + ".")


class ODImportHook:
    """A meta-path finder that finds nothing: it only watches for ``object_detection`` imports.

    The first one sets the protobuf variable; the first one after TensorFlow has loaded installs
    the aliases and removes the hook (so the rest of the process pays nothing).
    """

    def find_spec(self, name, path=None, target=None):
        if _is_od_name(name):
            use_python_protobuf()
            if CONTROL_FLOW_OPS in sys.modules:
                install_aliases()
                patch_pillow()
                self.remove()
        return None

    def remove(self) -> None:
        if self in sys.meta_path:
            sys.meta_path.remove(self)


def _runs_od_api(argv) -> bool:
    """Does the command line run an OD API module (``-m object_detection.X`` or its script file)?"""
    args = list(argv[1:])
    if "-m" in args and args.index("-m") + 1 < len(args):
        return _is_od_name(args[args.index("-m") + 1])
    scripts = [a for a in args if a.endswith(".py")]
    return bool(scripts) and OD_PACKAGE in scripts[0].replace("\\", "/").split("/")


def activate() -> None:
    """What the .pth line runs at start-up: cheap, idempotent, silent."""
    if _runs_od_api(getattr(sys, "orig_argv", sys.argv)):
        use_python_protobuf()
    if not any(isinstance(f, ODImportHook) for f in sys.meta_path):
        sys.meta_path.insert(0, ODImportHook())
