#!/usr/bin/env python
"""Generate a synthetic set (images, detection record, manifest) from a GAN run: see cxr_keras/cli/synthesize.py (also `cxr-keras synthesize`)."""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702
from cxr_keras.cli.synthesize import main
if __name__ == "__main__":
    sys.exit(main())
