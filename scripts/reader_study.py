#!/usr/bin/env python
"""The blinded real/fake reader study (Table 1): see cxr_keras/cli/reader_study.py (also `cxr-keras reader_study`)."""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702
from cxr_keras.cli.reader_study import main
if __name__ == "__main__":
    sys.exit(main())
