"""Child processes that die with their parent, signals passed on to them, and one pipeline per run folder.

``start`` runs a command in its own process group (so a signal reaches the child and everything it
started, and a Ctrl-C in the terminal reaches only the parent, which passes it on once). On Linux the
kernel kills the child when its parent dies, even by SIGKILL (``PR_SET_PDEATHSIG``); elsewhere the
child ends itself when the parent is gone (``exit_with_parent``, called by the package's entry points).
``forward_signals`` passes SIGINT / SIGTERM on to the group while a stage runs and stops the group on
the way out. ``RunLock`` keeps a second pipeline out of a run folder (an flock, so a killed holder
leaves a stale lock that is detected and taken over). Imports nothing from the package.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

PARENT_ENV = "CXR_KERAS_PARENT_PID"  # the PID a child started by ``start`` must not outlive
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
STOP_SECONDS = 10.0  # SIGTERM → SIGKILL grace period when a group is stopped


class Interrupted(RuntimeError):
    """SIGINT / SIGTERM arrived while a child ran; it was passed on and the child has ended."""

    def __init__(self, signum: int, what: str):
        self.signum = signum
        super().__init__(f"{what}: stopped by {signal.Signals(signum).name}; run the same command again to continue")


class LockedError(RuntimeError):
    """Another live process holds the run folder's lock."""


# -- children that die with their parent ---------------------------------------------------------------
def _pdeathsig(parent: int):
    """A ``preexec_fn`` (Linux): SIGKILL this child when ``parent`` dies; exit if it is already gone."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # loaded before the fork, called after it
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent died between fork and prctl
            os._exit(1)
    return preexec


def start(cmd: Sequence[str], env: Optional[dict] = None, **popen_kwargs) -> subprocess.Popen:
    """``subprocess.Popen(cmd)`` in a new process group that ends when this process ends (see module doc)."""
    env = dict(os.environ if env is None else env)
    env[PARENT_ENV] = str(os.getpid())
    preexec = _pdeathsig(os.getpid()) if sys.platform.startswith("linux") else None
    return subprocess.Popen(list(cmd), env=env, start_new_session=True, preexec_fn=preexec, **popen_kwargs)


def run(cmd: Sequence[str], env: Optional[dict] = None, timeout: Optional[float] = None,
        **popen_kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run`` through :func:`start`: the child's group is ended on timeout or error."""
    proc = start(cmd, env, **popen_kwargs)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        stop_group(proc)
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def alive(pid: int) -> bool:
    """True while process ``pid`` exists (also one of another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def exit_with_parent(interval: float = 1.0) -> None:
    """In a child of ``start`` where the kernel cannot do it (not Linux): end this process group
    when the parent named in ``CXR_KERAS_PARENT_PID`` is gone. A no-op elsewhere."""
    text = os.environ.get(PARENT_ENV, "")
    if sys.platform.startswith("linux") or not text.isdigit():
        return
    parent = int(text)

    def watch() -> None:
        while alive(parent):
            time.sleep(interval)
        with contextlib.suppress(OSError):
            os.killpg(os.getpgrp(), signal.SIGTERM)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def signal_group(proc: subprocess.Popen, signum: int) -> None:
    """Send ``signum`` to the process group of a child of ``start`` (quietly if it has ended)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signum)


def stop_group(proc: subprocess.Popen, timeout: float = STOP_SECONDS) -> None:
    """End a child of ``start`` and its group: SIGTERM, then SIGKILL after ``timeout`` seconds."""
    if proc.poll() is None:
        signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    signal_group(proc, signal.SIGKILL)  # the child, if still there, and anything left in its group
    proc.wait()


@contextlib.contextmanager
def forward_signals(proc: subprocess.Popen, what: str,
                    signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[List[int]]:
    """While the block runs, pass SIGINT / SIGTERM on to ``proc``'s group; on the way out stop the
    group, and raise ``Interrupted`` if a signal came (after the child has ended)."""
    received: List[int] = []

    def handler(signum, frame):
        received.append(signum)
        signal_group(proc, signum)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield received
    finally:
        try:
            stop_group(proc)
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
    if received:
        raise Interrupted(received[0], what)


# -- one pipeline per run folder -----------------------------------------------------------------------
class RunLock:
    """An exclusive lock on a run folder: ``path`` holds the owner's PID, start time and command.

    The lock is an ``flock`` on that file, which the kernel drops when the owner dies (even by
    SIGKILL): a file left by a dead owner is a stale lock, reported and taken over.
    """

    def __init__(self, path: os.PathLike, log=None):
        self.path = Path(path)
        self.fd: Optional[int] = None
        self.log = log or (lambda text: print(text, file=sys.stderr, flush=True))

    def _open_locked(self) -> int:
        import fcntl

        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.read(fd, 4096).decode(errors="replace").split("\n")
                os.close(fd)
                pid = owner[0] if owner and owner[0] else "?"
                since = f", started {owner[1]}" if len(owner) > 1 else ""
                raise LockedError(f"{self.path.parent}: another pipeline is working in this folder (PID {pid}"
                                  f"{since}); wait for it to finish or stop it, then run again") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:  # its owner released (deleted) it meanwhile: lock the new one
                same = False
            if same:
                return fd
            os.close(fd)

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = self._open_locked()
        stale = os.read(fd, 4096).decode(errors="replace").split("\n")[0]
        if stale:
            self.log(f"warning: {self.path}: stale lock of PID {stale} (that pipeline is gone); taking over")
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n{time.strftime('%Y-%m-%d %H:%M:%S')}\n{' '.join(sys.argv)}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
