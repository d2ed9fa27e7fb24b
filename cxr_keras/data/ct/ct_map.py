"""Which source CT renders an NIH image: a deterministic, balanced map on the patient id.

Every image of one patient gets the same CT (follow-up images keep their anatomy), and the CTs are
used equally. The patients with a box of the six findings (616 in the shipped BBox list) are
assigned greedily in salted-hash order so that every CT gets the same share of each finding's
boxes: the CT never predicts the finding. Every other patient (the "No Finding" images) goes by a
salted SHA-256 of its id modulo the number of CTs, balanced at their numbers (~25 000 patients).
"""
from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from typing import Dict, Iterable, Mapping, Optional, Sequence, Tuple

SALT = "cxr_keras/ct-map/v1"  # changing it reshuffles every assignment: change only on purpose


def patient_id(image_name: str) -> Optional[int]:
    """The patient of an NIH image name (``<patient:08d>_<follow-up:03d>.png``); None for other names."""
    head = str(image_name).split("_", 1)[0]
    return int(head) if head.isdigit() and "_" in str(image_name) else None


def _hash(key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{SALT}:{key}".encode("utf-8")).digest()[:8], "big")


def balanced_table(boxes: Iterable[Tuple[str, str]], findings: Sequence[str],
                   names: Sequence[str]) -> Dict[int, str]:
    """{patient id: CT} for the patients of ``(image, finding)`` boxes of ``findings``, greedy in
    salted-hash order: each patient goes to the CT whose per-finding box counts it unbalances least
    (ties: fewest patients so far, then ``names`` order). Independent of the boxes' order."""
    wanted = set(findings)
    per_patient: Dict[int, Counter] = defaultdict(Counter)
    for image, finding in boxes:
        pid = patient_id(image)
        if finding in wanted and pid is not None:
            per_patient[pid][finding] += 1
    load = {n: Counter() for n in names}
    patients = Counter()
    table: Dict[int, str] = {}
    for pid in sorted(per_patient, key=lambda p: (_hash(str(p)), p)):
        mine = per_patient[pid]

        def cost(n: str) -> Tuple[int, int, int]:
            return (sum((load[n][f] + k) ** 2 - load[n][f] ** 2 for f, k in mine.items()),
                    patients[n], list(names).index(n))

        best = min(names, key=cost)
        load[best].update(mine)
        patients[best] += 1
        table[pid] = best
    return table


def shipped_table(names: Sequence[str]) -> Dict[int, str]:
    """:func:`balanced_table` of the shipped NIH BBox list and the paper's six findings."""
    from cxr_keras.config import FINDINGS
    from cxr_keras.data import nih

    df = nih.read_bbox_list(nih.metadata_paths(None)[0])
    return balanced_table(zip(df["image"], df["finding"]), FINDINGS, names)


def ct_for_image(image_name: str, names: Sequence[str], table: Optional[Mapping[int, str]] = None) -> str:
    """The CT of the image's patient: from ``table`` if listed, else by the salted hash of the patient
    id (of the whole name for a name that is not an NIH one)."""
    pid = patient_id(image_name)
    if pid is not None and table is not None and pid in table:
        return table[pid]
    return names[_hash(str(pid) if pid is not None else f"name:{image_name}") % len(names)]
