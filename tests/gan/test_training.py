"""The shared GAN training loop (cxr_keras.gan.training / runs): run folder, resume after a crash, NaN stop,
Ctrl-C, loss means from the model's trackers."""
import dataclasses
import json
import os
import signal

import numpy as np
import pytest
import tensorflow as tf

from cxr_keras.config import StarGANConfig, preset
from cxr_keras.gan import registry, runs, training
from cxr_keras.models.pix2pix import LOSSES
from cxr_keras.paths import RunPaths

from gankit import tiny_cfg


def weights(model):
    return [v.numpy().copy() for v in model.generator.variables + model.discriminator.variables]


def test_config_round_trip_through_json():
    for cfg in (dataclasses.replace(preset("demo").pix2pix, use_healthy=True), StarGANConfig(res_blocks=2)):
        data = json.loads(json.dumps(dataclasses.asdict(cfg)))
        assert runs.config_from_dict(type(cfg), data) == cfg


def test_registry_knows_the_paper_models():
    assert registry.get("pix2pix").config_from_preset(preset("paper")).use_healthy is False
    assert registry.get("pix2pix_n").config_from_preset(preset("paper")).use_healthy is True
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        registry.get("nope")


def test_a_folder_without_checkpoint_is_not_a_run(tmp_path):
    assert not runs.is_run(tmp_path)
    runs.write_run_config(tmp_path, {"model": "pix2pix", "cfg": tiny_cfg()})
    assert not runs.is_run(tmp_path)  # killed before its first checkpoint: start over
    assert runs.read_run_config(tmp_path)["cfg"] == tiny_cfg()
    with pytest.raises(runs.TrainingError, match="not a training run"):
        runs.read_run_config(tmp_path / "nope")


def test_resolve_run_checks_and_writes_nothing(records, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(runs.TrainingError, match="a model name is needed"):
        runs.resolve_run(None, records, run)
    with pytest.raises(runs.TrainingError, match="records folder not found"):
        runs.resolve_run("pix2pix", tmp_path / "missing", run, tiny_cfg())
    setup = runs.resolve_run("pix2pix", records, run, tiny_cfg(), steps=9, seed=4)
    assert setup.cfg == dataclasses.replace(tiny_cfg(), steps=9) and setup.seed == 4 and not setup.resume
    assert not run.exists()
    runs.start_run(setup)
    resumed = runs.resolve_run(None, records, run, resume=True, steps=12, seed=99)
    assert resumed.cfg == dataclasses.replace(tiny_cfg(), steps=12) and resumed.seed == 4 and resumed.resume
    with pytest.raises(runs.TrainingError, match="trains 'pix2pix', not 'stargan'"):
        runs.resolve_run("stargan", records, run, resume=True)


def test_history_rows_are_the_window_means_of_the_model_trackers(records, tmp_path):
    seen = []
    cfg = tiny_cfg(log_every=3, image_every=6, checkpoint_every=6)
    training.train("pix2pix", records, tmp_path / "run", cfg, on_step=lambda n, losses, m: seen.append(losses),
                   progress=False)
    rows = training.read_history(RunPaths(tmp_path / "run").history)
    assert [int(r["step"]) for r in rows] == [3, 6]
    for row, window in zip(rows, (seen[:3], seen[3:])):
        assert list(row) == ["step", *LOSSES, "images_per_sec"]
        for k in LOSSES:
            np.testing.assert_allclose(row[k], np.mean([w[k] for w in window]), rtol=1e-4)


def test_crash_then_resume_continues_at_the_saved_step(records, tmp_path):
    run = tmp_path / "run"
    paths = RunPaths(run)
    saved = {}

    def crash(step, losses, model):
        if step == 2:
            saved["weights"] = weights(model)  # the state checkpointed at step 2
        if step == 3:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        training.train("pix2pix_n", records, run, tiny_cfg(use_healthy=True), on_step=crash, progress=False)
    assert tf.train.latest_checkpoint(str(paths.checkpoints)).endswith("ckpt-2")
    with pytest.raises(runs.RunExistsError, match="--resume"):
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
    steps = [int(r["step"]) for r in training.read_history(paths.history)]
    assert steps == [1, 2, 3, 4, 5, 6]  # the crashed step 3 logged once, then replaced by the resumed run
    ckpts = sorted(p.name for p in paths.checkpoints.glob("ckpt-*.index"))
    assert ckpts == ["ckpt-4.index", "ckpt-6.index"]  # keep_checkpoints=2
    assert sorted(paths.samples.glob("*.png"))[-1] == paths.sample(6)
    info = json.loads(paths.config.read_text())
    assert info["model"] == "pix2pix_n" and info["config"]["use_healthy"] is True
    loaded = runs.load_run(run)
    assert loaded.step == 6 and int(loaded.model.g_optimizer.iterations) == 6


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(records, tmp_path):
    run = tmp_path / "run"
    paths = RunPaths(run)

    def poison(step, losses, model):
        if step == 2:
            v = model.generator.trainable_variables[0]
            v.assign(tf.fill(v.shape, np.nan))

    with pytest.raises(runs.DivergedError, match=r"step 3: non-finite loss.*ckpt-2"):
        training.train("pix2pix", records, run, tiny_cfg(checkpoint_every=1), on_step=poison, progress=False)
    assert tf.train.latest_checkpoint(str(paths.checkpoints)).endswith("ckpt-2")
    assert not list(paths.checkpoints.glob("ckpt-3*"))


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
