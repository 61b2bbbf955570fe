"""Assistance through the pages, as people use them: the holder turns assistance on and
calls staff on the holder screen; the operator sees the call on the status page and
acknowledges it; the holder's screen says staff are coming; the back office receives both
events. Voice clips are played for outcomes. Headless Chromium, a real runtime, a real back
office on loopback (SQLite)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.backoffice_storage import storage_for
from test_screen_browser import serious_violations

from backoffice.cli import format_credentials
from backoffice.keys import new_token_key
from backoffice.publish import generate_publication_key
from backoffice.server import BackOffice
from onecard.browser import new_page
from onecard.runtime import build_runtime
from terminal.outputs import RecordingOutputs
from terminal.runtime.config import load_config
from terminal.runtime.loop import TerminalRuntime
from terminal.runtime.transaction import CodePresented

pytestmark = [pytest.mark.integration, pytest.mark.browser]

TERMINAL = "GATE-ASSIST"
WAIT = 30.0  # seconds: a bound on waits, never a sleep


class NoReaders:
    """This terminal has no card readers: the test is about the pages."""

    def __init__(self, sink: object) -> None:
        pass

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


@pytest.fixture
def office(tmp_path: Path) -> Iterator[tuple[object, str]]:
    with storage_for("sqlite", tmp_path) as storage:
        key = generate_publication_key()
        running = BackOffice(storage, key).serve("127.0.0.1", 0)
        secret = os.urandom(32)
        storage.enrol(TERMINAL, secret, time.time())
        creds = tmp_path / "credentials.toml"
        creds.write_text(
            format_credentials(TERMINAL, secret, running.url, key, new_token_key(), None)
        )
        creds.chmod(0o600)
        try:
            yield storage, str(creds)
        finally:
            running.shutdown()


@pytest.fixture
def runtime(tmp_path: Path, office) -> Iterator[TerminalRuntime]:
    _, creds = office
    config = tmp_path / "terminal.toml"
    config.write_text(
        f"""
[terminal]
id = "{TERMINAL}"
profile = "gate"
service = "museum-entry"

[readers]
names = []

[backoffice]
credentials = "{creds}"
journal = "journal.db"
documents = "documents"
replay_cache = "replay.db"
sync_interval = 1

[status]
port = 0

[screen]
port = 0
complaint_phone = "12345"
complaint_url = "https://12345.cq.gov.cn/"
"""
    )
    built = build_runtime(
        load_config(config), outputs=RecordingOutputs(), watcher_factory=NoReaders
    )
    built.start_sources()
    thread = threading.Thread(target=built.run, daemon=True)
    thread.start()
    try:
        yield built
    finally:
        built.request_stop()
        thread.join(timeout=15)
        built.shutdown()


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_call_staff_reaches_operator_and_back_office(runtime, office, chromium, artifacts):
    storage, _ = office
    holder = new_page(chromium, "kiosk")
    operator = new_page(chromium, "kiosk")
    problems: list[str] = []
    try:
        holder.goto(runtime.screen_server.url)
        holder.wait_for_function("window.__onecard.state !== null")
        operator.goto(f"http://127.0.0.1:{runtime.status_server.port}/")
        operator.wait_for_selector("#calls")
        problems += [f"operator: {v}" for v in serious_violations(operator)]

        # Assistance: large print and voice on, a banner says so.
        holder.click("#btn-assist")
        holder.wait_for_function("document.body.classList.contains('large')")
        assert holder.is_visible("#assist-banner")
        assert holder.get_attribute("#btn-voice", "aria-pressed") == "true"
        problems += [f"holder assist: {v}" for v in serious_violations(holder)]

        # Call staff: the holder is told, the operator sees it.
        holder.click("#btn-call")
        holder.wait_for_function(
            "document.getElementById('call-banner').textContent === '已呼叫工作人员，请稍候'"
        )
        operator.wait_for_selector("[data-testid=ack-1]", timeout=WAIT * 1000)
        operator.screenshot(path=str(artifacts / "operator-call-waiting.png"))
        holder.screenshot(path=str(artifacts / "assist-staff-called-kiosk.png"))
        problems += [f"operator call: {v}" for v in serious_violations(operator)]

        operator.click("[data-testid=ack-1]")
        holder.wait_for_function(
            "document.getElementById('call-banner').textContent === '工作人员正在赶来'"
        )
        holder.screenshot(path=str(artifacts / "assist-staff-on-the-way-kiosk.png"))

        # The back office has both events, once each.
        def received() -> list[str]:
            return sorted(e["kind"] for e in storage.events(TERMINAL))

        wait_for(lambda: received() == ["call_acknowledged", "call_staff"], "the events")

        # A spoken prompt for an outcome: the page plays the clip the server renders.
        spoken = holder.evaluate("window.__onecard.spoken.length")
        runtime.submit(CodePresented("SOME TEXT", "test"))
        assert runtime.wait_for_outcomes(1, timeout=WAIT)
        holder.wait_for_function(
            "n => window.__onecard.spoken.length > n", arg=spoken, timeout=WAIT * 1000
        )
        clip = holder.evaluate("window.__onecard.spoken[window.__onecard.spoken.length - 1]")
        answer = holder.evaluate(
            "async u => { const r = await fetch(u); return [r.status, "
            "r.headers.get('content-type'), (await r.arrayBuffer()).byteLength]; }",
            clip,
        )
        assert answer[0] == 200 and answer[1] == "audio/wav" and answer[2] > 10_000, answer
    finally:
        holder.context.close()
        operator.context.close()
    assert not problems, "\n".join(problems)
