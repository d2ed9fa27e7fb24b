"""Generate synthetic training images with a trained GAN run: PNGs, a TF OD detection record and a manifest.

Every image is fidelity-checked (the kept boxes equal the source pixel for pixel) before it is written.
"""
import argparse
import sys

from cxr_keras.cli import checks
from cxr_keras.paths import SynPaths


def shard_arg(text: str):
    """``--shard I/N`` → (I, N), or argparse's one-line error."""
    from cxr_keras.gan.shards import parse_shard

    try:
        return parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--run", help="run folder written by scripts/train_gan.py (required unless --merge)")
    p.add_argument("--records", help="folder written by scripts/make_tfrecords.py (required unless --merge)")
    p.add_argument("--out", required=True, type=checks.output_dir, help="output folder (SYN)")
    p.add_argument("--shard", type=shard_arg, metavar="I/N",
                   help="write only part I of N of the set (N workers or GPUs, one part each; then --merge)")
    p.add_argument("--merge", nargs="+", metavar="SYN_PART",
                   help="merge the N parts written with --shard into --out: the set one synthesize writes")
    p.add_argument("--count", type=checks.nonnegative_int, default=None,
                   help="images to generate (Pix2Pix default 688, as the paper; StarGAN: in total)")
    p.add_argument("--outputs-per-input", type=checks.positive_int, default=None,
                   help="dropout draws allowed per source annotation (default 10, as the authors' code)")
    p.add_argument("--per-finding", type=checks.nonnegative_int, default=None,
                   help="StarGAN: images per finding (default 25)")
    p.add_argument("--augment", action="store_true", help="Pix2Pix: also reflect / rotate / crop the sources")
    p.add_argument("--seed", type=checks.seed, default=0)
    p.add_argument("--checkpoint", help="a specific checkpoint (default: the run's latest)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing synthetic set in --out")
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv=None):
    p = parser()
    a = p.parse_args(argv)
    if a.merge and (a.run or a.records or a.shard):
        p.error("--merge takes the parts and --out only (not --run, --records or --shard)")
    if not a.merge and not (a.run and a.records):
        p.error("--run and --records are required (or --merge SYN_PART...)")
    from cxr_keras.gan import synthesis  # TensorFlow: after the arguments are checked
    from cxr_keras.gan.runs import TrainingError
    from cxr_keras.gan.shards import merge

    options = dict(count=a.count, seed=a.seed, augment=a.augment, outputs_per_input=a.outputs_per_input,
                   overwrite=a.overwrite, progress=not a.quiet)
    if a.checkpoint:
        options["checkpoint"] = a.checkpoint
    if a.per_finding is not None:
        options["per_finding"] = a.per_finding
    if a.shard is not None:
        options["shard"] = a.shard
    try:
        if a.merge:
            manifest = merge(a.merge, a.out, overwrite=a.overwrite)
        else:
            manifest = synthesis.synthesize(a.run, a.records, a.out, **options)
    except (synthesis.SynthesisError, TrainingError, FileNotFoundError, ValueError, ImportError) as exc:
        sys.exit(f"synthesize: {exc}")
    fid = manifest.get("fidelity", {})
    print(f"{manifest.get('count', len(manifest.get('items', [])))} images from {manifest.get('generator')} "
          f"in {a.out}; fidelity: {fid.get('passed', '?')}/{fid.get('checked', '?')} passed")
    if fid.get("failed"):
        sys.exit(f"synthesize: {fid['failed']} image(s) failed the fidelity check and were not written "
                 f"(see {SynPaths(a.out).manifest})")


if __name__ == "__main__":
    sys.exit(main())
