"""``synthesize --shard I/N`` then ``synthesize --merge`` (cxr_keras.gan.shards): the merged set equals the
unsharded one for the same seed — same images, same manifest, same detection.tfrecord bytes."""
import json

import numpy as np
import pytest
import tensorflow as tf

from cxr_keras.cli import synthesize as cli
from cxr_keras.config import StarGANConfig
from cxr_keras.gan import runs, shards
from cxr_keras.models.stargan import build_model as build_stargan
from cxr_keras.paths import RecordsPaths, RunPaths, SynPaths
from cxr_keras.records.pairs import write_pair_examples


def files_of(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def make_sharded(run, records, tmp_path, n, extra=()):
    """Synthesize the whole set, and the same in ``n`` shards merged; return both folders."""
    whole, merged = tmp_path / "whole", tmp_path / "merged"
    common = ["--run", str(run), "--records", str(records), "--seed", "3", "--quiet", *extra]
    assert cli.main([*common, "--out", str(whole)]) is None
    parts = [tmp_path / f"part{i}" for i in range(n)]
    for i in reversed(range(n)):  # any order
        assert cli.main([*common, "--out", str(parts[i]), "--shard", f"{i}/{n}"]) is None
    assert cli.main(["--merge", *map(str, parts), "--out", str(merged), "--quiet"]) is None
    return whole, merged, parts


def assert_same_set(whole, merged):
    a, b = files_of(whole), files_of(merged)
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name] == b[name], name  # images, manifest.json and detection.tfrecord, byte for byte


def test_shard_arithmetic():
    assert shards.parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(ValueError, match="I/N"):
            shards.parse_shard(bad)
    starts = [list(shards.batch_starts(21, 8, (i, 2))) for i in range(2)]
    assert starts == [[0], [8, 16]] and list(shards.batch_starts(21, 8)) == [0, 8, 16]
    assert [list(shards.batch_starts(21, 8, (i, 5))) for i in range(5)] == [[], [0], [], [8], [16]]
    assert shards.batch_seed(3, 8) == shards.batch_seed(3, 8) != shards.batch_seed(3, 16)


def test_pix2pix_shards_merge_into_the_unsharded_set(pix2pix_run, tmp_path):
    # 20 images in batches of 8 (8, 8, 4), dropout draws on: 3 shards, one batch each
    whole, merged, parts = make_sharded(pix2pix_run["run"], pix2pix_run["records"], tmp_path, 3,
                                        ["--count", "20", "--outputs-per-input", "5"])
    assert_same_set(whole, merged)
    manifest = json.loads(SynPaths(merged).manifest.read_text())
    assert manifest["count"] == 20 and manifest["fidelity"]["passed"] == 20 and "shard" not in manifest
    part = json.loads(SynPaths(parts[1]).manifest.read_text())
    assert part["shard"] == {"index": 1, "of": 3, "jobs": [8, 16], "planned": 20} and part["count"] == 8


def test_augmented_pix2pix_shards_with_an_empty_one(pix2pix_run, tmp_path):
    whole, merged, parts = make_sharded(pix2pix_run["run"], pix2pix_run["records"], tmp_path, 4,
                                        ["--count", "12", "--outputs-per-input", "3", "--augment"])
    assert_same_set(whole, merged)
    assert [json.loads(SynPaths(p).manifest.read_text())["count"] for p in parts] == [0, 8, 0, 4]


@pytest.fixture(scope="module")
def stargan_run(tmp_path_factory):
    """An untrained tiny StarGAN run (checkpoint at step 1) and records with 5 healthy test images."""
    root = tmp_path_factory.mktemp("stargan")
    rng = np.random.default_rng(2)
    records = RecordsPaths(root / "records")
    write_pair_examples(records.healthy("test"), [dict(image=rng.integers(0, 256, (16, 16)).astype(np.uint8),
                                                       image_id=f"h{i}.png") for i in range(5)])
    cfg = StarGANConfig(image_size=16, gen_filters=4, disc_filters=4, res_blocks=1, disc_layers=2)
    model = build_stargan(cfg)
    run = root / "run"
    run.mkdir()
    runs.write_run_config(run, {"model": "stargan", "cfg": cfg, "seed": 0})
    tf.train.CheckpointManager(runs.make_checkpoint(model, tf.Variable(1, dtype=tf.int64)),
                               str(RunPaths(run).checkpoints), 1).save(1)
    return run, records.root


def test_stargan_shards_merge_into_the_unsharded_set(stargan_run, tmp_path):
    run, records = stargan_run
    whole, merged, _ = make_sharded(run, records, tmp_path, 2, ["--per-finding", "3"])  # 18 images, reused sources
    assert_same_set(whole, merged)
    assert json.loads(SynPaths(merged).manifest.read_text())["count"] == 18


def test_merge_refuses_parts_of_different_sets(pix2pix_run, tmp_path, capsys):
    common = ["--run", str(pix2pix_run["run"]), "--records", str(pix2pix_run["records"]), "--count", "10",
              "--outputs-per-input", "3", "--quiet"]
    cli.main([*common, "--seed", "1", "--out", str(tmp_path / "a"), "--shard", "0/2"])
    cli.main([*common, "--seed", "2", "--out", str(tmp_path / "b"), "--shard", "1/2"])
    cli.main([*common, "--seed", "1", "--out", str(tmp_path / "c"), "--shard", "0/3"])
    cli.main([*common, "--seed", "1", "--out", str(tmp_path / "whole")])
    for parts, message in ((["a", "b"], "differs in seed"), (["a", "c"], "need the 2 shards"),
                           (["a"], "need the 2 shards"), (["a", "whole"], "not a shard")):
        with pytest.raises(SystemExit, match=message):
            cli.main(["--merge", *(str(tmp_path / p) for p in parts), "--out", str(tmp_path / "m")])
    assert not (tmp_path / "m").exists()
    with pytest.raises(SystemExit):
        cli.main(["--merge", str(tmp_path / "a"), "--run", "r", "--out", str(tmp_path / "m")])
    assert "--merge takes the parts and --out only" in capsys.readouterr().err
