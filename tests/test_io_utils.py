"""Atomic writes: all or nothing, and the finished file gets a normal file's permissions."""
import os

import pytest

from cxr_keras.io_utils import atomic_path, atomic_write_text


def test_atomic_write_replaces_whole_file_with_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        target = tmp_path / "out" / "report.md"
        atomic_write_text(target, "first")
        atomic_write_text(target, "second")
    finally:
        os.umask(old)
    assert target.read_text() == "second"
    assert target.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600: reports can be served / shared
    assert [p.name for p in target.parent.iterdir()] == ["report.md"]  # no temporary left behind


def test_failed_block_keeps_the_previous_file(tmp_path):
    target = tmp_path / "table.csv"
    atomic_write_text(target, "good")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half-writ")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]
