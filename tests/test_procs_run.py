"""procs.run: a child and its grandchildren end when the call times out."""
import subprocess
import sys
import time

import pytest

from cxr_keras import procs

CHILD = ("import subprocess, sys, time\n"
         "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
         "print(p.pid, flush=True)\n"
         "time.sleep(60)\n")


def test_run_returns_output():
    done = procs.run([sys.executable, "-c", "print('hi')"], stdout=subprocess.PIPE, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == b"hi"


def test_run_timeout_ends_the_whole_group(tmp_path):
    out = tmp_path / "out.txt"
    with open(out, "w") as fh, pytest.raises(subprocess.TimeoutExpired):
        procs.run([sys.executable, "-c", CHILD], stdout=fh, timeout=3)
    grandchild = int(out.read_text().split()[0])
    deadline = time.time() + 10
    while procs.alive(grandchild) and time.time() < deadline:
        time.sleep(0.2)
    assert not procs.alive(grandchild)
