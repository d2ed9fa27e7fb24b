#!/usr/bin/env python
"""Train a GAN of the registry (pix2pix, pix2pix_n, stargan) on RECORDS into a run folder.

Checkpoints (last few kept), --resume, TensorBoard scalars and image grids, history.csv, samples/*.png.
Ctrl-C saves a checkpoint; a NaN loss stops with the last good checkpoint kept.
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

import argparse
import dataclasses

# CLI flag → config field (applied only when the model's config has that field).
OVERRIDES = {"batch_size": "batch_size", "image_size": "image_size", "gen_filters": "gen_filters",
             "disc_filters": "disc_filters", "lambda_l1": "lambda_l1", "learning_rate": "learning_rate",
             "log_every": "log_every", "image_every": "image_every", "checkpoint_every": "checkpoint_every",
             "keep_checkpoints": "keep_checkpoints", "num_downs": "num_downs", "jit_compile": "jit_compile",
             "augment": "augment",
             # StarGAN
             "n_critic": "n_critic", "res_blocks": "res_blocks", "disc_layers": "disc_layers"}


def main(argv=None):
    from cxr_keras.models import registry

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", choices=sorted(registry.MODELS), help="required for a new run")
    p.add_argument("--records", required=True, help="folder written by scripts/make_tfrecords.py")
    p.add_argument("--out", required=True, help="run folder (RUN_DIR)")
    p.add_argument("--preset", default="paper", choices=["paper", "demo", "quick"])
    p.add_argument("--steps", type=int, help="total steps (also extends a resumed run)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--image-size", type=int)
    p.add_argument("--gen-filters", type=int)
    p.add_argument("--disc-filters", type=int)
    p.add_argument("--num-downs", type=int, help="U-Net depth (default log2 of the image size, 8 at 256)")
    p.add_argument("--lambda-l1", type=float)
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--log-every", type=int)
    p.add_argument("--image-every", type=int)
    p.add_argument("--checkpoint-every", type=int)
    p.add_argument("--keep-checkpoints", type=int)
    p.add_argument("--jit-compile", action=argparse.BooleanOptionalAction, default=None, help="XLA train step")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="rotation / reflection / crop of the pairs (default on)")
    p.add_argument("--n-critic", type=int, help="StarGAN: critic steps per generator step (default 5)")
    p.add_argument("--res-blocks", type=int, help="StarGAN: residual blocks of the generator (default 6)")
    p.add_argument("--disc-layers", type=int, help="StarGAN: stride-2 layers of the critic (default 6)")
    p.add_argument("--mixed-precision", action="store_true", help="bfloat16 on CPU, float16 on GPU")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    a = p.parse_args(argv)

    from cxr_keras import training
    from cxr_keras.config import preset, replace

    given = {field: getattr(a, flag) for flag, field in OVERRIDES.items() if getattr(a, flag) is not None}
    cfg = None
    if a.resume:
        if given:
            print(f"train_gan: --resume uses the run's config.json; ignoring {', '.join(sorted(given))}",
                  file=sys.stderr)
    else:
        if a.model is None:
            p.error("--model is required for a new run")
        spec = registry.get(a.model)
        cfg = spec.config_from_preset(preset(a.preset))
        names = {f.name for f in dataclasses.fields(cfg)}
        unknown = sorted(set(given) - names)
        if unknown:
            p.error(f"{a.model} has no option(s) {', '.join(unknown)}")
        cfg = replace(cfg, **given)
    try:
        result = training.train(a.model, a.records, a.out, cfg, steps=a.steps, resume=a.resume, seed=a.seed,
                                preset=a.preset, mixed_precision=a.mixed_precision, progress=not a.quiet)
    except training.DivergedError as exc:
        sys.exit(f"train_gan: diverged: {exc}")
    except (training.TrainingError, FileNotFoundError, ValueError, ImportError) as exc:
        sys.exit(f"train_gan: {exc}")
    print(f"{result.status} at step {result.step}; checkpoint {result.checkpoint}")
    if result.status == "interrupted":
        sys.exit(130)


if __name__ == "__main__":
    main()
