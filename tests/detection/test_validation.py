"""The held-out validation split, the prior-box run folder and the detection stages of the pipeline."""
from cxr_keras.detection import od_compat  # noqa: F401  (before TensorFlow / protobuf)

import json

import numpy as np
import pytest

from cxr_keras.config import preset, replace
from cxr_keras.detection import validation
from cxr_keras.detection.configs import (load_pipeline_configs, make_od_configs, real_train_record_path,
                                         val_record_path)
from cxr_keras.records.detection import read_detection_records


def test_choose_validation_is_seeded_stratified_and_leaves_training_images():
    names = [f"i{k:02d}" for k in range(40)]
    labels = [[1 + k % 4] for k in range(40)]
    a = validation.choose_validation(names, labels, 0.25, seed=0)
    assert a == validation.choose_validation(names, labels, 0.25, seed=0)
    assert a != validation.choose_validation(names, labels, 0.25, seed=1)
    # stratified by finding: round(0.25 * 10) = 2 of each finding's 10 images
    assert [sum(1 for n in a if int(n[1:]) % 4 == f) for f in range(4)] == [2, 2, 2, 2]
    with pytest.raises(ValueError, match="val_fraction"):
        validation.choose_validation(names, labels, 1.0, seed=0)


def test_make_od_configs_holds_out_images_and_their_synthetic_copies(make_records, tmp_path):
    write_records, write_syn = make_records
    items = write_records(tmp_path / "rec", n_train=10, n_test=3)
    syn_items = write_syn(tmp_path / "syn", n=4)
    # the synthetic set's manifest names the real image each synthetic image was made from
    sources = [items["train"][k].filename for k in range(4)]
    (tmp_path / "syn" / "manifest.json").write_text(json.dumps({"items": [
        {"file": f"images/{it.filename}", "source_image": src, "ann_ids": []}
        for it, src in zip(syn_items, sources)]}))
    cfg = replace(preset("quick").detection, val_fraction=0.3)
    written = make_od_configs(tmp_path / "rec", tmp_path / "od", cfg, synthetic={"pix2pix": tmp_path / "syn"},
                              protocols=["ori", "ori_pix2pix"], seed=3)
    split = json.loads((tmp_path / "od" / validation.SPLIT_JSON).read_text())
    val = set(split["val_images"])
    fit = {r["filename"] for r in read_detection_records(tmp_path / "od" / validation.FIT_RECORD)}
    held = {r["filename"] for r in read_detection_records(tmp_path / "od" / validation.VAL_RECORD)}
    assert held == val and not fit & val and fit | val == {it.filename for it in items["train"]}
    assert split["seed"] == 3 and split["images"] == {"fit": len(fit), "val": len(val)}
    kept = {r["filename"] for r in read_detection_records(tmp_path / "od" / "pix2pix_fit.tfrecord")}
    assert kept == {it.filename for it, src in zip(syn_items, sources) if src not in val}
    assert split["synthetic"]["pix2pix"]["kept"] == len(kept)
    parsed = {p: load_pipeline_configs(path) for p, path in written.items()}
    for p, c in parsed.items():
        assert val_record_path(c).name == validation.VAL_RECORD
        assert real_train_record_path(c).name == validation.FIT_RECORD
        assert c["eval_input_configs"][0].tf_record_input_reader.input_path[0].endswith("det_test.tfrecord")
    assert list(parsed["ori_pix2pix"]["train_input_config"].tf_record_input_reader.input_path)[1].endswith(
        "pix2pix_fit.tfrecord")


def test_no_validation_share_keeps_the_configs_as_they_were(records_dir, tmp_path):
    root, _ = records_dir
    config = make_od_configs(root, tmp_path / "od", preset("paper").detection, protocols=["ori"])["ori"]
    parsed = load_pipeline_configs(config)
    assert val_record_path(parsed) is None and len(parsed["eval_input_configs"]) == 1
    assert real_train_record_path(parsed) == root.resolve() / "det_train.tfrecord"
    assert "scales: [0.125, 0.25, 0.5, 1.0]" in config.read_text()


def test_anchor_scales_follow_the_image_size(records_dir, tmp_path):
    root, _ = records_dir
    cfg = replace(preset("quick").detection, image_size=128)
    config = make_od_configs(root, tmp_path / "od", cfg, protocols=["ori"])["ori"]
    assert "scales: [0.0625, 0.125, 0.25, 0.5]" in config.read_text()


def test_prior_box_run_folder(records_dir, tmp_path):
    from cxr_keras.detection.baseline import prior_boxes, write_baseline_run
    from cxr_keras.detection.inference import load_results

    root, items = records_dir
    cfg = replace(preset("quick").detection, val_fraction=0.0)  # priors from all of det_train
    config = make_od_configs(root, tmp_path / "od", cfg, protocols=["ori"])["ori"]
    paths = write_baseline_run(config, tmp_path / "prior_box")
    meta = json.loads(paths.protocol.read_text())
    assert meta["baseline"] is True and meta["protocol"] == "prior_box"
    results = load_results(paths.detection(0))
    assert [r.filename for r in results] == [it.filename for it in items["test"]]
    size = 256.0
    train = [type("GT", (), {"gt_boxes": np.array(it.boxes_xyxy, float)[:, [1, 0, 3, 2]] / size,
                             "gt_labels": np.array(it.labels), "filename": it.filename})
             for it in items["train"]]
    priors = prior_boxes(train)
    for r in results:
        assert len(r.classes) == len(priors)
        for label, box in zip(r.classes, r.boxes):
            np.testing.assert_allclose(box, priors[int(label)], atol=1e-5)
    for name, box in meta["priors"].items():
        assert len(box) == 4


def test_detection_stages_per_seed_baseline_and_table(tmp_path):
    from cxr_keras.pipeline import plan

    cfg = preset("demo")
    names = [s.name for s in plan(cfg, tmp_path, seeds=2)]
    for protocol in cfg.detection.protocols:
        assert f"detector_{protocol}" in names and f"detector_{protocol}_seed1" in names
    assert names.index("prior_box") < names.index("table2")
    stages = {s.name: s for s in plan(cfg, tmp_path, seeds=2)}
    assert stages["detector_ori_seed1"].argv[-2:] == ["--seed", 1]
    table = [str(a) for a in stages["table2"].argv]
    assert table[table.index("--select") + 1] == "val" and table[table.index("--iou") + 1] == "0.1,0.3,0.5"
    assert str(tmp_path / "detection" / "prior_box") in table
    assert [s.name for s in plan(cfg, tmp_path)].count("prior_box") == 1


def test_watcher_scores_the_validation_images_and_the_seed_reaches_the_trainer(make_records, tmp_path,
                                                                                monkeypatch):
    from pathlib import Path

    from cxr_keras.detection import inference, train as odt

    write_records, _ = make_records
    write_records(tmp_path / "rec", n_train=8, n_test=2)
    cfg = replace(preset("quick").detection, val_fraction=0.3)
    config = make_od_configs(tmp_path / "rec", tmp_path / "od", cfg, protocols=["ori"])["ori"]
    run = odt.resolve_run(config, tmp_path / "run", cfg, seed=4)
    assert run.val_record.name == validation.VAL_RECORD and run.seed == 4
    assert odt.child_command(config, tmp_path / "m", 2, 2, run.seed)[-2:] == ["--seed", "4"]
    assert "--seed" not in odt.child_command(config, tmp_path / "m", 2, 2)
    odt.prepare_run(run)
    seen = []

    class Fake:
        def restore(self, prefix):
            return self

        def run(self, record, limit=None):
            seen.append(Path(record).name)
            box = np.array([[0, 0, 0.5, 0.5]], np.float32)
            one = (np.array([1]), box, np.array([1]), np.array([0.9], np.float32))
            return [inference.ImageResult("x", box, *one)]

    monkeypatch.setattr(inference.CheckpointDetector, "for_config", classmethod(lambda cls, config: Fake()))
    odt.CheckpointWatcher(run, log=lambda text: None).score("ckpt-1", 2)
    assert seen == ["det_test.tfrecord", validation.VAL_RECORD]
    assert run.paths.detection(2).is_file() and run.paths.val_detection(2).is_file()
    meta = json.loads(run.paths.protocol.read_text())
    assert meta["seed"] == 4 and meta["val_record"].endswith(validation.VAL_RECORD)
