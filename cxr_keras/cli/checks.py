"""Argument checks shared by every command: argparse ``type=`` callables that refuse bad values up front.

Each check raises ``argparse.ArgumentTypeError``, so argparse prints one line naming the flag and the
allowed range (``argument --image-size: must be an integer in 32..2048 (...), got 0``) and exits with
status 2, before TensorFlow is imported or anything is written. Imports nothing from the package.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Callable, Optional, Tuple

IMAGE_SIZE_RANGE = (32, 2048)
IMAGE_SIZE_WHY = ("the U-Net and the critics need at least 32 px, and 2048, twice the NIH originals, "
                  "is the most before one image alone takes gigabytes of memory")
SEED_MAX = 2 ** 32 - 1  # numpy's and tf.random's seeds are unsigned 32-bit


def _bad(what: str, text: str, why: str = "") -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(f"must be {what}{f' ({why})' if why else ''}, got {text!r}")


def _range_text(lo, hi) -> str:
    if hi is None:
        return f">= {lo}"
    return f"in {lo}..{hi}"


def int_range(lo: int, hi: Optional[int] = None, why: str = "") -> Callable[[str], int]:
    """An integer in ``lo..hi`` (``hi`` None: no upper bound)."""
    what = f"an integer {_range_text(lo, hi)}"

    def check(text: str) -> int:
        try:
            value = int(text)
        except (TypeError, ValueError):
            raise _bad(what, text, why) from None
        if value < lo or (hi is not None and value > hi):
            raise _bad(what, text, why)
        return value

    check.__name__ = "integer"  # argparse names the type in its own messages
    return check


def float_range(lo: float, hi: Optional[float] = None, *, lo_open: bool = False, hi_open: bool = False,
                why: str = "") -> Callable[[str], float]:
    """A finite number in [lo, hi] (``lo_open`` / ``hi_open`` exclude the ends; ``hi`` None: unbounded)."""
    left, right = "(" if lo_open else "[", ")" if hi_open else "]"
    what = f"a number in {left}{lo}, {hi}{right}" if hi is not None else f"a number {'>' if lo_open else '>='} {lo}"

    def check(text: str) -> float:
        try:
            value = float(text)
        except (TypeError, ValueError):
            raise _bad(what, text, why) from None
        too_low = value <= lo if lo_open else value < lo
        too_high = hi is not None and (value >= hi if hi_open else value > hi)
        if value != value or value in (float("inf"), float("-inf")) or too_low or too_high:
            raise _bad(what, text, why)
        return value

    check.__name__ = "number"
    return check


positive_int = int_range(1)
nonnegative_int = int_range(0)
seed = int_range(0, SEED_MAX)
image_size = int_range(*IMAGE_SIZE_RANGE, why=IMAGE_SIZE_WHY)
port = int_range(1, 65535, why="a TCP port")
fraction = float_range(0.0, 1.0)  # a share or threshold in [0, 1]
open_fraction = float_range(0.0, 1.0, lo_open=True, hi_open=True)  # a split share: neither side empty
positive_float = float_range(0.0, lo_open=True)
nonnegative_float = float_range(0.0)


def int_list(lo: int = 0) -> Callable[[str], Tuple[int, ...]]:
    """A comma-separated list of integers >= ``lo`` (``5000,10000,15000``)."""
    one = int_range(lo)

    def check(text: str) -> Tuple[int, ...]:
        try:
            return tuple(one(s.strip()) for s in text.split(",") if s.strip())
        except argparse.ArgumentTypeError:
            raise _bad(f"comma-separated integers >= {lo}", text) from None

    check.__name__ = "list"
    return check


def _unwritable(folder: Path) -> Optional[str]:
    """Why files cannot be created in the existing folder ``folder`` (None when they can)."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"{folder} is not writable"
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    if st.f_flag & getattr(os, "ST_RDONLY", 1):
        return f"{folder} is on a read-only file system"
    return None


def output_dir(text: str) -> str:
    """A folder that exists or can be created, is writable and is not a file; returned unchanged."""
    if not text or not text.strip():
        raise argparse.ArgumentTypeError("must be a folder path, got an empty string")
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file, not a folder")
    probe = path
    while not probe.exists():  # the nearest existing ancestor decides whether it can be created
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise argparse.ArgumentTypeError(f"{text} cannot be created: {probe} is a file, not a folder")
    reason = _unwritable(probe)
    if reason:
        raise argparse.ArgumentTypeError(f"cannot write to {text}: {reason}")
    return text

