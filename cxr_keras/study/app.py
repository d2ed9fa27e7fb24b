"""The reader web app (Flask): one image at a time, Real or Fake, by click or key, resumable.

A reader is known only by the random token in their personal link. Pages show the opaque image id
and progress, never the source or finding; images are served by looking the id up in the study's
order (never by joining a user-supplied path), and nothing outside STUDY_DIR/images is reachable.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import re
import sqlite3
import sys
from pathlib import Path

from flask import Flask, Response, abort, g, redirect, render_template, request, url_for

from cxr_keras.study import db as study_db
from cxr_keras.study.layout import ID_PATTERN, load_study, paths

PACKAGE_DIR = Path(__file__).resolve().parent
TOKEN_IN_PATH = re.compile(r"(/r/)[^/\s?#\"']+")


def mask_tokens(text: str) -> str:
    """``/r/<token>`` → ``/r/***``: a reader's token is their password, so no log line may hold it."""
    return TOKEN_IN_PATH.sub(r"\1***", text)


class _MaskTokens(logging.Filter):
    """Masks reader tokens in the log records of Werkzeug's access log and of the app."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = mask_tokens(record.getMessage()), None
        return True


TOKEN_FILTER = _MaskTokens()


def create_app(study_dir: os.PathLike) -> Flask:
    """A Flask app serving the study in ``study_dir`` (reads study.json once, the DB per request)."""
    p = paths(study_dir)
    study = load_study(p.root)
    if not p.db.is_file():
        raise study_db.StudyDBError(f"{p.db}: study database not found (run `reader_study.py build`)")
    order = list(study["order"])
    valid_ids = frozenset(order)
    total = len(order)

    app = Flask("cxr_keras.study", template_folder=str(PACKAGE_DIR / "templates"),
                static_folder=str(PACKAGE_DIR / "static"), static_url_path="/static")
    app.config.update(MAX_CONTENT_LENGTH=4096, JSON_SORT_KEYS=False)
    app.logger.addFilter(TOKEN_FILTER)

    def conn() -> sqlite3.Connection:
        if "conn" not in g:
            g.conn = study_db.connect(p.db)
        return g.conn

    @app.teardown_appcontext
    def _close(_exc) -> None:
        c = g.pop("conn", None)
        if c is not None:
            c.close()

    @app.after_request
    def _headers(resp: Response) -> Response:
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"  # the token is in the URL
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["Content-Security-Policy"] = (
            "default-src 'none'; img-src 'self'; script-src 'self'; style-src 'self'; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
        return resp

    def reader_or_404(token: str) -> study_db.Reader:
        reader = study_db.reader_by_token(conn(), token)
        if reader is None:
            abort(404)
        return reader

    @app.get("/")
    def index():
        return render_template("index.html")

    @app.get("/r/<token>")
    def reader_page(token: str):
        reader = reader_or_404(token)
        n = study_db.answered_count(conn(), reader.id)
        back = request.args.get("back") == "1" and n > 0
        pos = n - 1 if back else n
        if pos >= total:
            return render_template("done.html", token=token, total=total, reader=reader.name)
        image_id = order[pos]
        return render_template(
            "reader.html", token=token, reader=reader.name, pos=pos, number=pos + 1, total=total,
            answered=n, image_url=url_for("image", token=token, image_id=image_id),
            current=study_db.get_answer(conn(), reader.id, pos) if back else None,
            can_go_back=(n > 0 and not back), percent=round(100.0 * n / total, 1) if total else 100.0)

    @app.post("/r/<token>/answer")
    def answer(token: str):
        reader = reader_or_404(token)
        value = request.form.get("answer", "")
        try:
            pos = int(request.form.get("pos", ""))
        except ValueError:
            abort(400)
        if value not in study_db.ANSWERS or not 0 <= pos < total:
            abort(400)
        try:
            study_db.record_answer(conn(), reader.id, pos, order[pos], value)
        except study_db.OutOfOrder:
            return render_template("stale.html", token=token), 409
        return redirect(url_for("reader_page", token=token), code=303)

    @app.get("/r/<token>/image/<image_id>")
    def image(token: str, image_id: str):
        reader_or_404(token)
        if not ID_PATTERN.match(image_id) or image_id not in valid_ids:
            abort(404)
        try:
            data = p.image(image_id).read_bytes()
        except OSError:
            abort(404)
        # No Last-Modified / ETag: file times and hashes must not hint at the image's source.
        return Response(data, mimetype="image/png")

    return app


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def reader_links(study_dir: os.PathLike, base_url: str) -> list:
    """(name, personal link) for every reader: what the study organiser hands out."""
    return [(r.name, f"{base_url.rstrip('/')}/r/{r.token}") for r in study_db.list_readers(paths(study_dir).db)]


def serve(study_dir: os.PathLike, host: str = "127.0.0.1", port: int = 8000,
          out=sys.stderr) -> None:
    """Run the app with Werkzeug's threaded server until interrupted."""
    from werkzeug.serving import make_server

    app = create_app(study_dir)
    if not is_loopback(host):
        print(f"warning: serving on {host}: readers' links travel unencrypted (no TLS); "
              "prefer 127.0.0.1 behind an SSH tunnel or a TLS proxy", file=out)
    logging.getLogger("werkzeug").addFilter(TOKEN_FILTER)  # the access log: tokens masked
    server = make_server(host, port, app, threaded=True)
    print(f"reader study on http://{host}:{server.server_port}/ (links: reader_study.py links STUDY_DIR)",
          file=out, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
