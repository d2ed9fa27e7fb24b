#!/usr/bin/env python
"""Build RECORDS from an NIH folder: see cxr_keras/cli/make_tfrecords.py (also `cxr-keras make_tfrecords`)."""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702
from cxr_keras.cli.make_tfrecords import main
if __name__ == "__main__":
    sys.exit(main())
