#!/usr/bin/env python
"""Train one detection protocol through the TF OD API: see cxr_keras/cli/train_detector.py (also `cxr-keras train_detector`)."""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702
from cxr_keras.cli.train_detector import main
if __name__ == "__main__":
    sys.exit(main())
