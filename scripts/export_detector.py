#!/usr/bin/env python
"""Export a detector checkpoint as a SavedModel: see cxr_keras/cli/export_detector.py (also `cxr-keras export_detector`)."""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702
from cxr_keras.cli.export_detector import main
if __name__ == "__main__":
    sys.exit(main())
