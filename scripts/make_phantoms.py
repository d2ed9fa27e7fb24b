#!/usr/bin/env python
"""Render an NIH-layout dataset folder: see cxr_keras/cli/make_phantoms.py (also `cxr-keras make_phantoms`)."""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702
from cxr_keras.cli.make_phantoms import main
if __name__ == "__main__":
    sys.exit(main())
