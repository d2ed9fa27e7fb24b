"""Bad flag values are refused up front (issue #14): exit status 2 and one error line naming the flag and
what it allows, before anything is imported, started or written."""
import importlib

import pytest

FILE = "<a file>"
UNDER_FILE = "<under a file>"

# (command, arguments, flag, text the error names); the other required flags are valid
CASES = [
    ("make_tfrecords", ["--image-size", "0"], "--image-size", "32..2048"),
    ("make_tfrecords", ["--image-size", "-5"], "--image-size", "32..2048"),
    ("make_tfrecords", ["--image-size", "100000"], "--image-size", "32..2048"),
    ("make_tfrecords", ["--train-frac", "1.5"], "--train-frac", "(0.0, 1.0)"),
    ("make_tfrecords", ["--healthy", "-1"], "--healthy", ">= 0"),
    ("make_tfrecords", ["--workers", "0"], "--workers", ">= 1"),
    ("make_tfrecords", ["--seed", "-3"], "--seed", "0..4294967295"),
    ("make_tfrecords", ["--out", FILE], "--out", "is a file"),
    ("make_tfrecords", ["--out", UNDER_FILE], "--out", "is a file"),
    ("make_phantoms", ["--workers", "0"], "--workers", ">= 1"),
    ("make_phantoms", ["--limit", "-2"], "--limit", ">= 0"),
    ("train_gan", ["--steps", "0"], "--steps", ">= 1"),
    ("train_gan", ["--batch-size", "0"], "--batch-size", ">= 1"),
    ("train_gan", ["--image-size", "16"], "--image-size", "32..2048"),
    ("train_gan", ["--learning-rate", "0"], "--learning-rate", "> 0"),
    ("train_gan", ["--checkpoint-every", "0"], "--checkpoint-every", ">= 1"),
    ("train_gan", ["--out", FILE], "--out", "is a file"),
    ("synthesize", ["--count", "-1"], "--count", ">= 0"),
    ("synthesize", ["--outputs-per-input", "0"], "--outputs-per-input", ">= 1"),
    ("synthesize", ["--out", UNDER_FILE], "--out", "is a file"),
    ("evaluate_gan", ["--limit", "0"], "--limit", ">= 1"),
    ("make_od_configs", ["--steps", "0"], "--steps", ">= 1"),
    ("train_detector", ["--iou", "2"], "--iou", "[0.0, 1.0]"),
    ("train_detector", ["--max-checkpoints", "1"], "--max-checkpoints", ">= 2"),
    ("train_detector", ["--eval-steps", "10,-5"], "--eval-steps", "integers >= 0"),
    ("evaluate_localisation", ["--window", "-1"], "--window", ">= 0"),
    ("evaluate_localisation", ["--score-threshold", "nan"], "--score-threshold", "[0.0, 1.0]"),
    ("export_detector", ["--out", FILE], "--out", "is a file"),
    ("run_pipeline", ["--seed", "-1"], "--seed", "0..4294967295"),
    ("run_pipeline", ["--out", FILE], "--out", "is a file"),
    ("run_pipeline", ["--seeds", "0"], "--seeds", ">= 1"),
    ("run_pipeline", ["--strategy", "tpu"], "--strategy", "invalid choice: 'tpu'"),
    ("run_pipeline", ["--publish", FILE], "--publish", "is a file"),
    ("train_detector", ["--strategy", "tpu"], "--strategy", "invalid choice: 'tpu'"),
]
REQUIRED = {
    "make_tfrecords": ["--nih-root", "NIH", "--out", "OUT"],
    "make_phantoms": ["--out", "OUT"],
    "train_gan": ["--model", "pix2pix", "--records", "REC", "--out", "OUT"],
    "synthesize": ["--run", "RUN", "--records", "REC", "--out", "OUT"],
    "evaluate_gan": ["--run", "RUN", "--records", "REC"],
    "make_od_configs": ["--records", "REC", "--out", "OUT"],
    "train_detector": ["--config", "CONFIG", "--out", "OUT"],
    "evaluate_localisation": ["--runs", "RUN", "--out", "OUT"],
    "export_detector": ["--run", "RUN"],
    "run_pipeline": ["--out", "OUT"],
}


def _argv(tmp_path, command, args):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    names = {"NIH": tmp_path / "nih", "REC": tmp_path / "rec", "RUN": tmp_path / "run", "OUT": tmp_path / "out",
             "CONFIG": tmp_path / "x.config", FILE: a_file, UNDER_FILE: a_file / "sub"}
    base = list(REQUIRED[command])
    for flag in args[::2]:  # the case's value replaces a required one of the same flag
        if flag in base:
            i = base.index(flag)
            del base[i:i + 2]
    return [str(names.get(v, v)) for v in base + args]


@pytest.mark.parametrize("command,args,flag,allowed", CASES, ids=[f"{c[0]} {' '.join(c[1])}" for c in CASES])
def test_bad_values_are_refused_with_one_line_naming_the_flag(command, args, flag, allowed, tmp_path, capsys):
    main = importlib.import_module(f"cxr_keras.cli.{command}").main
    with pytest.raises(SystemExit) as exc:
        main(_argv(tmp_path, command, args))
    assert exc.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"error: argument {flag}: " in last and allowed in last, last
    assert not (tmp_path / "out").exists()  # nothing was started or written


def test_the_image_size_error_gives_the_reason(tmp_path, capsys):
    from cxr_keras.cli import make_tfrecords

    with pytest.raises(SystemExit):
        make_tfrecords.main(["--nih-root", str(tmp_path), "--out", str(tmp_path / "o"), "--image-size", "5000"])
    assert "gigabytes of memory" in capsys.readouterr().err


def test_reader_study_ports_and_crops(tmp_path, capsys):
    from cxr_keras.cli import reader_study

    for argv, flag in ((["serve", str(tmp_path), "--port", "70000"], "--port"),
                       (["build", "--real", "R", "--generated", "p=S", "--out", str(tmp_path / "s"),
                         "--border-crop", "0.6"], "--border-crop"),
                       (["auto-judge", str(tmp_path), "--folds", "1"], "--folds")):
        with pytest.raises(SystemExit) as exc:
            reader_study.main(argv)
        assert exc.value.code == 2
        assert f"argument {flag}: must be" in capsys.readouterr().err
