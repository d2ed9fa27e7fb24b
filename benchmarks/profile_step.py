#!/usr/bin/env python
"""Where a GAN train step spends its time: tf.profiler trace of a benchmarks/gan_step.py variant,
op time per op type summed over the compute threads (so it can exceed the wall time on 2 cores).

    python benchmarks/profile_step.py ours --batch 1
    python benchmarks/profile_step.py tutorial@tf_defaults --top 15
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # noqa: E401,E702

import argparse
import collections
import json
import tempfile

import gan_step  # sets the process's TensorFlow settings (honours --tf-defaults) and the variants

tf = gan_step.tf


def op_times(logdir: str, steps: int) -> collections.Counter:
    """Milliseconds per step per op type from the trace in ``logdir``."""
    from tensorflow.python.profiler.internal import _pywrap_profiler

    planes = sorted(pathlib.Path(logdir).glob("plugins/profile/*/*.xplane.pb"))
    if not planes:
        raise RuntimeError(f"{logdir}: the profiler wrote no trace")
    data, ok = _pywrap_profiler.xspace_to_tools_data([str(planes[-1])], "trace_viewer@", {})
    if not ok:
        raise RuntimeError(f"{planes[-1]}: could not convert the trace")
    events = json.loads(data)["traceEvents"]
    threads = {e["tid"]: e["args"]["name"] for e in events if e.get("name") == "thread_name"}
    totals = collections.Counter()
    for e in events:
        if (e.get("ph") == "X" and "tf_Compute" in threads.get(e.get("tid"), "")
                and not e["name"].startswith("ExecutorState")):
            totals[e["name"]] += e["dur"] / 1000.0 / steps
    return totals


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("variant", help=f"one of {sorted(gan_step.VARIANTS)}")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=2, help="profiled steps (after 2 warm-up steps)")
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--tf-defaults", action="store_true",
                   help="TensorFlow as installed (no oneDNN opt-in), as gan_step.py's @tf_defaults workers")
    a = p.parse_args(argv)
    if a.variant not in gan_step.VARIANTS:
        p.error(f"unknown variant {a.variant!r}; known: {sorted(gan_step.VARIANTS)}")
    step = gan_step.VARIANTS[a.variant](a.image_size, a.batch)
    for _ in range(2):
        step()
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(a.steps):
            step()
        tf.profiler.experimental.stop()
        totals = op_times(logdir, a.steps)
    total = sum(totals.values())
    print(f"{a.variant}, batch {a.batch}, oneDNN {'on' if gan_step.onednn_enabled() else 'off'}: "
          f"{total:.0f} ms of op time per step")
    for name, ms in totals.most_common(a.top):
        print(f"{ms:9.1f} ms {100 * ms / total:5.1f} %  {name}")


if __name__ == "__main__":
    main()
