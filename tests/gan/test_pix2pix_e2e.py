"""End to end on phantom records: train_gan → synthesize → the OD API decodes the synthetic record;
and a real SIGKILL of train_gan followed by --resume."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from cxr_keras.paths import RecordsPaths, RunPaths, SynPaths

REPO = Path(__file__).resolve().parents[2]
S = 64
TINY = ["--image-size", str(S), "--gen-filters", "4", "--disc-filters", "4", "--num-downs", "4",
        "--batch-size", "2", "--quiet"]


def load_script(name):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_script_{name}", REPO / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def phantom_records(tmp_path_factory):
    from cxr_keras.config import DataConfig, RecordsConfig
    from cxr_keras.data.nih_folder import write_nih_folder
    from cxr_keras.data.phantoms import PhantomRenderer
    from cxr_keras.records.build import build_records

    root = tmp_path_factory.mktemp("e2e")
    write_nih_folder(root / "nih", PhantomRenderer(), limit=6, healthy=2, workers=1, progress=False)
    build_records(root / "nih", root / "records", DataConfig(healthy=2), RecordsConfig(image_size=S, workers=1),
                  progress=False)
    return root


@pytest.mark.slow
def test_train_synthesize_and_decode_with_the_od_api(phantom_records):
    from cxr_keras.detection import od_compat

    od_compat.install()
    from object_detection.core import standard_fields as fields
    from object_detection.data_decoders.tf_example_decoder import TfExampleDecoder

    root = phantom_records
    run, syn = root / "run", root / "syn"
    load_script("train_gan").main(["--model", "pix2pix_n", "--records", str(root / "records"), "--out", str(run),
                                   "--preset", "quick", "--steps", "3", "--checkpoint-every", "2", *TINY])
    assert (RunPaths(run).checkpoints / "ckpt-3.index").exists()
    assert len(RunPaths(run).history.read_text().splitlines()) == 1 + 2  # header, steps 2 and 3
    n_train = sum(1 for _ in tf.data.TFRecordDataset(str(RecordsPaths(root / "records").pairs("train"))))
    count = n_train + 1
    load_script("synthesize").main(["--run", str(run), "--records", str(root / "records"), "--out", str(syn),
                                    "--count", str(count), "--quiet"])
    manifest = json.loads(SynPaths(syn).manifest.read_text())
    assert manifest["generator"] == "pix2pix_n" and manifest["count"] == count
    assert manifest["fidelity"]["passed"] == count
    by_file = {Path(it["file"]).name: it for it in manifest["items"]}

    decoder = TfExampleDecoder()
    seen = 0
    for raw in tf.data.TFRecordDataset(str(SynPaths(syn).detection)):
        d = decoder.decode(raw)
        name = d[fields.InputDataFields.filename].numpy().decode()
        item = by_file[name]
        image = d[fields.InputDataFields.image].numpy()
        assert image.shape[:2] == (S, S)
        boxes = d[fields.InputDataFields.groundtruth_boxes].numpy()
        expect = np.array(item["boxes"], np.float32)[:, [1, 0, 3, 2]] / S
        np.testing.assert_allclose(boxes, expect, atol=1e-6)
        assert list(d[fields.InputDataFields.groundtruth_classes].numpy()) == item["labels"]
        # the decoded box pixels are the source's, bit for bit
        assert np.array_equal(image[..., 0], np.asarray(tf.io.decode_png(
            tf.io.read_file(str(syn / item["file"])), channels=1))[..., 0])
        seen += 1
    assert seen == count

    load_script("evaluate_gan").main(["--run", str(run), "--records", str(root / "records")])
    result = json.loads(RunPaths(run).eval_json("test").read_text())
    assert result["per_finding"]["all"]["n"] > 0 and np.isfinite(result["per_finding"]["all"]["psnr"])


@pytest.mark.slow
def test_sigkill_then_resume_restores_step_and_weights(phantom_records, tmp_path):
    from cxr_keras.gan import checkpoints as ckpts
    from cxr_keras.gan import runs, training

    run = tmp_path / "run"
    checkpoints = str(RunPaths(run).checkpoints)
    cmd = [sys.executable, str(REPO / "scripts" / "train_gan.py"), "--model", "pix2pix", "--records",
           str(phantom_records / "records"), "--out", str(run), "--preset", "quick", "--steps", "100000",
           "--checkpoint-every", "2", *TINY]
    env = dict(os.environ, PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION="python", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 240
        while tf.train.latest_checkpoint(checkpoints) is None:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "no checkpoint within 240 s"
            time.sleep(0.5)
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # The newest intact checkpoint, as resume picks it: the kill may fall between a save and TensorFlow's
    # state file update, so that file can still name the checkpoint before.
    latest, _ = ckpts.newest_good(checkpoints)
    assert latest is not None
    saved_step = int(latest.rsplit("-", 1)[1])
    reference = runs.load_run(run, latest)
    assert reference.step == saved_step
    expected = [v.numpy() for v in reference.model.generator.variables + reference.model.discriminator.variables]

    seen = {}

    def on_start(step, model):
        seen.update(step=step, g_iter=int(model.g_optimizer.iterations),
                    weights=[v.numpy() for v in model.generator.variables + model.discriminator.variables])

    with pytest.raises(SystemExit):  # the CLI refuses to start over an existing run
        load_script("train_gan").main(["--model", "pix2pix", "--records", str(phantom_records / "records"),
                                       "--out", str(run), "--steps", "3"])
    result = training.train(None, phantom_records / "records", run, steps=saved_step + 1, resume=True,
                            on_start=on_start, progress=False)
    assert seen["step"] == saved_step and seen["g_iter"] == saved_step
    for a, b in zip(seen["weights"], expected):
        np.testing.assert_array_equal(a, b)
    assert result.step == saved_step + 1
