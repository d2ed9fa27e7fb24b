"""Readers and their answers in SQLite (WAL, one transaction per answer: a killed server loses nothing).

Every query is scoped by the reader id found from the reader's token, so a token can only ever read
or change its own answers. Answers are kept in a table keyed by (reader, position) plus an append-only
event log of every click (changed answers stay auditable).
"""
from __future__ import annotations

import datetime as _dt
import os
import re
import secrets
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

ANSWERS = ("real", "fake")
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_\-]{16,64}$")
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1: newline, tab, NUL, escapes, ...
SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS readers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    token TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS answers (
    reader_id INTEGER NOT NULL REFERENCES readers(id),
    position INTEGER NOT NULL CHECK (position >= 0),
    image_id TEXT NOT NULL,
    answer TEXT NOT NULL CHECK (answer IN ('real', 'fake')),
    answered_at TEXT NOT NULL,
    changes INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (reader_id, position),
    UNIQUE (reader_id, image_id)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    reader_id INTEGER NOT NULL REFERENCES readers(id),
    position INTEGER NOT NULL,
    image_id TEXT NOT NULL,
    answer TEXT NOT NULL,
    at TEXT NOT NULL
);
"""


class StudyDBError(ValueError):
    """The study database is missing or a request does not fit the reader's progress."""


class OutOfOrder(StudyDBError):
    """An answer for a position the reader may not (or no longer) answer."""


@dataclass(frozen=True)
class Reader:
    id: int
    name: str
    token: str


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def connect(path: os.PathLike) -> sqlite3.Connection:
    """Open the study DB in WAL mode, autocommit (transactions are explicit), full fsync."""
    path = Path(path)
    if not path.is_file():
        raise StudyDBError(f"{path}: study database not found (run `reader_study.py build` first)")
    conn = sqlite3.connect(str(path), timeout=10.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def init_db(path: os.PathLike) -> None:
    """Create the (empty) schema; safe to call on an existing database."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(str(path), isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(SCHEMA)
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))


def add_reader(path: os.PathLike, name: str) -> Reader:
    """Register a reader and give them a fresh random token (their personal link). The name is stripped;
    one that is empty, over 100 characters or holds a control character is refused."""
    name = name.strip()
    if not name:
        raise StudyDBError("reader name is empty or only whitespace (it must be 1–100 characters)")
    if len(name) > 100:
        raise StudyDBError("reader name must be 1–100 characters")
    bad = CONTROL_CHARS.search(name)
    if bad:  # repr() keeps the message on one line
        raise StudyDBError(f"reader name {name!r} contains the control character {bad.group()!r}")
    token = secrets.token_urlsafe(18)
    with closing(connect(path)) as conn:
        try:
            cur = conn.execute("INSERT INTO readers (name, token, created) VALUES (?, ?, ?)",
                               (name, token, _now()))
        except sqlite3.IntegrityError:
            raise StudyDBError(f"{path}: a reader named {name!r} already exists") from None
        return Reader(int(cur.lastrowid), name, token)


def list_readers(path: os.PathLike) -> List[Reader]:
    """All readers in registration order (R1, R2, ... in the tables)."""
    with closing(connect(path)) as conn:
        rows = conn.execute("SELECT id, name, token FROM readers ORDER BY id").fetchall()
    return [Reader(int(i), n, t) for i, n, t in rows]


def reader_by_token(conn: sqlite3.Connection, token: str) -> Optional[Reader]:
    if not TOKEN_PATTERN.match(token or ""):
        return None
    row = conn.execute("SELECT id, name, token FROM readers WHERE token = ?", (token,)).fetchone()
    if row is None or not secrets.compare_digest(row[2], token):
        return None
    return Reader(int(row[0]), row[1], row[2])


def answered_count(conn: sqlite3.Connection, reader_id: int) -> int:
    """Answers are contiguous from position 0, so this is also the next position to show."""
    return int(conn.execute("SELECT COUNT(*) FROM answers WHERE reader_id = ?", (reader_id,)).fetchone()[0])


def get_answer(conn: sqlite3.Connection, reader_id: int, position: int) -> Optional[str]:
    row = conn.execute("SELECT answer FROM answers WHERE reader_id = ? AND position = ?",
                       (reader_id, position)).fetchone()
    return row[0] if row else None


def record_answer(conn: sqlite3.Connection, reader_id: int, position: int, image_id: str,
                  answer: str) -> int:
    """Store one answer in its own transaction; returns the reader's answered count afterwards.

    Only the next position (a new answer) or the previous one (changing the last answer) is accepted.
    """
    if answer not in ANSWERS:
        raise StudyDBError(f"answer must be one of {ANSWERS}, got {answer!r}")
    now = _now()
    conn.execute("BEGIN IMMEDIATE")
    try:
        n = answered_count(conn, reader_id)
        if position == n:
            conn.execute("INSERT INTO answers (reader_id, position, image_id, answer, answered_at) "
                         "VALUES (?, ?, ?, ?, ?)", (reader_id, position, image_id, answer, now))
            n += 1
        elif position == n - 1:
            cur = conn.execute("UPDATE answers SET answer = ?, answered_at = ?, changes = changes + "
                               "(answer != ?) WHERE reader_id = ? AND position = ? AND image_id = ?",
                               (answer, now, answer, reader_id, position, image_id))
            if cur.rowcount != 1:
                raise OutOfOrder(f"position {position} holds another image")
        else:
            raise OutOfOrder(f"position {position} cannot be answered now (next is {n})")
        conn.execute("INSERT INTO events (reader_id, position, image_id, answer, at) VALUES (?, ?, ?, ?, ?)",
                     (reader_id, position, image_id, answer, now))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return n


def reader_answers(conn: sqlite3.Connection, reader_id: int) -> Dict[str, str]:
    rows = conn.execute("SELECT image_id, answer FROM answers WHERE reader_id = ? ORDER BY position",
                        (reader_id,)).fetchall()
    return {i: a for i, a in rows}


def all_answers(path: os.PathLike) -> Dict[str, Dict[str, str]]:
    """Reader name → {image id → 'real' | 'fake'}, readers in registration order (admin/scoring only)."""
    out: Dict[str, Dict[str, str]] = {}
    with closing(connect(path)) as conn:
        for rid, name in conn.execute("SELECT id, name FROM readers ORDER BY id").fetchall():
            out[name] = reader_answers(conn, rid)
    return out
