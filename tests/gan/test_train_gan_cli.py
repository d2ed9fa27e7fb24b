"""train_gan's command line (cxr_keras.cli.train_gan): flags map onto config fields by name."""
import pytest

from cxr_keras.cli import train_gan
from cxr_keras.config import PRESETS

# train()'s own arguments and the CLI's switches; every other flag sets the config field of its name
LOOP_ARGUMENTS = {"help", "model", "records", "out", "preset", "steps", "resume", "seed", "mixed_precision", "quiet",
                  "precision", "strategy", "cpu_devices"}


def test_every_other_flag_is_a_config_field():
    p = train_gan.parser()
    dests = {a.dest for a in p._actions}
    overrides = train_gan.config_fields() - train_gan.NOT_OVERRIDES
    assert dests - overrides == LOOP_ARGUMENTS
    assert "batch_size" in dests and "n_critic" in dests and "lambda_l1" in dests
    preset = next(a for a in p._actions if a.dest == "preset")
    assert preset.choices == sorted(PRESETS)


def test_a_flag_the_model_has_no_field_for_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        train_gan.main(["--model", "pix2pix", "--records", str(tmp_path), "--out", str(tmp_path / "run"),
                        "--n-critic", "2", "--batch-size", "3"])
    assert "pix2pix has no option(s) n_critic" in capsys.readouterr().err


def test_new_run_config_applies_the_flags():
    p = train_gan.parser()
    a = p.parse_args(["--model", "stargan", "--records", "r", "--out", "o", "--preset", "quick", "--n-critic", "3",
                      "--no-augment", "--log-every", "7", "--steps", "5"])
    given = train_gan.config_overrides(a)
    assert given == {"n_critic": 3, "augment": False, "log_every": 7}  # --preset and --steps are not fields
    cfg = train_gan.new_run_config(p, a, given)
    assert (cfg.n_critic, cfg.augment, cfg.log_every) == (3, False, 7)
    assert cfg.image_size == PRESETS["quick"]().stargan.image_size
