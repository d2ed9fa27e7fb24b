"""Verified checkpoints: found from their files, the newest good one restored, none ever overwritten.

A checkpoint ``DIR/ckpt-N`` is its ``.index`` and ``.data-*`` files; TensorFlow's state file
(``DIR/checkpoint``) only lists them, so checkpoints are found from the files (a lost state file
never means "start from step 0"). Before a resume, ``repair`` removes the ``ckpt-N_temp`` folders of
saves that were killed, reads every tensor of the newest checkpoint back (TensorFlow checks sizes and
CRC32C), moves a damaged one into ``DIR/damaged/`` with a warning naming its files, falls back to the
previous one, and rewrites the state file to match. ``CheckpointStore`` (the GAN Trainer's manager)
restores through it and refuses to save over a checkpoint of a higher or equal step; a failed save (a
full disk) leaves the previous checkpoint as it was and raises ``CheckpointError``. The detector runs
(``detection.train``) repair their OD API model folder the same way before their trainer restores it.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import tensorflow as tf

from cxr_keras.io_utils import atomic_write_text

STATE_FILE = "checkpoint"  # TensorFlow's name for the state file of a checkpoint folder
QUARANTINE = "damaged"  # subfolder that receives damaged checkpoints (kept for inspection, never read)
_INDEX = re.compile(r"^ckpt-(\d+)\.index$")
_TEMP = re.compile(r"^ckpt-\d+_temp$")
Log = Callable[[str], None]


class CheckpointError(RuntimeError):
    """Checkpoints cannot be restored or saved safely (explained in the message)."""


def warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr, flush=True)


# -- finding and checking --------------------------------------------------------------------------
def number(prefix: os.PathLike) -> int:
    """N of a ``.../ckpt-N`` prefix (-1 when it is not one)."""
    m = re.search(r"-(\d+)$", str(prefix))
    return int(m.group(1)) if m else -1


def find(directory: os.PathLike) -> List[str]:
    """Every ``ckpt-N`` prefix with an index file in ``directory``, oldest (lowest N) first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), str(directory / f"ckpt-{m.group(1)}"))
             for m in map(_INDEX.match, os.listdir(directory)) if m]
    return [prefix for _, prefix in sorted(found)]


def files_of(prefix: os.PathLike) -> List[Path]:
    """The index and data files of a checkpoint."""
    base = Path(prefix)
    return sorted(p for p in base.parent.glob(base.name + ".*")
                  if p.name == base.name + ".index" or p.name.startswith(base.name + ".data-"))


def _sized(path: Path) -> str:
    try:
        return f"{path.name} ({path.stat().st_size} bytes)"
    except OSError:
        return f"{path.name} (missing)"


def damage(prefix: os.PathLike) -> Optional[str]:
    """None if every tensor of the checkpoint reads back intact, else what is wrong, naming its files."""
    prefix = str(prefix)
    try:
        reader = tf.train.load_checkpoint(prefix)
    except Exception as exc:  # noqa: BLE001 - TensorFlow raises many types for a bad index
        return f"{_sized(Path(prefix + '.index'))}: {_reason(exc)}"
    try:
        for key in reader.get_variable_to_dtype_map():
            reader.get_tensor(key)
    except Exception as exc:  # noqa: BLE001 - e.g. IndexError "Read less bytes than requested"
        data = [p for p in files_of(prefix) if ".data-" in p.name] or [Path(prefix + ".data-00000-of-00001")]
        return f"{', '.join(map(_sized, data))}: {_reason(exc)}"
    return None


def _reason(exc: BaseException) -> str:
    """TensorFlow's message without its op and function names (``...; File too large`` → the cause)."""
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    text = re.sub(r"\{\{function_node [^}]*\}\}|\[Op:\w+\]", "", text)
    return " ".join(text.split("; ")[-1].split())[:300]


def clean_temp(directory: os.PathLike, log: Log = warn) -> List[Path]:
    """Remove the ``ckpt-N_temp`` folders left by saves that were killed; return them."""
    directory = Path(directory)
    stale = [p for p in directory.iterdir() if _TEMP.match(p.name)] if directory.is_dir() else []
    for p in stale:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        log(f"{p}: removed the leftover of a checkpoint save that did not finish")
    return stale


def newest_good(directory: os.PathLike, log: Log = warn) -> Tuple[Optional[str], List[Tuple[str, str]]]:
    """The newest intact checkpoint of ``directory`` (None if there is none) and the damaged newer
    ones as (prefix, reason), each reported through ``log``."""
    damaged = []
    for prefix in reversed(find(directory)):
        reason = damage(prefix)
        if reason is None:
            return prefix, damaged
        log(f"checkpoint {prefix} is damaged: {reason}")
        damaged.append((prefix, reason))
    return None, damaged


# -- repairing a folder before a resume ------------------------------------------------------------
def quarantine(prefix: os.PathLike) -> List[Path]:
    """Move a checkpoint's files into ``DIR/damaged/`` (a numbered suffix if the name is taken)."""
    target_dir = Path(prefix).parent / QUARANTINE
    target_dir.mkdir(exist_ok=True)
    moved = []
    for f in files_of(prefix):
        target, k = target_dir / f.name, 1
        while target.exists():
            target, k = target_dir / f"{f.name}.{k}", k + 1
        os.replace(f, target)
        moved.append(target)
    return moved


def _state_names(directory: Path) -> Optional[List[str]]:
    """The checkpoints the state file lists (latest last) as names, or None without a readable one."""
    try:
        state = tf.train.get_checkpoint_state(str(directory))
    except Exception:  # noqa: BLE001 - a damaged state file counts as a missing one
        return None
    if state is None:
        return None
    names = [Path(p).name for p in state.all_model_checkpoint_paths]
    latest = Path(state.model_checkpoint_path).name
    return [n for n in names if n != latest] + [latest]


def write_state(directory: os.PathLike, prefixes: Sequence[str]) -> None:
    """Rewrite TensorFlow's state file to list ``prefixes`` (oldest first; the last is the latest),
    with relative paths and the index files' times, as ``tf.train.CheckpointManager`` writes it."""
    directory = Path(directory)
    names = [Path(p).name for p in prefixes]
    stamps = [os.path.getmtime(str(p) + ".index") for p in prefixes]
    lines = [f'model_checkpoint_path: "{names[-1]}"']
    lines += [f'all_model_checkpoint_paths: "{n}"' for n in names]
    lines += [f"all_model_checkpoint_timestamps: {t!r}" for t in stamps]
    lines.append(f"last_preserved_timestamp: {min(stamps) - 1.0!r}")
    atomic_write_text(directory / STATE_FILE, "\n".join(lines) + "\n")


def repair(directory: os.PathLike, log: Log = warn) -> Optional[str]:
    """Make ``directory`` safe to resume from; return its newest good checkpoint (None: no checkpoint).

    Removes ``*_temp`` leftovers, moves damaged newer checkpoints to ``damaged/`` and points the state
    file at the newest good one. Raises ``CheckpointError`` when checkpoints exist but none is intact.
    """
    directory = Path(directory)
    clean_temp(directory, log)
    if not find(directory):
        return None
    good, damaged = newest_good(directory, log)
    if good is None:
        listed = "; ".join(f"{Path(p).name}: {why}" for p, why in damaged)
        raise CheckpointError(f"{directory}: every checkpoint is damaged ({listed}); nothing was changed. "
                              f"Move them away to start over from step 0")
    for prefix, _ in damaged:
        moved = quarantine(prefix)
        log(f"moved {', '.join(p.name for p in moved)} to {directory / QUARANTINE}; "
            f"resuming from {Path(good).name} instead")
    kept = find(directory)
    if _state_names(directory) != [Path(p).name for p in kept]:
        write_state(directory, kept)
    return good


# -- the GAN Trainer's checkpoint manager ----------------------------------------------------------
class CheckpointStore:
    """``tf.train.CheckpointManager`` with a verified restore (``repair``) and safe saves.

    ``save(checkpoint_number=N)`` refuses when a checkpoint numbered N or higher exists (it would
    overwrite a later state), and turns a failed write into ``CheckpointError`` after removing its
    partial files, so the previous checkpoint stays the latest.
    """

    def __init__(self, checkpoint: tf.train.Checkpoint, directory: os.PathLike, max_to_keep: int,
                 log: Log = warn):
        self.checkpoint, self.directory, self.max_to_keep, self.log = checkpoint, Path(directory), max_to_keep, log
        self.manager = self._manager()

    def _manager(self) -> tf.train.CheckpointManager:
        return tf.train.CheckpointManager(self.checkpoint, str(self.directory), max_to_keep=self.max_to_keep)

    @property
    def latest_checkpoint(self) -> Optional[str]:
        return self.manager.latest_checkpoint

    def restore(self) -> Optional[str]:
        """Restore the newest good checkpoint (weights, optimizer state, step); its prefix, or None."""
        prefix = repair(self.directory, self.log)
        if prefix is None:
            return None
        self.manager = self._manager()  # re-read the repaired state file
        self.checkpoint.restore(prefix).assert_existing_objects_matched()
        return prefix

    def save(self, checkpoint_number: int) -> str:
        n = int(checkpoint_number)
        later = [p for p in find(self.directory) if number(p) >= n]
        if later:
            raise CheckpointError(f"{self.directory}: not saving step {n} over {Path(later[-1]).name}, a checkpoint "
                                  f"of a higher or equal step (resume with --resume to continue from it)")
        try:
            return self.manager.save(checkpoint_number=n)
        except (tf.errors.OpError, OSError) as exc:
            for f in files_of(self.directory / f"ckpt-{n}"):
                f.unlink(missing_ok=True)
            clean_temp(self.directory, log=lambda text: None)
            previous = self.manager.latest_checkpoint
            raise CheckpointError(
                f"{self.directory}: saving the checkpoint of step {n} failed ({_reason(exc)}); the previous "
                f"checkpoint {Path(previous).name if previous else '(none)'} is intact: free some space, then "
                f"continue with --resume") from None
