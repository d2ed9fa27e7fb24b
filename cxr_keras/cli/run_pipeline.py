"""Run the whole protocol: dataset → records → GANs → synthesis → detection → Table 2 → reader study → report."""
import argparse
import sys

from cxr_keras.cli import checks
from cxr_keras.config import PRESETS, STRATEGIES


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--nih-root", help="a real NIH ChestX-ray14 folder (default: the embedded CT-projected dataset)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="demo")
    p.add_argument("--out", default="runs/demo", type=checks.output_dir,
                   help="run folder (a killed run continues where it stopped)")
    p.add_argument("--kind", choices=("ct", "phantom"), default="ct",
                   help="embedded dataset: CT-projected radiographs (default) or fast 2D phantoms")
    p.add_argument("--seed", type=checks.seed, default=0)
    p.add_argument("--seeds", type=checks.positive_int, default=None,
                   help="detector training seeds per protocol (Table 2: mean ± spread over seeds); "
                        "default: the preset's")
    p.add_argument("--strategy", choices=STRATEGIES, default="auto",
                   help="tf.distribute strategy of the GAN and detector trainers (docs/scaling.md)")
    p.add_argument("--publish", default=None, type=checks.output_dir, metavar="DIR",
                   help="after the report, copy the published result (Table 2, plot, detections of the "
                        "scored checkpoints, command, versions) into DIR, e.g. docs/results/study")
    p.add_argument("--only", nargs="*", default=(), metavar="STAGE", help="run only these stages")
    p.add_argument("--no-report", action="store_true")
    a = p.parse_args(argv)

    from cxr_keras.pipeline import StageFailed, run_pipeline
    from cxr_keras.procs import Interrupted, LockedError

    try:
        run_pipeline(a.out, a.preset, a.nih_root, a.kind, a.seed, a.only, report=not a.no_report,
                     seeds=a.seeds, publish=a.publish, strategy=a.strategy)
    except Interrupted as exc:
        print(f"run_pipeline: {exc}", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:  # between stages (the report, --publish): files are written atomically
        print("run_pipeline: interrupted; finished stages are kept, rerun the command to continue",
              file=sys.stderr)
        return 130
    except (StageFailed, LockedError, ValueError) as exc:
        sys.exit(f"run_pipeline: {exc}")


if __name__ == "__main__":
    sys.exit(main())
