#!/usr/bin/env python
"""The whole protocol into one run folder: see cxr_keras/cli/run_pipeline.py (also `cxr-keras run_pipeline`)."""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702
from cxr_keras.cli.run_pipeline import main
if __name__ == "__main__":
    sys.exit(main())
