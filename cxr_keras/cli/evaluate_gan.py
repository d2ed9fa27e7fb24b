"""Per-finding L1 / PSNR / SSIM of the region a Pix2Pix run paints, against the real images (test split).

Writes RUN/eval_<split>.json and RUN/eval_<split>.md.
"""
import argparse
import sys

from cxr_keras.cli import checks


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--run", required=True, help="run folder written by scripts/train_gan.py")
    p.add_argument("--records", required=True, help="folder written by scripts/make_tfrecords.py")
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--seed", type=checks.seed, default=0)
    p.add_argument("--no-dropout", action="store_true", help="deterministic generator (dropout off)")
    p.add_argument("--checkpoint", help="a specific checkpoint (default: the run's latest)")
    p.add_argument("--limit", type=checks.positive_int, help="evaluate only the first N annotations")
    return p


def main(argv=None):
    a = parser().parse_args(argv)
    from cxr_keras.gan import evaluate  # TensorFlow: after the arguments are checked
    from cxr_keras.gan.runs import TrainingError
    from cxr_keras.gan.synthesis_common import SynthesisError

    try:
        result = evaluate.evaluate_run(a.run, a.records, a.split, a.seed, sample=not a.no_dropout,
                                       checkpoint=a.checkpoint, limit=a.limit)
    except (SynthesisError, TrainingError, FileNotFoundError, ValueError) as exc:
        sys.exit(f"evaluate_gan: {exc}")
    print(evaluate.markdown_table(result))


if __name__ == "__main__":
    sys.exit(main())
