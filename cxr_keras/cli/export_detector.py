"""Export the newest checkpoint of a detector run as a SavedModel (the OD API's exporter_main_v2)."""
import argparse
import sys

from cxr_keras.cli import checks


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--run", default=None, help="run folder of scripts/train_detector.py "
                   "(uses RUN/pipeline.config and RUN/model; default output RUN/export)")
    p.add_argument("--config", default=None, help="pipeline.config (instead of --run)")
    p.add_argument("--checkpoint-dir", default=None, help="training folder (instead of --run)")
    p.add_argument("--out", default=None, type=checks.output_dir, help="output folder (holds saved_model/)")
    p.add_argument("--overwrite", action="store_true")
    a = p.parse_args(argv)

    from cxr_keras.detection.export import ExportError, export_saved_model
    from cxr_keras.paths import DetectorRunPaths

    if a.run:
        run = DetectorRunPaths(a.run)
        config, ckpt_dir, out = run.config, run.model, run.export
    elif a.config and a.checkpoint_dir and a.out:
        config, ckpt_dir, out = a.config, a.checkpoint_dir, a.out
    else:
        p.error("give --run RUN, or --config, --checkpoint-dir and --out")
    config, ckpt_dir = a.config or config, a.checkpoint_dir or ckpt_dir
    out = a.out or out
    try:
        path = export_saved_model(config, ckpt_dir, out, overwrite=a.overwrite)
    except (ExportError, FileNotFoundError, FileExistsError) as exc:
        sys.exit(f"export_detector: {exc}")
    print(f"SavedModel written to {path}/saved_model")


if __name__ == "__main__":
    sys.exit(main())
