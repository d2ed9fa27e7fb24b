"""cxr_keras/study/db.py reader names: stripped, 1–100 characters, unique, no control characters; the
CLI reports a refused name in one line."""
import pytest

from cxr_keras.study import db as study_db
from cxr_keras.study.layout import paths


@pytest.fixture()
def study(tmp_path):
    """A study folder holding only its (empty) database: all add-reader needs."""
    study_db.init_db(paths(tmp_path).db)
    return tmp_path


def test_reader_names_are_stripped_and_unique(study):
    db = paths(study).db
    assert study_db.add_reader(db, "  Alice\n").name == "Alice"  # surrounding whitespace, as before
    assert study_db.add_reader(db, "Dr. Zoë O'Brien-Smith").name == "Dr. Zoë O'Brien-Smith"
    assert study_db.add_reader(db, "x" * 100).name == "x" * 100
    with pytest.raises(study_db.StudyDBError, match="a reader named 'Alice' already exists"):
        study_db.add_reader(db, "Alice")
    with pytest.raises(study_db.StudyDBError, match="1–100 characters"):
        study_db.add_reader(db, "x" * 101)


@pytest.mark.parametrize("name", ["", "   ", "\t\n"])
def test_an_empty_name_is_refused(study, name):
    with pytest.raises(study_db.StudyDBError, match="reader name is empty or only whitespace"):
        study_db.add_reader(paths(study).db, name)


@pytest.mark.parametrize("name", ["Bob\nEve", "Bob\tEve", "Bob\x00", "\x1b[31mBob", "Bob\x7f", "Bob\x85Eve"])
def test_a_name_with_a_control_character_is_refused(study, name):
    with pytest.raises(study_db.StudyDBError, match="contains the control character") as err:
        study_db.add_reader(paths(study).db, name)
    assert "\n" not in str(err.value)
    assert study_db.list_readers(paths(study).db) == []


def test_the_cli_refuses_a_bad_name_in_one_line(study, capsys):
    from cxr_keras.cli.reader_study import main

    with pytest.raises(SystemExit) as exit_:
        main(["add-reader", str(study), "Bob\nEve"])
    message = str(exit_.value.code)
    assert message == r"reader_study add-reader: reader name 'Bob\nEve' contains the control character '\n'"
    assert capsys.readouterr().out == ""
