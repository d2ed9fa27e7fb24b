"""Run the whole protocol: dataset → records → GANs → synthesis → detection → Table 2 → reader study → report."""
import argparse
import sys

from cxr_keras.cli import checks
from cxr_keras.config import PRESETS


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--nih-root", help="a real NIH ChestX-ray14 folder (default: the embedded CT-projected dataset)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="demo")
    p.add_argument("--out", default="runs/demo", type=checks.output_dir,
                   help="run folder (a killed run continues where it stopped)")
    p.add_argument("--kind", choices=("ct", "phantom"), default="ct",
                   help="embedded dataset: CT-projected radiographs (default) or fast 2D phantoms")
    p.add_argument("--seed", type=checks.seed, default=0)
    p.add_argument("--only", nargs="*", default=(), metavar="STAGE", help="run only these stages")
    p.add_argument("--no-report", action="store_true")
    a = p.parse_args(argv)

    from cxr_keras.pipeline import StageFailed, run_pipeline
    from cxr_keras.procs import Interrupted, LockedError

    try:
        run_pipeline(a.out, a.preset, a.nih_root, a.kind, a.seed, a.only, report=not a.no_report)
    except Interrupted as exc:
        print(f"run_pipeline: {exc}", file=sys.stderr)
        return 128 + exc.signum
    except (StageFailed, LockedError, ValueError) as exc:
        sys.exit(f"run_pipeline: {exc}")


if __name__ == "__main__":
    sys.exit(main())
