"""Study images do not give their source away by their encoding (issue 12): every served image, real or
generated, smooth or noisy, is the same PNG byte for byte apart from its pixels, and is served alike."""
from __future__ import annotations

import struct
import zlib
from collections import defaultdict

import cv2
import numpy as np

from cxr_keras.config import FINDINGS, StudyConfig
from cxr_keras.study.app import create_app
from cxr_keras.study.build import build_study
from cxr_keras.study.db import add_reader
from cxr_keras.study.layout import load_key, load_study, paths


def chunks(data: bytes):
    """(type, length) of every PNG chunk after the signature, plus the IHDR fields."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    out, i, ihdr = [], 8, None
    while i < len(data):
        (n,), kind = struct.unpack(">I", data[i:i + 4]), data[i + 4:i + 8]
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", data[i + 8:i + 8 + n])
        out.append((kind, n))
        i += 12 + n
    return out, ihdr


def test_every_study_image_is_encoded_identically_whatever_its_source(tmp_path, write_folder):
    counts = {f: 3 for f in FINDINGS}
    real = write_folder(tmp_path / "real", None, counts, seed=1, style="smooth", prefix="r")  # compresses well
    noisy = write_folder(tmp_path / "noisy", "stargan", counts, seed=2, style="noise", prefix="n")
    grain = tmp_path / "grain"  # white noise: what compresses worst, as StarGAN's early output
    write_folder(grain, "pix2pix", counts, seed=3, prefix="g")
    rng = np.random.default_rng(0)
    for png in (grain / "images").glob("*.png"):
        cv2.imwrite(str(png), rng.integers(0, 256, (64, 64), dtype=np.uint8))
    study = tmp_path / "study"
    build_study(real, {"pix2pix": grain, "stargan": noisy}, study, StudyConfig(per_finding=3, image_size=56))

    key, order = load_key(study), load_study(study)["order"]
    sizes, layouts = defaultdict(set), set()
    for image_id in order:
        data = paths(study).image(image_id).read_bytes()
        sizes[key[image_id]["source"]].add(len(data))
        layout, ihdr = chunks(data)
        layouts.add((tuple(layout), ihdr))
        assert ihdr == (56, 56, 8, 0, 0, 0, 0)  # 56×56, 8-bit, gray, no interlace
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        assert img.shape == (56, 56) and img.dtype == np.uint8
    assert set(sizes) == {"real", "pix2pix", "stargan"}
    # one byte count for all (the compressed PNGs of the old build differed by source), one chunk layout
    assert len(set.union(*sizes.values())) == 1, dict(sizes)
    assert len(layouts) == 1 and {k for k, _ in next(iter(layouts))[0]} == {b"IHDR", b"IDAT", b"IEND"}
    # stored, not compressed: the zlib stream is as long as the raw scanlines (+ block headers)
    data = paths(study).image(order[0]).read_bytes()
    idat = b"".join(data[i + 8:i + 8 + n] for i, n in _offsets(data, b"IDAT"))
    assert len(zlib.decompress(idat)) == 56 * (56 + 1) and len(idat) > 56 * 57


def _offsets(data: bytes, kind: bytes):
    i = 8
    while i < len(data):
        (n,) = struct.unpack(">I", data[i:i + 4])
        if data[i + 4:i + 8] == kind:
            yield i, n
        i += 12 + n


def test_images_of_every_source_are_served_with_the_same_headers(study):
    key, order = load_key(study), load_study(study)["order"]
    reader = add_reader(paths(study).db, "Alice")
    client = create_app(study).test_client()
    seen = {}
    for image_id in order:
        resp = client.get(f"/r/{reader.token}/image/{image_id}")
        assert resp.status_code == 200
        headers = tuple(sorted((k, v) for k, v in resp.headers.items()))
        seen.setdefault(headers, set()).add(key[image_id]["source"])
    assert len(seen) == 1 and next(iter(seen.values())) == {"real", "pix2pix", "stargan"}, seen
    assert not any(k in dict(next(iter(seen))) for k in ("ETag", "Last-Modified"))
