"""No reader token in the server's log, reader names escaped in table1.md (issue #14)."""
import re
import urllib.request

import pytest

from cxr_keras.study import db as study_db
from cxr_keras.study.layout import load_study, paths
from cxr_keras.study.score import write_scores


def test_the_access_log_masks_reader_tokens(study, server_factory):
    reader = study_db.add_reader(paths(study).db, "Alice")
    proc, port = server_factory(study)
    for url in (f"/r/{reader.token}", f"/r/{reader.token}/image/0123456789abcdef", "/r/not-a-real-token"):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{url}", timeout=10).read()
        except OSError:
            pass  # 404s are logged too
    proc.kill()
    proc.wait(timeout=10)
    log = proc.log.read_text()
    assert "GET /r/*** " in log and "GET /r/***/image/" in log  # the requests are logged ...
    assert reader.token not in log and "not-a-real-token" not in log  # ... without their tokens


def test_reader_names_cannot_break_table1(study):
    names = ["Dr | Pipe", "line\nbreak", "<img src=x onerror=alert(1)>"]
    with pytest.raises(study_db.StudyDBError, match="control character"):  # refused at the door now
        study_db.add_reader(paths(study).db, names[1])
    study_db.add_reader(paths(study).db, names[0])
    conn = study_db.connect(paths(study).db)
    with conn:  # a database written before that check may still hold such a name: the table escapes it
        conn.execute("INSERT INTO readers (name, token, created) VALUES (?, ?, ?)",
                     (names[1], "t" * 24, "2026-01-01T00:00:00"))
    study_db.add_reader(paths(study).db, names[2])
    readers = study_db.list_readers(paths(study).db)
    assert [r.name for r in readers] == names
    order = load_study(study)["order"]
    try:
        for r in readers:
            study_db.record_answer(conn, r.id, 0, order[0], "real")
    finally:
        conn.close()
    write_scores(study)
    md = (paths(study).scores / "table1.md").read_text()
    reader_rows = [ln for ln in md.splitlines() if ln.startswith("| R") and not ln.startswith("| Reader")]
    assert len(reader_rows) == 3
    for row in reader_rows:  # five cells each: no '|' of a name splits a cell
        assert len([c for c in row.replace("\\|", "").split("|")[1:-1]]) == 5, row
    assert "R1 (Dr \\| Pipe)" in md and "R2 (line break)" in md
    assert not re.search(r"(?<!\\)[<>]", md) and "\\<img src=x onerror=alert(1)\\>" in md  # no raw HTML
