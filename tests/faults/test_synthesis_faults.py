"""Synthesis refuses records of another image size than the run's, and a failure leaves nothing (issue #14):
the set is written to a temporary folder and renamed into place only when complete."""
import json
import os

import pytest
import tensorflow as tf

from cxr_keras.gan import runs, synthesis
from cxr_keras.models.pix2pix import Pix2Pix, build_model
from cxr_keras.paths import RunPaths, SynPaths

from faultkit import S, tiny_cfg, write_records


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """An untrained tiny Pix2Pix run at S×S, checkpointed at step 1."""
    root = tmp_path_factory.mktemp("synrun") / "run"
    cfg = tiny_cfg()
    model = build_model(cfg)
    root.mkdir()
    runs.write_run_config(root, {"model": "pix2pix", "cfg": cfg, "seed": 0})
    step = tf.Variable(1, dtype=tf.int64)
    tf.train.CheckpointManager(runs.make_checkpoint(model, step), str(RunPaths(root).checkpoints), 2).save(1)
    return root


def leftovers(folder):
    return sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}."))


def test_records_of_another_size_are_refused_naming_both_sizes(run, tmp_path):
    big = write_records(tmp_path / "records64", size=2 * S)
    out = tmp_path / "syn"
    with pytest.raises(synthesis.SynthesisError, match=rf"{2 * S}x{2 * S} px .* generates {S}x{S} px"):
        synthesis.synthesize(run, big, out, count=2, outputs_per_input=1, progress=False)
    assert not out.exists() and leftovers(out) == []


def test_a_failure_half_way_leaves_no_output_folder(run, records, tmp_path, monkeypatch):
    calls = []
    real = Pix2Pix.generate

    def fails_on_the_second_batch(self, image, mask, sample=True):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("simulated crash in the middle of synthesis")
        return real(self, image, mask, sample)

    monkeypatch.setattr(Pix2Pix, "generate", fails_on_the_second_batch)
    out = tmp_path / "syn"
    with pytest.raises(RuntimeError, match="simulated crash"):
        synthesis.synthesize(run, records, out, count=12, outputs_per_input=3, progress=False)
    assert len(calls) == 2  # the first batch of 8 images was generated (and would have been written)
    assert not out.exists() and leftovers(out) == []


def test_overwrite_replaces_the_whole_set_and_a_failed_one_keeps_the_old(run, records, tmp_path, monkeypatch):
    out = tmp_path / "syn"
    first = synthesis.synthesize(run, records, out, count=4, outputs_per_input=1, progress=False)
    before = sorted(p.name for p in SynPaths(out).images.iterdir())
    assert len(before) == first["count"] == 4
    monkeypatch.setattr(Pix2Pix, "generate", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        synthesis.synthesize(run, records, out, count=2, outputs_per_input=1, overwrite=True, progress=False)
    assert sorted(p.name for p in SynPaths(out).images.iterdir()) == before  # untouched
    monkeypatch.undo()
    second = synthesis.synthesize(run, records, out, count=2, outputs_per_input=1, seed=5, overwrite=True,
                                  progress=False)
    assert len(list(SynPaths(out).images.iterdir())) == second["count"] == 2  # no image of the old set left
    assert json.loads(SynPaths(out).manifest.read_text())["count"] == 2 and leftovers(out) == []


def test_a_folder_with_other_files_is_not_replaced(run, records, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(synthesis.SynthesisError, match="not a synthetic set folder.*notes.txt"):
        synthesis.synthesize(run, records, out, count=2, outputs_per_input=1, progress=False)
    assert (out / "notes.txt").read_text() == "keep me"


def test_the_staging_folder_of_a_killed_synthesis_is_removed(run, records, tmp_path):
    out = tmp_path / "syn"
    killed = tmp_path / ".syn.999999999.abcd.tmp"  # no such process (beyond pid_max)
    killed.mkdir()
    (killed / "half.png").write_bytes(b"x")
    running = tmp_path / f".syn.{os.getpid()}.efgh.tmp"  # a synthesis still at work
    running.mkdir()
    synthesis.synthesize(run, records, out, count=2, outputs_per_input=1, progress=False)
    assert not killed.exists() and running.is_dir()
