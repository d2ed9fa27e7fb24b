"""Command-line entry points: one module per command, each with ``main(argv=None)``.

``cxr-keras COMMAND ...`` (installed by setup.py) dispatches to ``cxr_keras.cli.COMMAND``; the
same module runs as ``python -m cxr_keras.cli.COMMAND`` (how the pipeline starts its stages) and
behind the thin ``scripts/COMMAND.py`` shells of a checkout.
"""
from __future__ import annotations

import importlib
import sys
from typing import Optional, Sequence

from cxr_keras.procs import exit_with_parent

# A stage started by the pipeline (procs.start) ends with it also where the kernel cannot do it (not Linux).
exit_with_parent()

# command name (as in scripts/<name>.py) → one-line summary
COMMANDS = {
    "make_phantoms": "write the embedded CT-projected (or 2D phantom) dataset in the NIH layout",
    "make_tfrecords": "pair, healthy and TF OD detection records from an NIH folder",
    "train_gan": "train Pix2Pix, Pix2Pix-N or StarGAN on RECORDS",
    "synthesize": "generate a synthetic set (images, manifest, detection record) from a GAN run",
    "evaluate_gan": "painted-region L1 / PSNR / SSIM of a Pix2Pix run",
    "make_od_configs": "TF OD API pipeline configs, one per protocol",
    "train_detector": "train one detection protocol through the TF OD API",
    "export_detector": "export a detector checkpoint as a SavedModel",
    "evaluate_localisation": "correct-location accuracy and Table 2",
    "reader_study": "blinded reader study: build, add-reader, serve, score, auto-judge",
    "run_pipeline": "the whole protocol, stage by stage, into one run folder",
}


def run(command: str, argv: Optional[Sequence[str]] = None):
    """Import ``cxr_keras.cli.<command>`` and call its ``main``."""
    module = importlib.import_module(f"cxr_keras.cli.{command}")
    return module.main(argv)


def main(argv: Optional[Sequence[str]] = None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        width = max(map(len, COMMANDS))
        lines = [f"  {name.replace('_', '-'):<{width}}  {text}" for name, text in COMMANDS.items()]
        print("usage: cxr-keras COMMAND [ARGS...]\n\ncommands:\n" + "\n".join(lines))
        return 0 if argv else 2
    name = argv[0].replace("-", "_")
    if name not in COMMANDS:
        print(f"cxr-keras: unknown command {argv[0]!r} (see cxr-keras --help)", file=sys.stderr)
        return 2
    sys.argv[0] = f"cxr-keras {argv[0]}"
    return run(name, argv[1:])
