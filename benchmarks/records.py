#!/usr/bin/env python
"""Records-building throughput from 1024² PNGs, next to the bare decode+resize rate of the same files.

The ratio shows how close the writer gets to its bound (decoding 1024² PNGs dominates).
Usage: python benchmarks/records.py [--images 96] [--workers 2] [--keep DIR]
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

import argparse
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--images", type=int, default=96, help="annotated phantom images to build from")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--keep", help="reuse / keep the phantom folder here")
    a = p.parse_args()

    from cxr_keras.config import DataConfig, RecordsConfig
    from cxr_keras.data import nih
    from cxr_keras.data.images import load_resized
    from cxr_keras.data.nih_folder import BBOX_FILE, write_nih_folder
    from cxr_keras.data.phantoms import PhantomRenderer
    from cxr_keras.records.build import build_records

    work = pathlib.Path(a.keep or tempfile.mkdtemp(prefix="cxr_bench_"))
    data = work / "nih"
    if not (data / BBOX_FILE).is_file():
        print(f"rendering {a.images} phantom images into {data} ...", flush=True)
        write_nih_folder(data, PhantomRenderer(), limit=a.images, healthy=a.images // 4, workers=a.workers,
                         progress=False)
    paths = [str(p) for p in nih.find_images(data).values()]
    n = len(paths)
    print(f"{n} PNGs, 1024x1024 8-bit, {sum(os.path.getsize(p) for p in paths) / n / 1e6:.2f} MB each; "
          f"{os.cpu_count()} CPUs, {a.workers} workers")

    t = time.perf_counter()
    for path in paths:
        load_resized((path, 256))
    serial = n / (time.perf_counter() - t)

    t = time.perf_counter()
    with ThreadPoolExecutor(a.workers) as pool:  # OpenCV releases the GIL
        list(pool.map(load_resized, [(path, 256) for path in paths]))
    bound = n / (time.perf_counter() - t)

    out = work / "records"
    t = time.perf_counter()
    info = build_records(data, out, DataConfig(healthy=a.images // 4), RecordsConfig(256, workers=a.workers),
                         progress=False)
    built = n / (time.perf_counter() - t)
    shutil.rmtree(out, ignore_errors=True)

    print(f"{'bare decode+resize, 1 process':40s} {serial:8.1f} images/s")
    print(f"{'bare decode+resize, ' + str(a.workers) + ' threads':40s} {bound:8.1f} images/s  (the bound)")
    print(f"{'make_tfrecords (all records + manifest)':40s} {built:8.1f} images/s  "
          f"({info['counts']['annotations']} pairs, {info['counts']['healthy']['train']} healthy)")
    print(f"ratio writer / bound: {built / bound:.2f}")
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
