"""Correct-location accuracy (Table 2): one checkpoint per window for each run, or one detector.

    --runs RUN...                         Table 2 (markdown + CSVs) and accuracy-vs-step plot, beside
                                          the prior-box baseline, with bootstrap intervals, paired
                                          differences from ori and COCO mAP@0.5 (docs/detection.md)
    --saved-model DIR --records REC       score an exported detector on any detection record
    --config P --checkpoint CKPT --records REC   score one training checkpoint
"""
from cxr_keras.detection import od_compat  # noqa: F401  (before TensorFlow / protobuf)

import argparse  # noqa: E402
import csv  # noqa: E402
import io  # noqa: E402
import pathlib  # noqa: E402
import sys  # noqa: E402

from cxr_keras.cli import checks  # noqa: E402
from cxr_keras.detection.selection import SELECTIONS  # noqa: E402


def fraction_list(text):
    """``0.1`` or ``0.1,0.3,0.5``: IoU thresholds in [0, 1]."""
    try:
        values = tuple(checks.fraction(s.strip()) for s in text.split(",") if s.strip())
    except argparse.ArgumentTypeError:
        values = ()
    if not values:
        raise argparse.ArgumentTypeError(f"must be comma-separated numbers in [0, 1], got {text!r}")
    return values


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", default=None, help="run folders of scripts/train_detector.py")
    p.add_argument("--saved-model", default=None, help="exported detector (folder with saved_model/)")
    p.add_argument("--config", default=None, help="pipeline.config (with --checkpoint)")
    p.add_argument("--checkpoint", default=None, help="training checkpoint prefix or folder")
    p.add_argument("--records", default=None, help="detection record to score on (det_test.tfrecord)")
    p.add_argument("--iou", type=fraction_list, default=(0.1,),
                   help="IoU threshold(s), strict, e.g. 0.1,0.3,0.5 (paper: 0.1); checkpoints are "
                        "chosen with the first")
    p.add_argument("--steps", type=checks.int_list(0), default=(5000, 10000, 15000), help="window centres")
    p.add_argument("--window", type=checks.nonnegative_int, default=500, help="half width of each window")
    p.add_argument("--mode", choices=("top1", "any"), default="top1",
                   help="top1: highest-scoring detection of the finding per image (default); "
                        "any: every detection of the finding scoring >= --score-threshold")
    p.add_argument("--score-threshold", type=checks.fraction, default=0.5)
    p.add_argument("--select", choices=SELECTIONS, default=None,
                   help="checkpoint per window: val (best total on the held-out validation images; "
                        "the default when every run has them), fixed (the one at s; the default "
                        "otherwise), total (best total on the TEST set) or per_finding (the paper's "
                        "best per row on the TEST set); the last two are labelled optimistic")
    p.add_argument("--draws", type=checks.positive_int, default=2000,
                   help="bootstrap resamples of the test images (intervals)")
    p.add_argument("--bootstrap-seed", type=checks.seed, default=0)
    p.add_argument("--no-coco", action="store_true", help="skip COCO mAP@0.5 (the OD API's evaluator)")
    p.add_argument("--out", default="runs/localisation", type=checks.output_dir, help="folder for table2.md/.csv, plot")
    p.add_argument("--save-detections", default=None, metavar="NPZ",
                   help="single-detector modes: also keep the per-image detections (.npz)")
    a = p.parse_args(argv)

    from cxr_keras.detection import localisation as loc
    from cxr_keras.detection.configs import ConfigInputError
    from cxr_keras.detection.inference import RecordError
    from cxr_keras.io_utils import atomic_write_text

    out = pathlib.Path(a.out)
    iou = a.iou[0]
    try:
        if a.runs:
            from cxr_keras.detection.table2 import Settings, evaluate_runs

            written = evaluate_runs(a.runs, out, Settings(
                a.steps, a.window, a.iou, a.mode, a.score_threshold, a.select, a.draws,
                a.bootstrap_seed, coco=not a.no_coco))
            print(written["markdown"].read_text())
            print("written: " + ", ".join(str(path) for path in written.values()))
            return
        if not a.records or not (a.saved_model or (a.config and a.checkpoint)):
            p.error("give --runs RUN..., or --records with --saved-model or --config + --checkpoint")
        from cxr_keras.detection.inference import detect_checkpoint, detect_saved_model

        if a.saved_model:
            results, what = detect_saved_model(a.saved_model, a.records), a.saved_model
        else:
            results, what = detect_checkpoint(a.config, a.checkpoint, a.records), a.checkpoint
        if a.save_detections:
            from cxr_keras.detection.inference import save_results

            save_results(a.save_detections, results, source=str(what), records=a.records)
        counts = loc.localisation_counts(results, iou_threshold=iou, mode=a.mode,
                                         score_threshold=a.score_threshold)
        text = loc.counts_markdown(counts, f"Correct-location accuracy of {what} on {a.records} "
                                           f"(IoU > {iou}, detections: {a.mode})")
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["finding", "correct", "total", "accuracy"])
        for row, (c, t) in counts.items():
            w.writerow([row, c, t, round(c / t, 4) if t else ""])
        atomic_write_text(out / "localisation.md", text)
        atomic_write_text(out / "localisation.csv", buf.getvalue())
        print(text)
        print(f"written: {out / 'localisation.md'}, {out / 'localisation.csv'}")
    except (ConfigInputError, RecordError, FileNotFoundError, ValueError) as exc:
        sys.exit(f"evaluate_localisation: {exc}")


if __name__ == "__main__":
    sys.exit(main())
