"""Which checkpoint of a run stands for a window [s − w, s + w] in Table 2.

* ``val`` (default when the runs were scored on held-out training images): one checkpoint per
  column, the best total accuracy on the validation split; the test set is not looked at.
* ``fixed``: one checkpoint per column, the one at s (the scored step nearest to s in the window).
* ``total``: one checkpoint per column, the best total on the TEST set (optimistic).
* ``per_finding``: the paper's choice, each row its best checkpoint on the TEST set (optimistic;
  the Total may come from another checkpoint than its rows).

Ties go to the earliest step. Every choice returns {row: step} (one step for all rows except
``per_finding``), or None when the window holds no scored checkpoint.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from cxr_keras.detection.localisation import TOTAL, Counts, accuracy, best_in_window

SELECTIONS = ("val", "fixed", "total", "per_finding")
PEEKS = ("total", "per_finding")  # choices made on the test set
DESCRIPTION = {
    "val": "one checkpoint per column: the best total accuracy on the held-out validation images",
    "fixed": "one checkpoint per column: the one at s (the scored step nearest to s)",
    "total": "one checkpoint per column: the best total on the TEST set (optimistic: chosen on "
             "the data it is scored on)",
    "per_finding": "each row its own best checkpoint on the TEST set (the paper's choice; "
                   "optimistic, and the Total may come from another checkpoint than its rows)",
}


def steps_in_window(steps, centre: int, window: int) -> List[int]:
    """The steps of ``steps`` in [centre − window, centre + window], in order."""
    return sorted(s for s in steps if centre - window <= s <= centre + window)


def _best(steps: Sequence[int], counts: Mapping[int, Counts]) -> int:
    values = [accuracy(counts[s]) for s in steps]
    return steps[int(np.argmax([-1.0 if np.isnan(v) else v for v in values]))]  # first maximum


def choose(test: Mapping[int, Counts], centre: int, window: int, how: str,
           val: Optional[Mapping[int, Counts]] = None) -> Optional[Dict[str, int]]:
    """{row: step} chosen in [centre − window, centre + window] (see the module docstring).

    ``test`` and ``val`` map scored steps to counts at the primary IoU; only steps scored on the
    test set can be chosen.
    """
    if how not in SELECTIONS:
        raise ValueError(f"unknown checkpoint selection {how!r}; choose from {SELECTIONS}")
    steps = steps_in_window(test, centre, window)
    if not steps:
        return None
    rows = list(test[steps[0]])
    if how in PEEKS:
        return best_in_window(test, centre, window, how).steps
    if how == "fixed":
        step = min(steps, key=lambda s: (abs(s - centre), s))
    else:
        scored = [s for s in steps if val and s in val]
        if not scored:
            raise ValueError(f"no checkpoint in [{centre - window}, {centre + window}] was scored on "
                             f"validation images (train with a val split, or use --select fixed)")
        step = _best(scored, val)
    return {row: step for row in rows}


def column_step(picked: Mapping[str, int]) -> int:
    """The checkpoint of a column (its Total's)."""
    return picked[TOTAL]
