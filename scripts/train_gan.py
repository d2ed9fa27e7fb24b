#!/usr/bin/env python
"""Train a GAN of the registry on RECORDS into a run folder: see cxr_keras/cli/train_gan.py (also `cxr-keras train-gan`)."""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702
from cxr_keras.cli.train_gan import main
if __name__ == "__main__":
    sys.exit(main())
