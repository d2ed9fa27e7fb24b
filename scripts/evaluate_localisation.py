#!/usr/bin/env python
"""Correct-location accuracy and Table 2: see cxr_keras/cli/evaluate_localisation.py (also `cxr-keras evaluate_localisation`)."""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702
from cxr_keras.cli.evaluate_localisation import main
if __name__ == "__main__":
    sys.exit(main())
