"""cxr_keras/cli/reader_study.py (`cxr-keras reader_study`): build → add-reader → links → score."""
from __future__ import annotations

import re

import pytest

from cxr_keras.study.layout import load_study


@pytest.fixture(scope="module")
def cli():
    from cxr_keras.cli.reader_study import main

    return main


def test_build_add_reader_links_score(tmp_path, inputs, cli, capsys):
    out = tmp_path / "study"
    gen = [f"{k}={v}" for k, v in inputs["generated"].items()]
    cli(["--preset", "quick", "build", "--real", str(inputs["real"]), "--generated", *gen,
         "--per-finding", "3", "--image-size", "48", "--out", str(out)])
    text = capsys.readouterr().out
    assert "shortfall: stargan/Pneumonia: 1 of 3" in text
    study = load_study(out)
    assert study["per_finding"] == 3 and study["image_size"] == 48 and study["total"] == 18 + 18 + 16
    assert study["common_size"] == 64  # every fixture source is 64 px
    cli(["build", "--real", str(inputs["real"]), "--generated", *gen, "--per-finding", "1",
         "--native-resolution", "--out", str(tmp_path / "native")])
    assert load_study(tmp_path / "native")["common_size"] == 0
    capsys.readouterr()
    cli(["add-reader", str(out), "Alice", "--base-url", "http://127.0.0.1:9999/"])
    link = capsys.readouterr().out.strip()
    assert re.fullmatch(r"Alice: http://127\.0\.0\.1:9999/r/[A-Za-z0-9_\-]{20,}", link)
    cli(["links", str(out), "--base-url", "http://127.0.0.1:9999"])
    assert capsys.readouterr().out.strip() == link
    cli(["score", str(out)])
    text = capsys.readouterr().out
    assert "| Total | - /18 | - /18 | - /16 |" in text  # nobody has answered yet
    assert (out / "scores" / "table1.csv").is_file()


def test_errors_exit_with_a_message(tmp_path, inputs, cli):
    with pytest.raises(SystemExit, match="reader_study build: .*NAME=DIR"):
        cli(["build", "--real", str(inputs["real"]), "--generated", "nodir", "--out", str(tmp_path / "s")])
    with pytest.raises(SystemExit, match=r"reader_study score: .*study.json: study description not found"):
        cli(["score", str(tmp_path / "nothing")])
    with pytest.raises(SystemExit, match="reader_study add-reader: .*study database not found"):
        cli(["add-reader", str(tmp_path / "nothing"), "Bob"])
