"""The shared GAN training loop: run folder, resume after a crash, NaN stop, Ctrl-C, data pipeline."""
import dataclasses
import json
import os
import signal

import numpy as np
import pytest
import tensorflow as tf

from cxr_keras import training
from cxr_keras.config import Pix2PixConfig, StarGANConfig, preset
from cxr_keras.models import registry
from cxr_keras.models.pix2pix import make_dataset
from cxr_keras.records.pairs import write_pair_examples

S = 64


def write_tiny_records(root, size=S, n=4, healthy=3):
    """Pair records of smooth random images: n annotated (train and test) and some healthy ones."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size

    def img():
        a, b, c = rng.uniform(-1, 1, 3)
        return np.clip(127.5 + 60 * (a * xx + b * yy + c * xx * yy) + rng.normal(0, 4, (size, size)), 0, 255)

    ann = [dict(image=img().astype(np.uint8), box=(4 + 3 * i, 6, 24 + 3 * i, 30), label=1 + i % 6,
                finding="Atelectasis", image_id=f"a{i}.png", ann_id=i) for i in range(n)]
    write_pair_examples(root / "pairs_train.tfrecord", ann)
    write_pair_examples(root / "pairs_test.tfrecord", ann[:2])
    write_pair_examples(root / "healthy_train.tfrecord",
                        [dict(image=img().astype(np.uint8), image_id=f"h{i}.png") for i in range(healthy)])
    return root


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return write_tiny_records(tmp_path_factory.mktemp("records"))


def tiny_cfg(**kw):
    base = dict(image_size=S, gen_filters=4, disc_filters=4, batch_size=2, num_downs=4, disc_layers=2,
                steps=6, log_every=1, image_every=2, checkpoint_every=2, keep_checkpoints=2)
    base.update(kw)
    return Pix2PixConfig(**base)


def weights(model):
    return [v.numpy().copy() for v in model.generator.variables + model.discriminator.variables]


def test_config_round_trip_through_json():
    for cfg in (dataclasses.replace(preset("demo").pix2pix, use_healthy=True), StarGANConfig(res_blocks=2)):
        data = json.loads(json.dumps(dataclasses.asdict(cfg)))
        assert training.config_from_dict(type(cfg), data) == cfg


def test_registry_knows_the_paper_models():
    assert registry.get("pix2pix").config_from_preset(preset("paper")).use_healthy is False
    assert registry.get("pix2pix_n").config_from_preset(preset("paper")).use_healthy is True
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        registry.get("nope")


def test_a_folder_without_checkpoint_is_not_a_run(tmp_path):
    assert not training.is_run(tmp_path)
    training.write_run_config(tmp_path, {"model": "pix2pix", "cfg": tiny_cfg()})
    assert not training.is_run(tmp_path)  # killed before its first checkpoint: start over
    assert training.read_run_config(tmp_path)["cfg"] == tiny_cfg()
    with pytest.raises(training.TrainingError, match="not a training run"):
        training.read_run_config(tmp_path / "nope")


def test_dataset_gives_every_healthy_image_a_fresh_box(records):
    cfg = tiny_cfg(use_healthy=True, batch_size=7, augment=False)
    it = iter(make_dataset(records, cfg, seed=0))
    masks = [next(it)["mask"].numpy() for _ in range(4)]  # 4 epochs of 7 images (4 annotated + 3 healthy)
    for m in masks:
        assert m.shape == (7, S, S, 1)
        assert np.all(m.reshape(7, -1).max(axis=1) == 1.0)  # no image without a box
    # annotated masks repeat every epoch; healthy boxes are redrawn: more distinct masks than 4 + 3
    distinct = {m.tobytes() for batch in masks for m in batch}
    assert len(distinct) > 7
    plain = next(iter(make_dataset(records, tiny_cfg(batch_size=4, augment=False), seed=0)))
    assert plain["mask"].shape == (4, S, S, 1)
    small = next(iter(make_dataset(records, tiny_cfg(image_size=32, use_healthy=True), seed=0)))
    assert small["image"].shape == (2, 32, 32, 1)  # records resized to the model's size
    assert set(np.unique(small["mask"].numpy())) <= {0.0, 1.0}


def test_crash_then_resume_continues_at_the_saved_step(records, tmp_path):
    run = tmp_path / "run"
    saved = {}

    def crash(step, losses, model):
        if step == 2:
            saved["weights"] = weights(model)  # the state checkpointed at step 2
        if step == 3:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        training.train("pix2pix_n", records, run, tiny_cfg(use_healthy=True), on_step=crash, progress=False)
    assert tf.train.latest_checkpoint(str(run / "checkpoints")).endswith("ckpt-2")
    with pytest.raises(training.RunExistsError, match="--resume"):
        training.train("pix2pix", records, run, tiny_cfg(), progress=False)

    seen = {}

    def on_start(step, model):
        seen.update(step=step, weights=weights(model), g_iter=int(model.g_optimizer.iterations),
                    d_iter=int(model.d_optimizer.iterations))

    result = training.train(None, records, run, resume=True, on_start=on_start, progress=False)
    assert seen["step"] == 2 and seen["g_iter"] == 2 and seen["d_iter"] == 2
    for a, b in zip(seen["weights"], saved["weights"]):
        np.testing.assert_array_equal(a, b)
    assert result.status == "done" and result.step == 6
    steps = [int(r["step"]) for r in training.read_history(run / "history.csv")]
    assert steps == [1, 2, 3, 4, 5, 6]  # the crashed step 3 logged once, then replaced by the resumed run
    ckpts = sorted(p.name for p in (run / "checkpoints").glob("ckpt-*.index"))
    assert ckpts == ["ckpt-4.index", "ckpt-6.index"]  # keep_checkpoints=2
    assert sorted(p.name for p in (run / "samples").glob("*.png"))[-1] == "step_0000006.png"
    info = json.loads((run / "config.json").read_text())
    assert info["model"] == "pix2pix_n" and info["config"]["use_healthy"] is True
    loaded = training.load_run(run)
    assert loaded.step == 6 and int(loaded.model.g_optimizer.iterations) == 6


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(records, tmp_path):
    run = tmp_path / "run"

    def poison(step, losses, model):
        if step == 2:
            v = model.generator.trainable_variables[0]
            v.assign(tf.fill(v.shape, np.nan))

    with pytest.raises(training.DivergedError, match=r"step 3: non-finite loss.*ckpt-2"):
        training.train("pix2pix", records, run, tiny_cfg(checkpoint_every=1), on_step=poison, progress=False)
    assert tf.train.latest_checkpoint(str(run / "checkpoints")).endswith("ckpt-2")
    assert not list((run / "checkpoints").glob("ckpt-3*"))


def test_ctrl_c_saves_a_checkpoint(records, tmp_path):
    run = tmp_path / "run"
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the suite runs as a background job

    def interrupt(step, losses, model):
        if step == 1:
            os.kill(os.getpid(), signal.SIGINT)

    result = training.train("pix2pix", records, run, tiny_cfg(checkpoint_every=100), on_step=interrupt,
                            progress=False)
    assert result.status == "interrupted" and result.step == 1
    assert result.checkpoint.endswith("ckpt-1")
    assert signal.getsignal(signal.SIGINT) is before  # handler restored
