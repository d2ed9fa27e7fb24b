"""Train one detection protocol through the TF OD API, scoring in-window checkpoints as they appear."""
from cxr_keras.detection import od_compat  # noqa: F401  (before TensorFlow / protobuf)

import argparse  # noqa: E402
import sys  # noqa: E402

from cxr_keras.cli import checks  # noqa: E402
from cxr_keras.config import PRESETS, STRATEGIES  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", required=True, help="pipeline.config (from scripts/make_od_configs.py)")
    p.add_argument("--out", required=True, type=checks.output_dir,
                   help="run folder (checkpoints, scores.csv, detections/)")
    p.add_argument("--protocol", default=None, help="protocol name (default: the config's file name)")
    p.add_argument("--preset", default=None, choices=sorted(PRESETS),
                   help="source of the defaults below (default: the preset named in the config's "
                        "header, written by make_od_configs.py, else paper)")
    p.add_argument("--steps", type=checks.positive_int, default=None, help="default: train_config.num_steps")
    p.add_argument("--checkpoint-every", type=checks.positive_int, default=None)
    p.add_argument("--eval-steps", type=checks.int_list(0), default=None, help="e.g. 5000,10000,15000")
    p.add_argument("--window", type=checks.nonnegative_int, default=None, help="score checkpoints in [s-w, s+w]")
    p.add_argument("--iou", type=checks.fraction, default=None, help="IoU threshold (paper: 0.1)")
    p.add_argument("--mode", choices=("top1", "any"), default=None,
                   help="detections considered per finding (default top1)")
    p.add_argument("--score-threshold", type=checks.fraction, default=None, help="for --mode any")
    p.add_argument("--test-record", default=None, help="default: the config's eval input")
    p.add_argument("--max-checkpoints", type=checks.int_range(2, why="the newest plus one being scored"), default=3,
                   help="pause training while this many checkpoints are on disk (each ~0.5 GB)")
    p.add_argument("--export", action="store_true", help="export the final checkpoint to OUT/export")
    p.add_argument("--seed", type=checks.seed, default=None,
                   help="training seed (weights, sampling, input order); default: unseeded")
    p.add_argument("--strategy", choices=STRATEGIES, default="auto",
                   help="the OD API trainer's tf.distribute strategy: auto (every GPU when there are several), "
                        "mirrored, multi_worker (TF_CONFIG's cluster; only the chief scores checkpoints)")
    p.add_argument("--prior-box", action="store_true",
                   help="no training: write the prior-box baseline (each finding's mean training box "
                        "on every test image) as a run folder that evaluate_localisation --runs reads")
    a = p.parse_args(argv)

    from cxr_keras.config import preset, replace
    from cxr_keras.detection.configs import ConfigInputError, config_preset
    from cxr_keras.detection.export import ExportError, export_saved_model
    from cxr_keras.detection.inference import RecordError
    from cxr_keras.detection.train import DetectorTrainingError, train_protocol
    from cxr_keras.gan.checkpoints import CheckpointError
    from cxr_keras.paths import DetectorRunPaths

    name = a.preset or config_preset(a.config)
    cfg = replace(preset(name if name in PRESETS else "paper").detection, checkpoint_every=a.checkpoint_every,
                  eval_steps=a.eval_steps, window=a.window, iou=a.iou,
                  localisation_mode=a.mode, score_threshold=a.score_threshold)
    try:
        if a.prior_box:
            from cxr_keras.detection.baseline import write_baseline_run

            print(f"prior-box baseline: {write_baseline_run(a.config, a.out).root}")
            return
        result = train_protocol(a.config, a.out, cfg, protocol=a.protocol, steps=a.steps,
                                test_record=a.test_record, max_checkpoints=a.max_checkpoints,
                                seed=a.seed, strategy=a.strategy)
        print(f"{result.protocol}: trained to step {result.final_step} in {result.seconds:.0f} s; "
              f"scored steps {result.scored_steps}; final checkpoint {result.final_checkpoint}")
        if a.export:
            run = DetectorRunPaths(a.out)
            out = export_saved_model(run.config, run.model, run.export, overwrite=True)
            print(f"exported SavedModel: {out}")
    except (ConfigInputError, RecordError, DetectorTrainingError, ExportError, CheckpointError,
            FileNotFoundError, ValueError) as exc:  # ValueError: gan.distribute.StrategyError too
        sys.exit(f"train_detector: {exc}")


if __name__ == "__main__":
    sys.exit(main())
