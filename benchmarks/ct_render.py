"""Time the CT-projected radiograph renderer and optionally write the README contact sheet.

    python benchmarks/ct_render.py [--n 4] [--sheet docs/ct_samples.png] [--tile 192]

Prints the one-off set-up time (fetch/verify + prepare every source CT, cached on disk after the
first run), then per source CT its load time and seconds per image, healthy and with one lesion
of each finding, on one core. The sheet has a row per source CT.
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

import argparse
import time

import cv2
import numpy as np

from cxr_keras.data import ct as ctr
from cxr_keras.data.images import encode_png
from cxr_keras.io_utils import atomic_write_bytes


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4, help="images per case")
    ap.add_argument("--sheet", type=pathlib.Path, help="write the labelled sample grid PNG here")
    ap.add_argument("--tile", type=int, default=192)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)

    t0 = time.perf_counter()
    renderer = ctr.CTRenderer(seed=args.seed)
    print(f"fetch + prepare {len(renderer.sources)} CTs {time.perf_counter() - t0:.2f} s")
    examples = ctr.nih_example_boxes(ctr.LESION_FINDINGS, args.seed)
    cases = [("healthy", [])] + [(f, [examples[f][1]]) for f in ctr.LESION_FINDINGS if f in examples]
    for source in renderer.sources:
        t = time.perf_counter()
        renderer.scene(source)
        print(f"{source}: load {time.perf_counter() - t:.2f} s")
        for name, boxes in cases:
            t = time.perf_counter()
            for i in range(args.n):
                renderer.render_from(source, f"{name}_{i}.png", boxes, np.random.default_rng([args.seed, i]))
            print(f"  {name:13s} {(time.perf_counter() - t) / args.n:.3f} s/image")
    if args.sheet:
        png = encode_png(ctr.sample_sheet(renderer, tile=args.tile, seed=args.seed), compression=9)
        atomic_write_bytes(args.sheet, png)
        print(f"wrote {args.sheet} ({len(png) / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
