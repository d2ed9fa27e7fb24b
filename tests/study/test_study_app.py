"""The reader web app: flow, blinding, reader isolation, path traversal, crash safety (SIGKILL)."""
from __future__ import annotations

import http.client
import re
import signal
import sqlite3
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from cxr_keras.config import FINDINGS
from cxr_keras.study import db as study_db
from cxr_keras.study.app import create_app
from cxr_keras.study.layout import load_key, load_study, paths


@pytest.fixture
def app_and_readers(study):
    r1 = study_db.add_reader(paths(study).db, "Alice")
    r2 = study_db.add_reader(paths(study).db, "Bob")
    app = create_app(study)
    app.testing = True
    return app, r1, r2


def progress(html: str):
    m = re.search(r"Image (\d+) of (\d+)", html)
    return (int(m.group(1)), int(m.group(2))) if m else None


def image_src(html: str) -> str:
    return re.search(r'id="study-image" src="([^"]+)"', html).group(1)


def answer(client, token, pos, value):
    return client.post(f"/r/{token}/answer", data={"pos": str(pos), "answer": value})


def test_reader_flow_answer_back_change_resume(study, app_and_readers):
    app, r1, _ = app_and_readers
    order = load_study(study)["order"]
    c = app.test_client()
    html = c.get(f"/r/{r1.token}").get_data(as_text=True)
    assert progress(html) == (1, len(order))
    assert image_src(html).endswith(f"/image/{order[0]}")
    resp = answer(c, r1.token, 0, "real")
    assert resp.status_code == 303 and resp.headers["Location"].endswith(f"/r/{r1.token}")
    html = c.get(f"/r/{r1.token}").get_data(as_text=True)
    assert progress(html) == (2, len(order)) and order[1] in image_src(html)
    # back: the last answer is shown with its current value and can be changed
    html = c.get(f"/r/{r1.token}?back=1").get_data(as_text=True)
    assert progress(html) == (1, len(order)) and order[0] in image_src(html)
    assert "was <strong>Real</strong>" in html
    assert answer(c, r1.token, 0, "fake").status_code == 303
    with sqlite3.connect(paths(study).db) as conn:
        rows = conn.execute("SELECT position, image_id, answer, changes FROM answers").fetchall()
        events = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    assert rows == [(0, order[0], "fake", 1)] and events == 2
    # only the last answer can be changed; older positions and skipping ahead are refused
    assert answer(c, r1.token, 1, "real").status_code == 303
    assert answer(c, r1.token, 0, "real").status_code == 409
    assert answer(c, r1.token, 5, "real").status_code == 409
    assert answer(c, r1.token, 2, "maybe").status_code == 400
    assert answer(c, r1.token, len(order), "real").status_code == 400
    assert c.post(f"/r/{r1.token}/answer", data={"pos": "x", "answer": "real"}).status_code == 400
    assert progress(c.get(f"/r/{r1.token}").get_data(as_text=True)) == (3, len(order))


def test_done_page_after_last_image(study, app_and_readers):
    app, r1, _ = app_and_readers
    n = load_study(study)["total"]
    c = app.test_client()
    for pos in range(n):
        assert answer(c, r1.token, pos, "real").status_code == 303
    html = c.get(f"/r/{r1.token}").get_data(as_text=True)
    assert f"All {n} images answered" in html and progress(html) is None
    assert progress(c.get(f"/r/{r1.token}?back=1").get_data(as_text=True)) == (n, n)


def forbidden_strings(study):
    """Everything the key knows that a reader must never see."""
    key = load_key(study)
    out = {"key.json", "private", "origin", "pix2pix", "stargan", "study.sqlite", *FINDINGS}
    for e in key.values():
        out.add(Path(e["origin"]["file"]).name)
        out.add(Path(e["origin"]["file"]).stem)
        out.add(e["origin"]["source_image"])
    return out


def test_key_never_in_pages_urls_or_headers(study, app_and_readers):
    app, r1, _ = app_and_readers
    order = load_study(study)["order"]
    c = app.test_client()
    seen = []
    for pos in range(len(order)):
        resp = c.get(f"/r/{r1.token}" + ("?back=1" if pos % 5 == 4 else ""))
        html = resp.get_data(as_text=True)
        seen += [html, str(resp.headers)]
        src = image_src(html)
        img = c.get(src)
        assert img.status_code == 200 and img.mimetype == "image/png"
        assert img.data == paths(study).image(src.rsplit("/", 1)[1]).read_bytes()
        assert "Last-Modified" not in img.headers and "ETag" not in img.headers
        seen += [src, str(img.headers)]
        if pos % 5 == 4:  # a trip back: answer the last image again, then continue
            resp = answer(c, r1.token, progress(html)[0] - 1, "fake")
            seen.append(resp.headers["Location"])
            html = c.get(f"/r/{r1.token}").get_data(as_text=True)
            seen.append(html)
        resp = answer(c, r1.token, progress(html)[0] - 1, "real" if pos % 2 else "fake")
        seen += [resp.headers["Location"], resp.get_data(as_text=True)]
    seen.append(c.get(f"/r/{r1.token}").get_data(as_text=True))
    seen += [c.get("/").get_data(as_text=True), c.get("/static/study.js").get_data(as_text=True)]
    blob = "\n".join(seen).lower()
    leaked = sorted(s for s in forbidden_strings(study) if s.lower() in blob)
    assert leaked == []
    for url in ("/study.json", "/private/key.json", "/key.json", "/study.sqlite", "/build_report.json"):
        assert c.get(url).status_code == 404


def test_second_reader_cannot_read_or_change_first(study, app_and_readers):
    app, r1, r2 = app_and_readers
    order = load_study(study)["order"]
    c = app.test_client()
    for pos, value in enumerate(["real", "fake", "real"]):
        answer(c, r1.token, pos, value)
    html = c.get(f"/r/{r2.token}").get_data(as_text=True)
    assert progress(html) == (1, len(order)) and "Alice" not in html and "Bob" in html
    back = c.get(f"/r/{r2.token}?back=1").get_data(as_text=True)  # Bob has no last answer to see
    assert progress(back) == (1, len(order)) and "chosen" not in back
    # Bob cannot write Alice's positions; his own first answer lands in his rows only
    assert answer(c, r2.token, 2, "fake").status_code == 409
    assert answer(c, r2.token, 0, "fake").status_code == 303
    with sqlite3.connect(paths(study).db) as conn:
        alice = conn.execute("SELECT position, answer FROM answers WHERE reader_id=? ORDER BY position",
                             (r1.id,)).fetchall()
        bob = conn.execute("SELECT position, answer FROM answers WHERE reader_id=?", (r2.id,)).fetchall()
    assert alice == [(0, "real"), (1, "fake"), (2, "real")] and bob == [(0, "fake")]
    # a made-up or truncated token reaches nothing
    for bad in ("x" * 24, r1.token[:-1], r1.token + "A", "", "..", "%2e%2e"):
        assert c.get(f"/r/{bad}").status_code == 404
        assert answer(c, bad, 3, "real").status_code in (404, 405)
        assert c.get(f"/r/{bad}/image/{order[0]}").status_code == 404


TRAVERSALS = [
    "/image/../../key.json",
    "/image/..%2f..%2fprivate%2fkey.json",
    "/image/%2e%2e/%2e%2e/private/key.json",
    "/image/%2e%2e%2f%2e%2e%2fprivate%2fkey.json",
    "/r/{tok}/image/../../private/key.json",
    "/r/{tok}/image/..%2f..%2fprivate%2fkey.json",
    "/r/{tok}/image/%2e%2e%2fprivate%2fkey.json",
    "/r/{tok}/image/%252e%252e%252fprivate%252fkey.json",
    "/r/{tok}/image/..%5c..%5cprivate%5ckey.json",
    "/r/{tok}/image/{id}%2f..%2f..%2fprivate%2fkey.json",
    "/r/{tok}/image/{id}.png",
    "/r/{tok}/image/%2fetc%2fpasswd",
    "/r/{tok}/image/study",
    "/static/../private/key.json",
    "/static/..%2f..%2fprivate%2fkey.json",
    "/static/%2e%2e/%2e%2e/%2e%2e/private/key.json",
    "//private/key.json",
]


def _check_refused(status: int, body: bytes, key_text: bytes):
    assert status in (400, 404, 405, 308), status
    assert b'"items"' not in body and key_text[:40] not in body


def test_path_traversal_refused_test_client(study, app_and_readers):
    app, r1, _ = app_and_readers
    order = load_study(study)["order"]
    key_text = paths(study).key.read_bytes()
    c = app.test_client()
    for t in TRAVERSALS:
        url = t.format(tok=r1.token, id=order[0])
        resp = c.get(url)
        _check_refused(resp.status_code, resp.data, key_text)


def test_answers_survive_sigkill_and_traversal_on_live_server(study, server_factory):
    r1 = study_db.add_reader(paths(study).db, "Alice")
    order = load_study(study)["order"]
    key_text = paths(study).key.read_bytes()
    proc, port = server_factory(study)
    base = f"http://127.0.0.1:{port}"
    for pos, value in enumerate(["real", "fake", "fake", "real"]):
        data = urllib.parse.urlencode({"pos": pos, "answer": value}).encode()
        with urllib.request.urlopen(f"{base}/r/{r1.token}/answer", data=data, timeout=10) as resp:
            assert progress(resp.read().decode()) == (pos + 2, len(order))  # followed the 303
    # raw requests: no client-side normalisation of '..' or of encoded slashes
    for t in TRAVERSALS:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", t.format(tok=r1.token, id=order[0]))
        resp = conn.getresponse()
        _check_refused(resp.status, resp.read(), key_text)
        conn.close()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    _, port2 = server_factory(study)
    with urllib.request.urlopen(f"http://127.0.0.1:{port2}/r/{r1.token}", timeout=10) as resp:
        html = resp.read().decode()
    assert progress(html) == (5, len(order)) and order[4] in image_src(html)
    conn = study_db.connect(paths(study).db)
    try:
        assert list(study_db.reader_answers(conn, r1.id).values()) == ["real", "fake", "fake", "real"]
    finally:
        conn.close()


def test_server_binds_loopback_by_default(study, server_factory):
    from cxr_keras.study.app import is_loopback

    proc, port = server_factory(study)
    assert f"on http://127.0.0.1:{port}/" in proc.log.read_text()  # the banner names the bound address
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
