#!/usr/bin/env python
"""Painted-region L1 / PSNR / SSIM of a Pix2Pix run: see cxr_keras/cli/evaluate_gan.py (also `cxr-keras evaluate-gan`)."""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702
from cxr_keras.cli.evaluate_gan import main
if __name__ == "__main__":
    sys.exit(main())
