"""Our detection records and configs, read back by the TF OD API itself."""
from cxr_keras.detection import od_compat

import json
import subprocess
import sys

import numpy as np
import pytest

from cxr_keras.config import FINDINGS, DetectionConfig, preset
from cxr_keras.detection import configs as odc


def expected_boxes(item, size=256):
    b = np.asarray(item.boxes_xyxy, np.float32) / size
    return np.stack([b[:, 1], b[:, 0], b[:, 3], b[:, 2]], -1)  # ymin, xmin, ymax, xmax


def test_shim_is_idempotent_and_sets_the_aliases():
    import importlib

    od_compat.install()
    importlib.reload(od_compat)
    od_compat.install()
    from tensorflow.python.ops import cond, control_flow_assert, control_flow_case, control_flow_ops
    from tensorflow.python.ops import while_loop

    assert control_flow_ops.case is control_flow_case.case
    assert control_flow_ops.cond is cond.cond
    assert control_flow_ops.while_loop is while_loop.while_loop
    assert control_flow_ops.Assert is control_flow_assert.Assert
    import os

    assert os.environ["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] == "python"


def test_od_api_decoder_reads_our_records(records_dir):
    """object_detection's own TfExampleDecoder gets the right boxes, classes and image."""
    od_compat.require_od_api()
    import tensorflow as tf
    from object_detection.core import standard_fields as fields
    from object_detection.data_decoders.tf_example_decoder import TfExampleDecoder

    root, items = records_dir
    decoder = TfExampleDecoder()
    raws = list(tf.data.TFRecordDataset(str(root / "det_train.tfrecord")))
    assert len(raws) == len(items["train"])
    for raw, item in zip(raws, items["train"]):
        d = decoder.decode(raw)
        np.testing.assert_allclose(d[fields.InputDataFields.groundtruth_boxes].numpy(),
                                   expected_boxes(item), atol=1e-6)
        assert d[fields.InputDataFields.groundtruth_classes].numpy().tolist() == list(item.labels)
        image = d[fields.InputDataFields.image].numpy()
        assert image.shape == (256, 256, 3)  # grayscale PNG decoded to 3 channels, as trained
        np.testing.assert_array_equal(image[:, :, 0], item.image)
        assert d[fields.InputDataFields.filename].numpy().decode() == item.filename


def test_our_reader_matches_the_records(records_dir):
    from cxr_keras.detection.inference import iter_record

    root, items = records_dir
    got = list(iter_record(root / "det_test.tfrecord"))
    assert [g["filename"] for g in got] == [i.filename for i in items["test"]]
    for g, item in zip(got, items["test"]):
        np.testing.assert_allclose(g["gt_boxes"], expected_boxes(item), atol=1e-6)
        assert g["gt_labels"].tolist() == list(item.labels)
        np.testing.assert_array_equal(g["image"][:, :, 2], item.image)


def test_reader_errors_name_the_file(tmp_path):
    from cxr_keras.detection.inference import RecordError, iter_record

    with pytest.raises(RecordError, match="does not exist"):
        list(iter_record(tmp_path / "missing.tfrecord"))
    bad = tmp_path / "bad.tfrecord"
    bad.write_bytes(b"this is not a tfrecord file at all")
    with pytest.raises(RecordError, match="bad.tfrecord"):
        list(iter_record(bad))


def test_make_od_configs_parsed_by_the_od_api(records_dir, syn_dir, tmp_path):
    od_compat.require_od_api()
    root, _ = records_dir
    syn, _ = syn_dir
    cfg = preset("paper").detection
    written = odc.make_od_configs(root, tmp_path / "od", cfg,
                                  synthetic={"pix2pix": syn, "pix2pix_n": syn, "stargan": syn})
    assert set(written) == {"ori", "ori_pix2pix", "ori_pix2pix_n", "ori_stargan"}
    parsed = {p: odc.load_pipeline_configs(path) for p, path in written.items()}
    ori = parsed["ori"]
    assert ori["model"].faster_rcnn.feature_extractor.type == "faster_rcnn_inception_resnet_v2_keras"
    assert ori["model"].faster_rcnn.num_classes == len(FINDINGS) == 6
    resizer = ori["model"].faster_rcnn.image_resizer.fixed_shape_resizer
    assert (resizer.height, resizer.width) == (256, 256)
    assert ori["train_config"].batch_size == 2
    assert ori["train_config"].num_steps == cfg.steps
    lr = ori["train_config"].optimizer.momentum_optimizer.learning_rate.constant_learning_rate
    assert lr.learning_rate == pytest.approx(3e-4)
    assert len(ori["train_config"].data_augmentation_options) == 0
    assert not ori["train_config"].fine_tune_checkpoint
    train_paths = {p: list(c["train_input_config"].tf_record_input_reader.input_path)
                   for p, c in parsed.items()}
    assert train_paths["ori"] == [str((root / "det_train.tfrecord").resolve())]
    assert train_paths["ori_pix2pix"] == train_paths["ori"] + [str((syn / "detection.tfrecord").resolve())]
    assert odc.eval_record_path(ori) == (root / "det_test.tfrecord").resolve()
    # the same model and training settings for every protocol
    for c in parsed.values():
        assert c["model"] == ori["model"]
        assert c["train_config"] == ori["train_config"]
    summary = json.loads((tmp_path / "od" / "protocols.json").read_text())
    assert set(summary["protocols"]) == set(written)


def test_fine_tune_checkpoint_and_cpu_preset(records_dir, tmp_path):
    root, _ = records_dir
    cfg = DetectionConfig(fine_tune_checkpoint="zoo/checkpoint/ckpt-0")
    path = odc.make_od_configs(root, tmp_path, cfg, protocols=["ori"], steps=7)["ori"]
    train = odc.load_pipeline_configs(path)["train_config"]
    assert train.fine_tune_checkpoint.endswith("zoo/checkpoint/ckpt-0")
    assert train.fine_tune_checkpoint_type == "detection" and train.num_steps == 7
    demo = preset("demo").detection
    path = odc.make_od_configs(root, tmp_path / "demo", demo, protocols=["ori"], preset="demo")["ori"]
    model = odc.load_pipeline_configs(path)["model"].faster_rcnn
    assert odc.config_preset(path) == "demo"
    assert odc.config_preset(tmp_path / "missing.config") is None
    assert model.feature_extractor.type == demo.feature_extractor
    assert model.first_stage_max_proposals == demo.first_stage_max_proposals


def test_generated_cpu_config_builds_a_detection_model(records_dir, tmp_path):
    """model_builder accepts the rendered config (a cheap proxy for the slow training tests)."""
    od_compat.require_od_api()
    from object_detection.builders import model_builder

    root, _ = records_dir
    path = odc.make_od_configs(root, tmp_path, preset("quick").detection, protocols=["ori"])["ori"]
    model = model_builder.build(odc.load_pipeline_configs(path)["model"], is_training=True)
    assert model.num_classes == 6


def test_make_od_configs_input_errors(records_dir, tmp_path):
    root, _ = records_dir
    cfg = DetectionConfig()
    with pytest.raises(odc.ConfigInputError, match="needs --synthetic pix2pix"):
        odc.make_od_configs(root, tmp_path, cfg)  # default protocols need the Pix2Pix sets
    with pytest.raises(odc.ConfigInputError, match="detection.tfrecord"):
        odc.make_od_configs(root, tmp_path, cfg, synthetic={"pix2pix": tmp_path, "pix2pix_n": tmp_path})
    with pytest.raises(odc.ConfigInputError, match="det_test.tfrecord"):
        empty = tmp_path / "rec"
        empty.mkdir()
        (empty / "det_train.tfrecord").write_bytes(b"x")
        odc.make_od_configs(empty, tmp_path, cfg, protocols=["ori"])
    with pytest.raises(odc.ConfigInputError, match="unknown protocol"):
        odc.make_od_configs(root, tmp_path, cfg, protocols=["ori_cyclegan"])
    with pytest.raises(odc.ConfigInputError, match="unknown synthetic"):
        odc.make_od_configs(root, tmp_path, cfg, synthetic={"cyclegan": tmp_path})
    bad = DetectionConfig(first_stage_max_proposals=8, second_stage_batch_size=16)
    with pytest.raises(odc.ConfigInputError, match="second_stage_batch_size"):
        odc.make_od_configs(root, tmp_path, bad, protocols=["ori"])
    broken = tmp_path / "broken.config"
    broken.write_text("model { faster_rcnn { num_classes: oops } }")
    with pytest.raises(odc.ConfigInputError, match="broken.config"):
        odc.load_pipeline_configs(broken)


def test_make_od_configs_command(records_dir, syn_dir, tmp_path):
    root, _ = records_dir
    syn, _ = syn_dir
    script = [sys.executable, "-m", "cxr_keras.cli.make_od_configs", "--records", str(root), "--out",
              str(tmp_path), "--preset", "demo", "--steps", "40"]
    ok = subprocess.run(script + ["--synthetic", f"pix2pix={syn}", f"pix2pix_n={syn}"],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert sorted(p.name for p in tmp_path.glob("*.config")) == [
        "ori.config", "ori_pix2pix.config", "ori_pix2pix_n.config"]
    assert "num_steps: 40" in (tmp_path / "ori.config").read_text()
    bad = subprocess.run(script + ["--synthetic", "pix2pix"], capture_output=True, text=True)
    assert bad.returncode != 0 and "NAME=SYN_DIR" in bad.stderr


def test_launcher_runs_od_entry_points():
    """The launcher imports the OD API's own entry point and hands it the command line."""
    base = [sys.executable, "-m", "cxr_keras.detection.od_compat", "exporter_main_v2"]
    flags = ["--pipeline_config_path=p.config", "--trained_checkpoint_dir=ckpt",
             "--output_directory=out"]
    ok = subprocess.run(base + flags + ["--only_check_args"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr[-2000:]
    # absl enforces the entry point's required flags: proof the arguments reached it
    missing = subprocess.run(base + flags[1:] + ["--only_check_args"], capture_output=True, text=True)
    assert missing.returncode != 0 and "pipeline_config_path" in missing.stderr
    usage = subprocess.run([sys.executable, "-m", "cxr_keras.detection.od_compat"],
                           capture_output=True, text=True)
    assert usage.returncode == 2 and "model_main_tf2" in usage.stdout
