"""Write an NIH-layout folder of synthetic chest radiographs (2D phantoms or CT projections).

The metadata are the real NIH rows of a chosen subset; the pictures are rendered, with each
finding drawn inside its real box. Example: make_phantoms.py --out data/phantoms --limit 60 --healthy 20
"""
import argparse
import json
import sys

from cxr_keras.cli import checks


def make_renderer(kind: str, seed: int):
    """The renderer for ``--kind``; a clear exit if the CT renderer is not available."""
    if kind == "phantom":
        from cxr_keras.data.phantoms import PhantomRenderer

        return PhantomRenderer(seed=seed)
    try:
        from cxr_keras.data.ct import CTRenderer
    except ImportError as exc:
        raise SystemExit(f"--kind ct: cannot import cxr_keras.data.ct.CTRenderer ({exc})")
    try:
        return CTRenderer(seed=seed)
    except (OSError, RuntimeError, ValueError) as exc:  # e.g. assets.AssetError: CT files unavailable
        raise SystemExit(f"--kind ct: cannot set up the CT renderer: {exc}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=checks.output_dir, help="output folder (NIH layout); new or empty")
    ap.add_argument("--kind", choices=("phantom", "ct"), default="phantom", help="renderer (default phantom)")
    ap.add_argument("--limit", type=checks.nonnegative_int, default=None,
                    help="number of annotated images (default: all 880 with a box of the six findings)")
    ap.add_argument("--healthy", type=checks.nonnegative_int, default=0,
                    help="number of 'No Finding' images (default 0)")
    ap.add_argument("--seed", type=checks.seed, default=0, help="choice of images and rendering (default 0)")
    ap.add_argument("--workers", type=checks.positive_int, default=2, help="worker processes (default 2)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)  # the checks types refuse negative counts and seeds up front

    from cxr_keras.data.nih_folder import write_nih_folder

    renderer = make_renderer(args.kind, args.seed)
    try:
        summary = write_nih_folder(args.out, renderer, limit=args.limit, healthy=args.healthy,
                                   seed=args.seed, workers=max(1, args.workers), progress=not args.quiet)
    except (OSError, ValueError, RuntimeError) as exc:  # bad --out, bad renderer output, CT asset errors
        raise SystemExit(f"make_phantoms: {exc}")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
