"""StarGAN synthesis (cxr_keras.gan.synthesis_stargan): planning and the options it refuses."""
from types import SimpleNamespace

import pytest
import tensorflow as tf

from cxr_keras.config import StarGANConfig
from cxr_keras.gan import runs, synthesis
from cxr_keras.gan.synthesis_stargan import per_finding_counts, plan_translations, synthesize_stargan
from cxr_keras.models.stargan import build_stargan
from cxr_keras.paths import RunPaths

NOT_LOADED = None  # the options are refused before the run is used


def test_per_finding_counts_and_option_errors(tmp_path):
    assert per_finding_counts(6, None, None) == [25] * 6  # SynthesisConfig.stargan_per_finding
    assert per_finding_counts(6, 2, None) == [2] * 6
    assert per_finding_counts(6, None, 14) == [3, 3, 2, 2, 2, 2]
    with pytest.raises(ValueError, match="not both"):
        per_finding_counts(6, 2, 14)
    with pytest.raises(synthesis.SynthesisError, match="Pix2Pix sources only"):
        synthesize_stargan(NOT_LOADED, tmp_path, tmp_path / "syn", augment=True)
    with pytest.raises(synthesis.SynthesisError, match="per_finding must be >= 0"):
        synthesize_stargan(NOT_LOADED, tmp_path, tmp_path / "syn", per_finding=-1)
    pix2pix = SimpleNamespace(name="pix2pix", run_dir=tmp_path / "run")
    with pytest.raises(synthesis.SynthesisError, match="not a StarGAN run"):
        synthesize_stargan(pix2pix, tmp_path, tmp_path / "syn")


def test_translations_use_every_source_before_reusing_one():
    jobs = plan_translations([2, 2, 1], n_sources=4, seed=0)
    assert [(d, i) for _, d, i in jobs] == [(1, 0), (1, 1), (2, 0), (2, 1), (3, 0)]
    assert sorted(s for s, _, _ in jobs[:4]) == [0, 1, 2, 3]
    assert jobs[4][0] == jobs[0][0]


def test_the_dispatcher_refuses_pix2pix_options_for_a_stargan_run(tmp_path):
    cfg = StarGANConfig(image_size=16, gen_filters=4, disc_filters=4, res_blocks=1, disc_layers=2)
    run = tmp_path / "run"
    runs.write_run_config(run, {"model": "stargan", "cfg": cfg})
    model = build_stargan(cfg)
    tf.train.CheckpointManager(runs.make_checkpoint(model, tf.Variable(1, dtype=tf.int64)),
                               str(RunPaths(run).checkpoints), 1).save(1)
    with pytest.raises(synthesis.SynthesisError, match="Pix2Pix sources only"):
        synthesis.synthesize(run, tmp_path, tmp_path / "syn", augment=True)
