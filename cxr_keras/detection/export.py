"""Export a trained detector as a SavedModel with the OD API's own ``exporter_main_v2``.

The exporter runs in a child process through our launcher (``od_compat``), writes into a
temporary folder beside the destination and is renamed into place only when it succeeded.
The SavedModel takes ``uint8 [1, H, W, 3]`` images and returns ``detection_boxes / _classes /
_scores`` and ``num_detections`` (see ``inference.SavedModelDetector``).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional, Union

from cxr_keras import procs
from cxr_keras.detection import od_compat

PathLike = Union[str, os.PathLike]


class ExportError(RuntimeError):
    """exporter_main_v2 failed; the message carries the end of its output."""


def export_command(pipeline_config: PathLike, checkpoint_dir: PathLike, output_dir: PathLike):
    return [sys.executable, "-m", "cxr_keras.detection.od_compat", "exporter_main_v2",
            "--input_type=image_tensor", f"--pipeline_config_path={pipeline_config}",
            f"--trained_checkpoint_dir={checkpoint_dir}", f"--output_directory={output_dir}"]


def export_saved_model(pipeline_config: PathLike, checkpoint_dir: PathLike, out_dir: PathLike,
                       overwrite: bool = False, timeout: Optional[float] = None) -> Path:
    """Export the newest checkpoint of ``checkpoint_dir`` to ``out_dir`` (``out_dir/saved_model``).

    ``checkpoint_dir`` is the training folder (``RUN/model``): the exporter restores the
    checkpoint named in its ``checkpoint`` file.
    """
    pipeline_config = Path(pipeline_config).resolve()
    checkpoint_dir = Path(checkpoint_dir).resolve()
    out_dir = Path(out_dir).resolve()
    if not pipeline_config.is_file():
        raise FileNotFoundError(f"{pipeline_config}: pipeline config does not exist")
    if not (checkpoint_dir / "checkpoint").is_file():
        raise FileNotFoundError(f"{checkpoint_dir}: no 'checkpoint' file (not an OD API training "
                                f"folder, or training never saved)")
    if out_dir.exists():
        if not overwrite:
            raise FileExistsError(f"{out_dir}: already exists (pass overwrite=True / --overwrite)")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        proc = procs.run(export_command(pipeline_config, checkpoint_dir, tmp),
                         env=od_compat.child_env(), timeout=timeout,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if proc.returncode != 0 or not (tmp / "saved_model" / "saved_model.pb").is_file():
            tail = "\n".join(proc.stdout.decode(errors="replace").splitlines()[-25:])
            raise ExportError(f"exporter_main_v2 failed for {checkpoint_dir} "
                              f"(exit {proc.returncode}):\n{tail}")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
