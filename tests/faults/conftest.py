"""Fault-injection fixtures: tiny pair records, and commands run as child processes that are always
killed (with everything they started) when the test ends. Helpers: faultkit.py."""
import os
import signal
import subprocess
from typing import List

import pytest

from faultkit import child_env, write_records


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return write_records(tmp_path_factory.mktemp("records"))


@pytest.fixture
def spawn():
    """Start commands in their own process groups; every group is SIGKILLed at teardown."""
    started: List[subprocess.Popen] = []

    def start(cmd, **kw) -> subprocess.Popen:
        kw.setdefault("env", child_env())
        proc = subprocess.Popen(cmd, start_new_session=True, **kw)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait(timeout=30)
