"""The argparse checks every command uses (cxr_keras.cli.checks)."""
import argparse
import os
from types import SimpleNamespace

import pytest

from cxr_keras.cli import checks


def refused(check, text):
    with pytest.raises(argparse.ArgumentTypeError) as exc:
        check(text)
    return str(exc.value)


def test_integer_ranges():
    assert checks.positive_int("3") == 3 and checks.nonnegative_int("0") == 0
    assert "an integer >= 1" in refused(checks.positive_int, "0")
    assert refused(checks.positive_int, "two") == "must be an integer >= 1, got 'two'"
    assert checks.seed("4294967295") == 2 ** 32 - 1
    assert "0..4294967295" in refused(checks.seed, "-1") and "0..4294967295" in refused(checks.seed, str(2 ** 32))
    assert checks.port("8000") == 8000 and "1..65535" in refused(checks.port, "0")


def test_the_image_size_is_bounded_with_its_reason():
    assert checks.image_size("32") == 32 and checks.image_size("2048") == 2048
    for bad in ("0", "-5", "31", "2049", "100000", "2.5"):
        text = refused(checks.image_size, bad)
        assert text.startswith("must be an integer in 32..2048 (") and "memory" in text and bad in text


def test_number_ranges():
    assert checks.fraction("0") == 0.0 and checks.fraction("1") == 1.0
    assert "[0.0, 1.0]" in refused(checks.fraction, "1.01")
    for bad in ("0", "1", "nan", "inf"):
        assert "(0.0, 1.0)" in refused(checks.open_fraction, bad)
    assert checks.positive_float("1e-4") == 1e-4 and "> 0.0" in refused(checks.positive_float, "0")
    half = checks.float_range(0.0, 0.5, hi_open=True)
    assert half("0.25") == 0.25 and "[0.0, 0.5)" in refused(half, "0.5")


def test_int_lists():
    assert checks.int_list(0)("5000, 10000,15000") == (5000, 10000, 15000)
    assert checks.int_list(0)("") == ()
    assert "comma-separated integers >= 0" in refused(checks.int_list(0), "10,-5")


def test_output_folders(tmp_path, monkeypatch):
    assert checks.output_dir(str(tmp_path)) == str(tmp_path)
    assert checks.output_dir(str(tmp_path / "new" / "deeper")) == str(tmp_path / "new" / "deeper")
    assert not (tmp_path / "new").exists()  # checked, not created
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert refused(checks.output_dir, str(a_file)) == f"{a_file} is a file, not a folder"
    assert refused(checks.output_dir, str(a_file / "sub")) == (
        f"{a_file / 'sub'} cannot be created: {a_file} is a file, not a folder")
    assert "empty" in refused(checks.output_dir, "")

    monkeypatch.setattr(os, "access", lambda path, mode: False)  # a folder we may not write to
    text = refused(checks.output_dir, str(tmp_path / "x"))
    assert text == f"cannot write to {tmp_path / 'x'}: {tmp_path} is not writable"
    monkeypatch.undo()
    monkeypatch.setattr(os, "statvfs", lambda path: SimpleNamespace(f_flag=os.ST_RDONLY))  # a read-only mount
    assert "read-only file system" in refused(checks.output_dir, str(tmp_path / "x"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder")
def test_a_folder_without_write_permission(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        assert "is not writable" in refused(checks.output_dir, str(locked / "out"))
    finally:
        locked.chmod(0o700)
