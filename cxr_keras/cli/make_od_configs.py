"""Write one TF OD API Faster R-CNN pipeline.config per detection protocol (ori, ori_pix2pix, …)."""
import argparse
import sys

from cxr_keras.cli import checks
from cxr_keras.config import PRESETS


def parse_synthetic(values):
    """``["pix2pix=SYN_DIR", ...]`` → {"pix2pix": "SYN_DIR", ...}."""
    out = {}
    for v in values or []:
        name, sep, path = v.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--synthetic expects NAME=SYN_DIR, got {v!r}")
        out[name] = path
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--records", required=True,
                   help="RECORDS folder with det_train.tfrecord, det_test.tfrecord, label_map.pbtxt")
    p.add_argument("--synthetic", nargs="*", default=[], metavar="NAME=SYN_DIR",
                   help="synthetic sets: pix2pix=DIR pix2pix_n=DIR [stargan=DIR] "
                        "(each DIR holds detection.tfrecord)")
    p.add_argument("--out", default="od_configs", type=checks.output_dir, help="output folder (default: od_configs/)")
    p.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    p.add_argument("--protocols", nargs="*", default=None,
                   help="default: the preset's protocols (+ ori_stargan if stargan is given)")
    p.add_argument("--steps", type=checks.positive_int, default=None, help="train_config.num_steps override")
    p.add_argument("--feature-extractor", default=None,
                   help="e.g. faster_rcnn_inception_resnet_v2_keras, faster_rcnn_resnet50_keras")
    p.add_argument("--fine-tune-checkpoint", default=None,
                   help="start from this checkpoint (e.g. the COCO zoo model's checkpoint/ckpt-0)")
    p.add_argument("--fine-tune-checkpoint-type", default=None,
                   choices=("detection", "classification", "full"))
    p.add_argument("--val-fraction", type=checks.float_range(0.0, 1.0, hi_open=True), default=None,
                   help="share of the real training images held out to choose checkpoints "
                        "(default: the preset's; 0: none)")
    p.add_argument("--seed", type=checks.seed, default=0, help="seed of the held-out validation images")
    a = p.parse_args(argv)

    from cxr_keras.config import preset, replace
    from cxr_keras.detection.configs import ConfigInputError, make_od_configs

    try:
        cfg = replace(preset(a.preset).detection, feature_extractor=a.feature_extractor,
                      fine_tune_checkpoint=a.fine_tune_checkpoint,
                      fine_tune_checkpoint_type=a.fine_tune_checkpoint_type, val_fraction=a.val_fraction)
        written = make_od_configs(a.records, a.out, cfg, synthetic=parse_synthetic(a.synthetic),
                                  protocols=a.protocols, preset=a.preset, steps=a.steps, seed=a.seed)
    except (ConfigInputError, ValueError) as exc:
        sys.exit(f"make_od_configs: {exc}")
    for protocol, path in written.items():
        print(f"{protocol}: {path}")


if __name__ == "__main__":
    sys.exit(main())
