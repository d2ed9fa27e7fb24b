#!/usr/bin/env python
"""TF OD API pipeline configs, one per protocol: see cxr_keras/cli/make_od_configs.py (also `cxr-keras make_od_configs`)."""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702
from cxr_keras.cli.make_od_configs import main
if __name__ == "__main__":
    sys.exit(main())
