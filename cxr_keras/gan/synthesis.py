"""Synthesize augmented training images with a trained GAN run: ``synthesize(run_dir, records_dir, out_dir)``.

Loads the run (its config names the model) and hands it to the model's registered synthesis:
Pix2Pix(-N) in ``gan.synthesis_pix2pix`` (fidelity-checked composites), StarGAN in
``gan.synthesis_stargan``. Output: SYN/ (docs/interfaces.md).
"""
from __future__ import annotations

import os
from typing import Dict, Optional

from cxr_keras.gan import registry
from cxr_keras.gan.runs import load_run, read_run_config
from cxr_keras.gan.synthesis_common import SynthesisError, check_out_dir, staged_dir

__all__ = ["SynthesisError", "synthesize"]


def synthesize(run_dir: os.PathLike, records_dir: os.PathLike, out_dir: os.PathLike, *,
               checkpoint: Optional[str] = None, overwrite: bool = False, **options) -> Dict:
    """Write SYN/ from the run in ``run_dir`` (its latest or the given ``checkpoint``); return the manifest.

    ``options`` go to the model's synthesis (count, seed, augment, outputs_per_input, per_finding,
    progress, ...); an existing set in ``out_dir`` is refused unless ``overwrite``.
    """
    spec = registry.get(read_run_config(run_dir)["model"])
    check_out_dir(out_dir, overwrite)
    run = load_run(run_dir, checkpoint)
    with staged_dir(out_dir) as staging:  # the set appears in out_dir whole, or not at all
        return spec.synthesize(run, records_dir, staging, **options)
