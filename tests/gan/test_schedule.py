"""Training length and learning-rate schedule (cxr_keras.gan.schedule): epochs → steps for Pix2Pix and
Pix2Pix-N, constant-then-linear decay for every GAN, and a resume that changes the length without a jump."""
import dataclasses
import functools
import json
import math

import numpy as np
import pytest

from cxr_keras.config import Pix2PixConfig, StarGANConfig, preset
from cxr_keras.gan import registry, runs, schedule, training
from cxr_keras.models import pix2pix, stargan
from cxr_keras.paths import RecordsPaths, RunPaths

import gankit
from gankit import S

# the shared tiny Pix2Pix, without image dumps and keeping the checkpoints a resume goes back to
tiny_cfg = functools.partial(gankit.tiny_cfg, image_every=100, keep_checkpoints=5)


def lr_of(optimizer) -> float:
    """The learning rate the optimizer's next update uses: its schedule at its own step count."""
    return float(optimizer._learning_rate(optimizer.iterations))  # Keras keeps the schedule object there


# -- the schedule ------------------------------------------------------------------------------------
def test_constant_then_linear_to_zero_over_the_second_half():
    cfg = Pix2PixConfig(steps=100, learning_rate=2e-4)
    s = schedule.learning_rate_schedule(cfg)
    values = [float(s(t)) for t in (0, 25, 50, 75, 100, 140)]
    np.testing.assert_allclose(values, [2e-4, 2e-4, 2e-4, 1e-4, 0.0, 0.0], atol=1e-10)
    assert s.get_config() == {"base": pytest.approx(2e-4), "total": 100, "start": 50}
    # the Pix2Pix optimizers use it (both nets), and so does StarGAN's critic
    opt = pix2pix.make_optimizer(cfg)
    assert isinstance(opt._learning_rate, schedule.LinearDecay) and opt._learning_rate.get_config()["total"] == 100


def test_adams_epsilon_is_the_configs():
    """Keras' 1e-7 unless set (the distribution tests raise it above rounding noise)."""
    assert float(pix2pix.make_optimizer(Pix2PixConfig()).epsilon) == pytest.approx(1e-7)
    assert float(pix2pix.make_optimizer(Pix2PixConfig(adam_epsilon=1e-3)).epsilon) == pytest.approx(1e-3)
    assert [float(o.epsilon) for o in stargan.make_optimizers(StarGANConfig(adam_epsilon=1e-3))] == \
        pytest.approx([1e-3, 1e-3])


def test_stargan_generator_schedule_counts_its_own_updates():
    cfg = StarGANConfig(steps=1000, n_critic=5, learning_rate=1e-4)
    g, d = stargan.make_optimizers(cfg)
    g_sched, d_sched = g._learning_rate, d._learning_rate  # Keras keeps the schedule objects there
    assert g_sched.get_config() == {"base": pytest.approx(1e-4), "total": 200, "start": 100}
    assert d_sched.get_config() == {"base": pytest.approx(1e-4), "total": 1000, "start": 500}
    # G's update k happens at train step ≈ 5k: both nets are at the same point of the schedule
    for k in (0, 100, 150, 199):
        assert float(g_sched(k)) == pytest.approx(float(d_sched(5 * k)), rel=1e-6, abs=1e-12)


def test_piecewise_linear_matches_value_at_and_serialises():
    knots = ((0.0, 1.0), (10.0, 1.0), (10.0, 0.5), (30.0, 0.0))
    s = schedule.PiecewiseLinear(knots)
    for t in (0, 5, 9.5, 10, 12, 20, 30, 45):
        assert float(s(t)) == pytest.approx(schedule.value_at(knots, t), abs=1e-7)
    again = schedule.PiecewiseLinear(**s.get_config())
    assert again.knots == s.knots


# -- resume with a new length ------------------------------------------------------------------------
@pytest.mark.parametrize("step, new_total", [(20, 300), (60, 100), (80, 400), (150, 120), (100, 200),
                                             (30, 70), (90, 95)])
def test_a_resume_that_changes_the_length_keeps_the_learning_rate(step, new_total):
    cfg = Pix2PixConfig(steps=100, learning_rate=2e-4)
    before = schedule.value_at(schedule.knots_of(cfg), step)
    resumed = schedule.resumed_config(cfg, step, new_total)
    knots = schedule.knots_of(resumed)
    assert resumed.steps == new_total
    # no jump at the resume step, the past unchanged, and the end of the new run at 0
    assert schedule.value_at(knots, step) == pytest.approx(before, rel=1e-9, abs=1e-15)
    for t in np.linspace(0, step, 13):
        assert schedule.value_at(knots, t) == pytest.approx(schedule.value_at(schedule.knots_of(cfg), t), abs=1e-15)
    assert schedule.value_at(knots, new_total) == pytest.approx(0.0, abs=1e-15)
    # never above the base rate, never increasing after the resume step
    later = [schedule.value_at(knots, t) for t in np.linspace(step, new_total, 50)]
    assert max(later) <= 2e-4 + 1e-15 and all(b <= a + 1e-15 for a, b in zip(later, later[1:]))
    # what the optimizer sees is the same function
    tf_sched = schedule.learning_rate_schedule(resumed)
    assert float(tf_sched(step)) == pytest.approx(before, rel=1e-5, abs=1e-10)


def test_the_resume_rule_in_each_phase():
    cfg = Pix2PixConfig(steps=100, learning_rate=1.0)
    # still constant: the decay moves to the second half of the new length (the plain default schedule)
    assert schedule.resumed_config(cfg, 20, 300) == dataclasses.replace(cfg, steps=300)
    # still constant but already past half the new length: decay from now
    k = schedule.knots_of(schedule.resumed_config(cfg, 40, 60))
    assert schedule.value_at(k, 40) == 1.0 and schedule.value_at(k, 50) == pytest.approx(0.5)
    # decaying (lr 0.4 at step 80): linear from 0.4 to 0 at the new end
    k = schedule.knots_of(schedule.resumed_config(cfg, 80, 180))
    assert schedule.value_at(k, 80) == pytest.approx(0.4) and schedule.value_at(k, 130) == pytest.approx(0.2)
    # finished: stays at 0
    k = schedule.knots_of(schedule.resumed_config(cfg, 100, 150))
    assert schedule.value_at(k, 120) == 0.0
    # nothing trained yet, or the same length: the config is simply the new length's
    assert schedule.resumed_config(cfg, 0, 40) == dataclasses.replace(cfg, steps=40)
    assert schedule.resumed_config(cfg, 70, 100) == cfg


def test_a_resumed_run_continues_the_learning_rate_it_stopped_at(records, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_cfg(steps=8, learning_rate=1e-3, checkpoint_every=6)
    seen = {}

    def stop_at_6(step, losses, model):
        if step == 6:
            seen["next_lr"] = lr_of(model.g_optimizer)  # the rate update 7 would have used
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        training.train("pix2pix", records, run, cfg, on_step=stop_at_6, progress=False)
    assert seen["next_lr"] == pytest.approx(1e-3 * 2 / 4)  # decay 4 → 8: at step 6, half way down

    def on_start(step, model):
        seen.update(step=step, g=lr_of(model.g_optimizer), d=lr_of(model.d_optimizer))

    result = training.train(None, records, run, steps=16, resume=True, on_start=on_start, progress=False)
    assert result.step == 16 and seen["step"] == 6
    assert seen["g"] == pytest.approx(seen["next_lr"]) and seen["d"] == pytest.approx(seen["next_lr"])
    info = json.loads(RunPaths(run).config.read_text())
    assert info["config"]["steps"] == 16 and info["config"]["lr_knots"]
    loaded = runs.load_run(run)
    assert lr_of(loaded.model.g_optimizer) == pytest.approx(0.0, abs=1e-12)  # decayed to 0 at its new end


def test_a_stargan_resume_with_a_new_length_keeps_both_rates(records, tmp_path):
    """The bug of issue #12: a StarGAN resume with a new --steps rebuilt its decay and the rate jumped."""
    run = tmp_path / "run"
    cfg = StarGANConfig(image_size=S, gen_filters=4, disc_filters=4, res_blocks=1, disc_layers=2, batch_size=2,
                        n_critic=2, steps=8, learning_rate=1e-3, log_every=1, image_every=100,
                        checkpoint_every=6, keep_checkpoints=5)
    seen = {}

    def stop_at_6(step, losses, model):
        if step == 6:
            seen["before"] = (lr_of(model.g_optimizer), lr_of(model.d_optimizer))
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        training.train("stargan", records, run, cfg, on_step=stop_at_6, progress=False)
    assert seen["before"] == (pytest.approx(0.5e-3), pytest.approx(0.5e-3))  # both half way down their decay

    def on_start(step, model):
        seen["after"] = (lr_of(model.g_optimizer), lr_of(model.d_optimizer))

    training.train(None, records, run, steps=16, resume=True, on_start=on_start, progress=False)
    assert seen["after"] == (pytest.approx(seen["before"][0]), pytest.approx(seen["before"][1]))


# -- epochs → steps ----------------------------------------------------------------------------------
def test_steps_per_epoch_rule_gives_both_models_the_same_passes_over_the_pairs():
    # the paper's counts: 573 pairs, 2,000 healthy images, batch 1
    p = schedule.steps_per_epoch(573, 2000, 1, use_healthy=False)
    n = schedule.steps_per_epoch(573, 2000, 1, use_healthy=True)
    assert (p, n) == (573, 2573)
    # with uniform mixing each pair is drawn once per pass in both: n/p ≈ 4.5 times the steps
    assert n / p == pytest.approx(2573 / 573)
    assert schedule.steps_per_epoch(10, 7, 4, use_healthy=True) == math.ceil(17 / 4)
    assert schedule.steps_per_epoch(10, 7, 4, use_healthy=False) == math.ceil(10 / 4)


def test_a_new_run_counts_its_steps_from_the_records(records, tmp_path):
    # the conftest records: 4 annotated and 3 healthy training images, no manifest: counted from the files
    assert schedule.record_counts(records) == (4, 3)
    for model, per_epoch in (("pix2pix", 2), ("pix2pix_n", 4)):  # ceil(4 / 2), ceil((4 + 3) / 2)
        cfg = tiny_cfg(epochs=3, use_healthy=model == "pix2pix_n")
        setup = runs.resolve_run(model, records, tmp_path / model, cfg)
        assert setup.cfg.steps == 3 * per_epoch
        assert setup.info["length"]["steps_per_epoch"] == per_epoch
        assert setup.info["length"]["annotated_pairs"] == 4
    # --steps overrides the epochs
    setup = runs.resolve_run("pix2pix", records, tmp_path / "x", tiny_cfg(epochs=3), steps=5)
    assert setup.cfg.steps == 5 and setup.info["length"]["rule"] == "--steps"


def test_each_pair_is_seen_epochs_times_by_both_models(records, tmp_path):
    """Count what the input pipeline actually streams in the computed number of steps."""
    ids = {}
    for model in ("pix2pix", "pix2pix_n"):
        cfg = tiny_cfg(epochs=2, batch_size=1, augment=False, use_healthy=model == "pix2pix_n")
        setup = runs.resolve_run(model, records, tmp_path / model, cfg)
        ds = registry.get(model).dataset(records, setup.cfg, 0)
        seen = [tuple(np.round(b["image"].numpy().ravel()[:64], 4)) for b in ds.take(setup.cfg.steps)]
        ids[model] = seen
    pairs = {tuple(np.round(ex["image"].numpy().ravel()[:64], 4))
             for ex in _pairs(RecordsPaths(records).pairs("train"))}
    for model, seen in ids.items():
        assert all(sum(s == p for s in seen) == 2 for p in pairs), model


def _pairs(path):
    from cxr_keras.records.pairs import read_pairs
    return list(read_pairs(path))


def test_record_counts_come_from_the_manifest(tmp_path):
    paths = RecordsPaths(tmp_path)
    paths.manifest.write_text(json.dumps({"records": {paths.pairs("train").stem: 573,
                                                      paths.healthy("train").stem: 2000}}))
    assert schedule.record_counts(tmp_path) == (573, 2000)


def test_the_presets_train_in_epochs():
    paper = preset("paper")
    assert paper.pix2pix.epochs == 200 and paper.pix2pix.decay_start_frac == 0.5  # 100 + 100 epochs
    demo = preset("demo")
    assert demo.pix2pix.epochs and registry.pix2pix_n_config(demo).epochs == demo.pix2pix.epochs
