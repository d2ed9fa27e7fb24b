"""Train a GAN of the registry (pix2pix, pix2pix_n, stargan) on RECORDS into a run folder.

Checkpoints (last few kept), --resume, TensorBoard scalars and image grids, history.csv, samples/*.png.
Ctrl-C saves a checkpoint; a NaN loss stops with the last good checkpoint kept.
"""
import argparse
import dataclasses
import sys

from cxr_keras.cli import checks
from cxr_keras.config import PRECISIONS, PRESETS, STRATEGIES, preset, replace
from cxr_keras.gan import checkpoints, distribute, registry, runs, training
from cxr_keras.paths import RunPaths

# Flags that are not config fields of their own even when a config has a field of that name.
NOT_OVERRIDES = {"steps"}  # --steps is train()'s own argument: it also extends a resumed run


def config_fields() -> set:
    """Every field of a registered model's config: a flag of that name (--batch-size ↔ batch_size) sets it."""
    return {f.name for spec in registry.MODELS.values() for f in dataclasses.fields(spec.config_class)}


def config_overrides(a: argparse.Namespace) -> dict:
    """The config fields the command line sets: the given flags named like a field."""
    fields = config_fields() - NOT_OVERRIDES
    return {k: v for k, v in vars(a).items() if k in fields and v is not None}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", choices=sorted(registry.MODELS), help="required for a new run")
    p.add_argument("--records", required=True, help="folder written by scripts/make_tfrecords.py")
    p.add_argument("--out", required=True, type=checks.output_dir, help="run folder (RUN_DIR)")
    p.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    p.add_argument("--steps", type=checks.positive_int,
                   help="total steps (also extends a resumed run); overrides the config's epochs")
    p.add_argument("--epochs", type=checks.positive_float,
                   help="Pix2Pix(-N): length in epochs over the annotated training pairs (Pix2Pix-N's epoch "
                        "also covers its healthy images; see cxr_keras/gan/schedule.py)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--seed", type=checks.seed, default=0)
    p.add_argument("--batch-size", type=checks.positive_int)
    p.add_argument("--image-size", type=checks.image_size)
    p.add_argument("--gen-filters", type=checks.positive_int)
    p.add_argument("--disc-filters", type=checks.positive_int)
    p.add_argument("--num-downs", type=checks.nonnegative_int,
                   help="U-Net depth (default log2 of the image size, 8 at 256)")
    p.add_argument("--lambda-l1", type=checks.nonnegative_float)
    p.add_argument("--learning-rate", type=checks.positive_float)
    p.add_argument("--log-every", type=checks.positive_int)
    p.add_argument("--image-every", type=checks.positive_int)
    p.add_argument("--checkpoint-every", type=checks.positive_int)
    p.add_argument("--keep-checkpoints", type=checks.positive_int)
    p.add_argument("--jit-compile", action=argparse.BooleanOptionalAction, default=None, help="XLA train step")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="rotation / reflection / crop of the pairs (default on)")
    p.add_argument("--n-critic", type=checks.positive_int, help="StarGAN: critic steps per generator step (default 5)")
    p.add_argument("--res-blocks", type=checks.nonnegative_int,
                   help="StarGAN: residual blocks of the generator (default 6)")
    p.add_argument("--disc-layers", type=checks.positive_int, help="StarGAN: stride-2 layers of the critic (default 6)")
    p.add_argument("--mixed-precision", action="store_true", help="bfloat16 on CPU, float16 on GPU")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="auto (default): bfloat16 on CPUs with native bf16 (AVX512_BF16 / AMX), float16 with loss "
                        "scaling on GPUs (StarGAN: float32), else float32; a resumed run keeps its own")
    p.add_argument("--strategy", choices=STRATEGIES, default="auto",
                   help="auto: every GPU when there are several, else one device; mirrored: every GPU (or "
                        "logical CPU); multi_worker: the cluster of TF_CONFIG (docs/scaling.md)")
    p.add_argument("--cpu-devices", type=checks.positive_int,
                   help="split the CPU into N logical devices (checks --strategy mirrored on a CPU)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def new_run_config(p: argparse.ArgumentParser, a: argparse.Namespace, given: dict):
    """The preset's config of ``--model`` with the given flags applied (an error for a foreign flag)."""
    if a.model is None:
        p.error("--model is required for a new run")
    cfg = registry.get(a.model).config_from_preset(preset(a.preset))
    unknown = sorted(set(given) - {f.name for f in dataclasses.fields(cfg)})
    if unknown:
        p.error(f"{a.model} has no option(s) {', '.join(unknown)}")
    return replace(cfg, **given)


def main(argv=None):
    p = parser()
    a = p.parse_args(argv)
    if a.mixed_precision and a.precision:
        p.error("give --precision or --mixed-precision, not both")
    given = config_overrides(a)
    cfg = None
    if a.resume:
        if given:
            print(f"train_gan: --resume uses the run's {RunPaths(a.out).config.name}; "
                  f"ignoring {', '.join(sorted(given))}", file=sys.stderr)
    else:
        cfg = new_run_config(p, a, given)
    try:
        strategy = distribute.make_strategy(a.strategy, a.cpu_devices)  # before any other TensorFlow work
        result = training.train(a.model, a.records, a.out, cfg, steps=a.steps, resume=a.resume, seed=a.seed,
                                preset=a.preset, mixed_precision=a.mixed_precision,
                                precision=None if a.mixed_precision else a.precision or "auto",
                                strategy=strategy, progress=not a.quiet)
    except runs.DivergedError as exc:
        sys.exit(f"train_gan: diverged: {exc}")
    except (runs.TrainingError, checkpoints.CheckpointError, FileNotFoundError, ValueError, ImportError) as exc:
        sys.exit(f"train_gan: {exc}")
    print(f"{result.status} at step {result.step}; checkpoint {result.checkpoint}")
    if result.status == "interrupted":
        sys.exit(130)


if __name__ == "__main__":
    sys.exit(main())
