#!/usr/bin/env python
"""Per-finding L1 / PSNR / SSIM of the region a Pix2Pix run paints, against the real images (test split).

Writes RUN/eval_<split>.json and RUN/eval_<split>.md.
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

import argparse


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--run", required=True, help="run folder written by scripts/train_gan.py")
    p.add_argument("--records", required=True, help="folder written by scripts/make_tfrecords.py")
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-dropout", action="store_true", help="deterministic generator (dropout off)")
    p.add_argument("--checkpoint", help="a specific checkpoint (default: the run's latest)")
    p.add_argument("--limit", type=int, help="evaluate only the first N annotations")
    a = p.parse_args(argv)

    from cxr_keras import gan_eval, synthesis, training

    try:
        result = gan_eval.evaluate_run(a.run, a.records, a.split, a.seed, sample=not a.no_dropout,
                                       checkpoint=a.checkpoint, limit=a.limit)
    except (synthesis.SynthesisError, training.TrainingError, FileNotFoundError, ValueError) as exc:
        sys.exit(f"evaluate_gan: {exc}")
    print(gan_eval.markdown_table(result))


if __name__ == "__main__":
    main()
