"""Pix2Pix synthesis with the fidelity check (cxr_keras.gan.synthesis, synthesis_pix2pix)."""
import json

import cv2
import numpy as np
import pytest
import tensorflow as tf

from cxr_keras.data.images import box_mask
from cxr_keras.gan import runs, synthesis, synthesis_pix2pix
from cxr_keras.models.pix2pix import Pix2Pix
from cxr_keras.paths import RunPaths, SynPaths
from cxr_keras.records.detection import read_detection_records

S = 64


def test_plan_and_kept_boxes():
    jobs = synthesis_pix2pix.plan_jobs(4, 10, 3, seed=0)
    assert sorted(j[0] for j in jobs[:4]) == [0, 1, 2, 3]  # every source once before any second draw
    assert [j[1] for j in jobs] == [0] * 4 + [1] * 4 + [2] * 2
    with pytest.raises(synthesis.SynthesisError, match="outputs per input"):
        synthesis_pix2pix.plan_jobs(4, 13, 3, seed=0)


def test_synthesized_images_keep_their_boxes_exactly(pix2pix_run):
    out = pix2pix_run["root"] / "out"
    manifest = synthesis.synthesize(pix2pix_run["run"], pix2pix_run["records"], out, count=6, outputs_per_input=2,
                                    progress=False)
    assert manifest["generator"] == "pix2pix" and manifest["count"] == 6 and manifest["step"] == 3
    assert manifest["fidelity"]["checked"] == 6 and manifest["fidelity"]["failed"] == 0
    assert manifest["fidelity"]["max_abs_diff_inside_boxes"] == 0
    items = manifest["items"]
    assert {it["source_image"] for it in items} == {"p0.png", "p1.png", "p2.png"}
    for it in items:
        img = cv2.imread(str(out / it["file"]), cv2.IMREAD_UNCHANGED)
        src = pix2pix_run["images"][it["source_image"]]
        assert img.shape == (S, S) and img.dtype == np.uint8
        for box in it["boxes"]:
            inside = box_mask(box, S) > 0
            assert np.array_equal(img[inside], src[inside])
        assert not np.array_equal(img, src)  # the surroundings were painted
        if it["ann_ids"][0] == 10:  # BIG keeps SMALL, which lies inside it
            assert it["ann_ids"] == [10, 11] and it["labels"] == [3, 1]
        if it["ann_ids"][0] == 11:  # SMALL's mask does not hold BIG
            assert it["ann_ids"] == [11] and it["labels"] == [1]
    det = {d["filename"]: d for d in read_detection_records(SynPaths(out).detection)}
    assert len(det) == 6
    for it in items:
        d = det[it["file"].split("/")[-1]]
        assert list(d["labels"]) == it["labels"]
        xyxy = np.array(it["boxes"]) / S
        np.testing.assert_allclose(d["boxes"], xyxy[:, [1, 0, 3, 2]], atol=1e-6)
        np.testing.assert_array_equal(d["image"], cv2.imread(str(out / it["file"]), cv2.IMREAD_UNCHANGED))
    with pytest.raises(synthesis.SynthesisError, match="--overwrite"):
        synthesis.synthesize(pix2pix_run["run"], pix2pix_run["records"], out, count=1, progress=False)


def test_images_failing_the_fidelity_check_are_not_written(pix2pix_run, monkeypatch):
    real = Pix2Pix.generate

    def leaky(self, image, mask, sample=True):  # a generator that alters one box pixel
        out = real(self, image, mask, sample)
        bump = tf.cast(tf.logical_and(mask > 0.5, tf.random.uniform(tf.shape(mask)) < 0.02), tf.float32)
        return tf.clip_by_value(out + bump * 0.05, -1.0, 1.0)

    monkeypatch.setattr(Pix2Pix, "generate", leaky)
    out = pix2pix_run["root"] / "leaky"
    manifest = synthesis.synthesize(pix2pix_run["run"], pix2pix_run["records"], out, count=4, progress=False)
    assert manifest["fidelity"]["failed"] == 4 and manifest["count"] == 0
    assert manifest["fidelity"]["max_abs_diff_inside_boxes"] > 0
    assert "differ" in manifest["fidelity"]["failures"][0]["reason"]
    assert not list(SynPaths(out).images.glob("*.png"))
    assert read_detection_records(SynPaths(out).detection) == []


def test_augmented_sources_move_their_boxes(pix2pix_run):
    out = pix2pix_run["root"] / "aug"
    manifest = synthesis.synthesize(pix2pix_run["run"], pix2pix_run["records"], out, count=8, outputs_per_input=2,
                                    augment=True, seed=1, progress=False)
    assert manifest["fidelity"]["failed"] == 0 and manifest["count"] == 8
    originals = {tuple(it["box"]) for it in pix2pix_run["items"]}
    moved = [tuple(it["boxes"][0]) not in originals for it in manifest["items"]]
    assert any(moved)


def test_stargan_options_are_refused_for_pix2pix(pix2pix_run, tmp_path):
    with pytest.raises(synthesis.SynthesisError, match="--per-finding"):
        synthesis.synthesize(pix2pix_run["run"], pix2pix_run["records"], tmp_path / "o", per_finding=3)


def test_dispatch_names_unknown_models(pix2pix_run, tmp_path):
    RunPaths(tmp_path).config.write_text(json.dumps({"model": "nope", "config": {}}))
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        synthesis.synthesize(tmp_path, pix2pix_run["records"], tmp_path / "o")
    with pytest.raises(runs.TrainingError, match="not a training run"):
        synthesis.synthesize(tmp_path / "missing", pix2pix_run["records"], tmp_path / "o")
