"""One synthetic set made by N workers or GPUs: ``synthesize --shard I/N``, then ``synthesize --merge``.

A synthesis plans its whole job list first (from the seed), then generates it in batches. Shard I of N
takes a contiguous block of those batches, and every batch draws its dropout masks from (seed, its first
job) alone, so a batch makes the same images in any shard. The merge checks the parts are the N shards
of one synthesis, then writes the images, the manifest (items in job order, fidelity summed) and the
detection record (the parts' records in order) exactly as the unsharded synthesis writes them.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from cxr_keras.gan.synthesis_common import SynthesisError, check_out_dir, staged_dir, write_manifest
from cxr_keras.io_utils import atomic_write_bytes, read_json
from cxr_keras.paths import SynPaths

Shard = Tuple[int, int]  # (index I, count N), 0 <= I < N
PER_SHARD = ("items", "count", "fidelity", "shard", "domain_agreement")  # manifest keys a merge recomputes


def parse_shard(text: str) -> Shard:
    """``I/N`` → (I, N), 0 <= I < N (argparse ``type=``: a ValueError names the rule)."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
        raise ValueError(f"must be I/N with 0 <= I < N (e.g. 0/4), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def batch_starts(n_jobs: int, batch_size: int, shard: Optional[Shard] = None) -> range:
    """First job of each batch this shard generates: all batches, or shard I's contiguous block."""
    starts = range(0, n_jobs, batch_size)
    if shard is None:
        return starts
    i, n = shard
    return starts[len(starts) * i // n:len(starts) * (i + 1) // n]


def batch_seed(seed: int, start: int) -> int:
    """The random seed of the batch beginning at job ``start``: the same in every shard."""
    return int(np.random.SeedSequence([seed, start]).generate_state(1)[0] >> 1)


def manifest_entry(shard: Optional[Shard], starts: range, n_jobs: int) -> Dict:
    """What a part's manifest adds: which shard it is and which jobs it made (nothing when unsharded)."""
    if shard is None:
        return {}
    first = starts[0] if len(starts) else min(starts.start, n_jobs)
    end = min(starts[-1] + starts.step, n_jobs) if len(starts) else first
    return {"shard": {"index": shard[0], "of": shard[1], "jobs": [first, end], "planned": n_jobs}}


# -- merging -------------------------------------------------------------------------------------------
def read_parts(parts: Sequence[os.PathLike]) -> List[Tuple[SynPaths, Dict]]:
    """The parts' layouts and manifests, in shard order, checked to be all N shards of one synthesis."""
    found = []
    for part in parts:
        syn = SynPaths(part)
        manifest = read_json(syn.manifest, SynthesisError, "not found (write the part with synthesize --shard I/N)")
        if "shard" not in manifest:
            raise SynthesisError(f"{syn.manifest}: not a shard (written without --shard I/N)")
        found.append((syn, manifest))
    found.sort(key=lambda p: p[1]["shard"]["index"])
    n = found[0][1]["shard"]["of"]
    indices = [m["shard"]["index"] for _, m in found]
    if indices != list(range(n)) or any(m["shard"]["of"] != n for _, m in found):
        given = ", ".join(f"{m['shard']['index']}/{m['shard']['of']}" for _, m in found)
        raise SynthesisError(f"--merge: need the {n} shards 0..{n - 1} of one synthesis once each, got {given}")
    base = {k: v for k, v in found[0][1].items() if k not in PER_SHARD}
    for syn, m in found[1:]:
        other = {k: v for k, v in m.items() if k not in PER_SHARD}
        if other != base or m["shard"]["planned"] != found[0][1]["shard"]["planned"]:
            differ = sorted(k for k in set(base) | set(other) if base.get(k) != other.get(k)) or ["planned"]
            raise SynthesisError(f"{syn.manifest}: not a shard of the same synthesis as {found[0][0].manifest} "
                                 f"(differs in {', '.join(differ)})")
    return found


def merged_fidelity(fidelities: Sequence[Dict]) -> Dict:
    """The parts' fidelity summaries as one: counts summed, maxima kept, failure lists joined."""
    out = {}
    for key, first in fidelities[0].items():
        values = [f[key] for f in fidelities]
        if isinstance(first, list):
            out[key] = [x for v in values for x in v]
        elif isinstance(first, (int, float)) and not isinstance(first, bool):
            out[key] = max(values) if key.startswith("max") else sum(values)
        else:
            out[key] = first
    return out


def merged_manifest(found: Sequence[Tuple[SynPaths, Dict]]) -> Dict:
    """The unsharded synthesis' manifest: the first part's with its per-shard entries recomputed."""
    manifest = {k: v for k, v in found[0][1].items() if k != "shard"}  # same key order as unsharded
    items = [item for _, m in found for item in m["items"]]
    manifest["items"] = items
    manifest["count"] = len(items)
    manifest["fidelity"] = merged_fidelity([m["fidelity"] for _, m in found])
    if "domain_agreement" in manifest:  # StarGAN: the critic's classification of the outputs
        agree = sum(it.get("classified_as") == it["finding"] for it in items)
        manifest["domain_agreement"] = agree / len(items) if items else None
    return manifest


def merge(parts: Sequence[os.PathLike], out_dir: os.PathLike, overwrite: bool = False) -> Dict:
    """Write SYN ``out_dir`` from the N shard folders ``parts``: what the unsharded synthesis writes."""
    if not parts:
        raise SynthesisError("--merge: give the shard folders to merge")
    found = read_parts(parts)
    check_out_dir(out_dir, overwrite)
    manifest = merged_manifest(found)
    with staged_dir(out_dir) as staging:
        syn = SynPaths(staging)
        for part, m in found:
            for item in m["items"]:
                target = syn.root / item["file"]
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(part.root / item["file"], target)
        records = [part.detection for part, _ in found if part.detection.is_file()]
        if records:  # TFRecord files are sequences of framed records: joined in order they are one file
            atomic_write_bytes(syn.detection, b"".join(Path(r).read_bytes() for r in records))
        return write_manifest(syn, manifest)
