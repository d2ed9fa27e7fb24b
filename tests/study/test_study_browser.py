"""The real page in headless Chromium (Playwright + Debian's chromium): click, key, reload, resume."""
from __future__ import annotations

import re
import threading

import pytest

from cxr_keras.study import db as study_db
from cxr_keras.study.app import create_app
from cxr_keras.study.layout import load_study, paths

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def live_app(study):
    """The Flask app on a free localhost port in a background thread."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, create_app(study), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


@pytest.mark.slow
def test_click_key_reload_resume_in_chromium(study, live_app, chromium_executable):
    sync_api = pytest.importorskip("playwright.sync_api")
    reader = study_db.add_reader(paths(study).db, "Alice")
    order = load_study(study)["order"]
    n = len(order)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(20_000)
            expect = sync_api.expect

            def at(number: int) -> None:
                expect(page.locator("#progress")).to_have_text(f"Image {number} of {n}")
                src = page.locator("#study-image").get_attribute("src")
                assert src.endswith(f"/image/{order[number - 1]}")
                page.wait_for_function("document.getElementById('study-image').naturalWidth > 0")

            page.goto(f"{live_app}/r/{reader.token}")
            at(1)
            page.click("#answer-real")  # a click
            at(2)
            page.keyboard.press("f")  # a key
            at(3)
            page.keyboard.press("r")
            at(4)
            page.reload()  # resume where we stopped
            at(4)
            page.keyboard.press("b")  # back to the last answer, shown as chosen, then changed by key
            at(3)
            expect(page.locator("#answer-real")).to_have_class(re.compile(r"\bchosen\b"))
            expect(page.locator("#changing")).to_contain_text("was Real")
            page.keyboard.press("f")
            at(4)
            # a fresh page (a reader coming back later) resumes at the same image
            page2 = browser.new_page()
            page2.goto(f"{live_app}/r/{reader.token}")
            expect(page2.locator("#progress")).to_have_text(f"Image 4 of {n}")
        finally:
            browser.close()
    conn = study_db.connect(paths(study).db)
    try:
        assert list(study_db.reader_answers(conn, reader.id).items()) == [
            (order[0], "real"), (order[1], "fake"), (order[2], "fake")]
    finally:
        conn.close()
