"""StarGAN end to end on phantom records: train_gan.py (grid, checkpoints, resume) then synthesize.py."""
import json
import runpy
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from cxr_keras.config import DataConfig, FINDINGS, RecordsConfig
from cxr_keras.paths import RecordsPaths, RunPaths, SynPaths

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
pytestmark = pytest.mark.slow


def script_main(name):
    """The ``main(argv)`` of a script, loaded without running it (no subprocess: TF loads once)."""
    return runpy.run_path(str(SCRIPTS / name), run_name="stargan_e2e")["main"]


@pytest.fixture(scope="module")
def phantom_records(tmp_path_factory):
    from cxr_keras.data.nih_folder import write_nih_folder
    from cxr_keras.data.phantoms import PhantomRenderer
    from cxr_keras.records.build import build_records

    root = tmp_path_factory.mktemp("stargan_e2e")
    write_nih_folder(root / "nih", PhantomRenderer(seed=0), limit=6, healthy=6, seed=0, workers=1,
                     progress=False)
    build_records(root / "nih", root / "records", DataConfig(healthy=4),
                  RecordsConfig(image_size=64, workers=1), progress=False)
    return root / "records"


def read_png(path):
    return tf.io.decode_png(Path(path).read_bytes()).numpy()


def test_train_resume_and_synthesize(phantom_records, tmp_path):
    from cxr_keras.gan import runs

    run = tmp_path / "run"
    paths = RunPaths(run)
    train = script_main("train_gan.py")
    common = ["--records", str(phantom_records), "--out", str(run), "--quiet"]
    train(["--model", "stargan", "--preset", "quick", "--steps", "2", "--gen-filters", "4",
           "--disc-filters", "4", "--n-critic", "2", "--image-every", "2", "--checkpoint-every", "1",
           "--log-every", "1"] + common)
    info = json.loads(paths.config.read_text())
    assert info["model"] == "stargan" and info["config"]["n_critic"] == 2
    assert info["config"]["gen_filters"] == 4
    grid = read_png(paths.sample(2))
    # rows: the quick preset's batch of 2 inputs; columns: the input + the 7 domains, 64 px each
    assert grid.shape == (2 * 64, 8 * 64, 1)
    assert grid.std() > 0
    assert list(paths.logs.iterdir())
    assert tf.train.latest_checkpoint(str(paths.checkpoints)).endswith("-2")

    with pytest.raises(SystemExit, match="already holds a training run"):
        train(["--model", "stargan", "--preset", "quick", "--steps", "2"] + common)

    train(["--resume", "--steps", "4"] + common)
    loaded = runs.load_run(run)
    assert loaded.step == 4 and int(loaded.model.step_counter) == 4
    assert int(loaded.model.g_optimizer.iterations) == 2  # G stepped at steps 2 and 4 (n_critic 2)
    history = paths.history.read_text().splitlines()
    assert [int(r.split(",")[0]) for r in history[1:]] == [1, 2, 3, 4]

    syn = tmp_path / "syn"
    script_main("synthesize.py")(["--run", str(run), "--records", str(phantom_records), "--out", str(syn),
                                  "--per-finding", "2", "--quiet"])
    manifest = json.loads(SynPaths(syn).manifest.read_text())
    assert manifest["generator"] == "stargan" and manifest["count"] == 12
    assert sorted({it["finding"] for it in manifest["items"]}) == sorted(FINDINGS)
    healthy_test = {tf.train.Example.FromString(r.numpy()).features.feature["image/id"].bytes_list.value[0].decode()
                    for r in tf.data.TFRecordDataset(str(RecordsPaths(phantom_records).healthy("test")))}
    for it in manifest["items"]:
        assert it["source_image"] in healthy_test
        assert it["boxes"] == [] and it["ann_ids"] == []
        img = read_png(syn / it["file"])
        assert img.shape == (64, 64, 1) and img.dtype == np.uint8
    with pytest.raises(SystemExit, match="already holds a synthetic set"):
        script_main("synthesize.py")(["--run", str(run), "--records", str(phantom_records), "--out", str(syn),
                                      "--quiet"])
