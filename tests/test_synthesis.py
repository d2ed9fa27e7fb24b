"""Synthesis with the fidelity check, and the painted-region evaluation (gan_eval)."""
import json

import cv2
import numpy as np
import pytest
import tensorflow as tf

from cxr_keras import gan_eval, synthesis, training
from cxr_keras.config import Pix2PixConfig
from cxr_keras.models.pix2pix import Pix2Pix, build_model
from cxr_keras.records.detection import read_detection_records
from cxr_keras.records.pairs import write_pair_examples

S = 64
BIG, SMALL = (8.0, 8.0, 40.0, 44.0), (12.0, 20.0, 30.0, 36.0)  # SMALL lies inside BIG, same image


def source_images():
    rng = np.random.default_rng(1)
    return [cv2.GaussianBlur(rng.integers(0, 256, (S, S)).astype(np.uint8), (5, 5), 0) for _ in range(3)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    imgs = source_images()
    items = [
        dict(image=imgs[0], box=BIG, label=3, finding="Effusion", image_id="p0.png", ann_id=10),
        dict(image=imgs[0], box=SMALL, label=1, finding="Atelectasis", image_id="p0.png", ann_id=11),
        dict(image=imgs[1], box=(30.0, 2.0, 60.0, 20.5), label=2, finding="Cardiomegaly", image_id="p1.png",
             ann_id=12),
        dict(image=imgs[2], box=(0.0, 40.0, 16.0, 64.0), label=6, finding="Pneumothorax", image_id="p2.png",
             ann_id=13),
    ]
    records = root / "records"
    write_pair_examples(records / "pairs_train.tfrecord", items)
    write_pair_examples(records / "pairs_test.tfrecord", items[2:])
    run = root / "run"
    cfg = Pix2PixConfig(image_size=S, gen_filters=4, disc_filters=4, num_downs=4, disc_layers=2)
    model = build_model(cfg)
    run.mkdir()
    training.write_run_config(run, {"model": "pix2pix", "cfg": cfg, "seed": 0})
    step = tf.Variable(3, dtype=tf.int64)
    tf.train.CheckpointManager(training.make_checkpoint(model, step), str(run / "checkpoints"), 2).save(3)
    return {"records": records, "run": run, "images": {"p0.png": imgs[0], "p1.png": imgs[1], "p2.png": imgs[2]},
            "items": items, "root": root}


def test_plan_and_kept_boxes():
    jobs = synthesis.plan_jobs(4, 10, 3, seed=0)
    assert sorted(j[0] for j in jobs[:4]) == [0, 1, 2, 3]  # every source once before any second draw
    assert [j[1] for j in jobs] == [0] * 4 + [1] * 4 + [2] * 2
    with pytest.raises(synthesis.SynthesisError, match="outputs per input"):
        synthesis.plan_jobs(4, 13, 3, seed=0)


def test_synthesized_images_keep_their_boxes_exactly(setup):
    out = setup["root"] / "out"
    manifest = synthesis.synthesize(setup["run"], setup["records"], out, count=6, outputs_per_input=2,
                                    progress=False)
    assert manifest["generator"] == "pix2pix" and manifest["count"] == 6 and manifest["step"] == 3
    assert manifest["fidelity"]["checked"] == 6 and manifest["fidelity"]["failed"] == 0
    assert manifest["fidelity"]["max_abs_diff_inside_boxes"] == 0
    items = manifest["items"]
    assert {it["source_image"] for it in items} == {"p0.png", "p1.png", "p2.png"}
    for it in items:
        img = cv2.imread(str(out / it["file"]), cv2.IMREAD_UNCHANGED)
        src = setup["images"][it["source_image"]]
        assert img.shape == (S, S) and img.dtype == np.uint8
        for box in it["boxes"]:
            x0, y0, x1, y1 = synthesis.box_region(box, S)
            assert np.array_equal(img[y0:y1, x0:x1], src[y0:y1, x0:x1])
        assert not np.array_equal(img, src)  # the surroundings were painted
        if it["ann_ids"][0] == 10:  # BIG keeps SMALL, which lies inside it
            assert it["ann_ids"] == [10, 11] and it["labels"] == [3, 1]
        if it["ann_ids"][0] == 11:  # SMALL's mask does not hold BIG
            assert it["ann_ids"] == [11] and it["labels"] == [1]
    det = {d["filename"]: d for d in read_detection_records(out / "detection.tfrecord")}
    assert len(det) == 6
    for it in items:
        d = det[it["file"].split("/")[-1]]
        assert list(d["labels"]) == it["labels"]
        xyxy = np.array(it["boxes"]) / S
        np.testing.assert_allclose(d["boxes"], xyxy[:, [1, 0, 3, 2]], atol=1e-6)
        np.testing.assert_array_equal(d["image"], cv2.imread(str(out / it["file"]), cv2.IMREAD_UNCHANGED))
    with pytest.raises(synthesis.SynthesisError, match="--overwrite"):
        synthesis.synthesize(setup["run"], setup["records"], out, count=1, progress=False)


def test_images_failing_the_fidelity_check_are_not_written(setup, monkeypatch):
    real = Pix2Pix.generate

    def leaky(self, image, mask, sample=True):  # a generator that alters one box pixel
        out = real(self, image, mask, sample)
        bump = tf.cast(tf.logical_and(mask > 0.5, tf.random.uniform(tf.shape(mask)) < 0.02), tf.float32)
        return tf.clip_by_value(out + bump * 0.05, -1.0, 1.0)

    monkeypatch.setattr(Pix2Pix, "generate", leaky)
    out = setup["root"] / "leaky"
    manifest = synthesis.synthesize(setup["run"], setup["records"], out, count=4, progress=False)
    assert manifest["fidelity"]["failed"] == 4 and manifest["count"] == 0
    assert manifest["fidelity"]["max_abs_diff_inside_boxes"] > 0
    assert "differ" in manifest["fidelity"]["failures"][0]["reason"]
    assert not list((out / "images").glob("*.png"))
    assert read_detection_records(out / "detection.tfrecord") == []


def test_augmented_sources_move_their_boxes(setup):
    out = setup["root"] / "aug"
    manifest = synthesis.synthesize(setup["run"], setup["records"], out, count=8, outputs_per_input=2,
                                    augment=True, seed=1, progress=False)
    assert manifest["fidelity"]["failed"] == 0 and manifest["count"] == 8
    originals = {tuple(it["box"]) for it in setup["items"]}
    moved = [tuple(it["boxes"][0]) not in originals for it in manifest["items"]]
    assert any(moved)


def test_stargan_options_are_refused_for_pix2pix(setup, tmp_path):
    with pytest.raises(synthesis.SynthesisError, match="--per-finding"):
        synthesis.synthesize(setup["run"], setup["records"], tmp_path / "o", per_finding=3)


def test_dispatch_names_unknown_models(setup, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model": "nope", "config": {}}))
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        synthesis.synthesize(tmp_path, setup["records"], tmp_path / "o")
    with pytest.raises(training.TrainingError, match="not a training run"):
        synthesis.synthesize(tmp_path / "missing", setup["records"], tmp_path / "o")


def test_ssim_map_matches_tf_image_ssim():
    rng = np.random.default_rng(0)
    a = tf.constant(rng.uniform(0, 1, (2, 48, 48, 1)), tf.float32)
    b = tf.clip_by_value(a + tf.constant(rng.normal(0, 0.1, (2, 48, 48, 1)), tf.float32), 0, 1)
    ours = tf.reduce_mean(gan_eval.ssim_map(a, b), [1, 2, 3]).numpy()
    np.testing.assert_allclose(ours, tf.image.ssim(a, b, 1.0).numpy(), rtol=1e-4)


def test_painted_metrics_score_only_the_painted_region():
    rng = np.random.default_rng(1)
    real = tf.constant(rng.uniform(0, 1, (1, 32, 32, 1)), tf.float32)
    mask = np.zeros((1, 32, 32, 1), np.float32)
    mask[:, 8:24, 8:24] = 1
    wrong_inside = tf.where(mask > 0.5, 1.0 - real, real)  # errors only where nothing is painted
    m = gan_eval.painted_metrics(wrong_inside, real, tf.constant(mask))
    assert m["l1"][0] == 0.0 and m["psnr"][0] > 100
    half = tf.where(mask > 0.5, real, real * 0.5)
    m2 = gan_eval.painted_metrics(half, real, tf.constant(mask))
    expect_l1 = float(np.mean(np.abs(real.numpy() * 0.5)[mask == 0]))
    np.testing.assert_allclose(m2["l1"][0], expect_l1, rtol=1e-5)
    assert m2["ssim"][0] < 1.0


def test_evaluate_run_writes_per_finding_tables(setup):
    result = gan_eval.evaluate_run(setup["run"], setup["records"], "test")
    assert set(result["per_finding"]) == {"Cardiomegaly", "Pneumothorax", "all"}
    assert result["per_finding"]["all"]["n"] == 2
    saved = json.loads((setup["run"] / "eval_test.json").read_text())
    assert saved["per_finding"]["all"]["l1"] == pytest.approx(result["per_finding"]["all"]["l1"])
    assert "| Cardiomegaly | 1 |" in (setup["run"] / "eval_test.md").read_text()
