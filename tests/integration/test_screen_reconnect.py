"""The holder screen survives its server and its stalled clients (docs/screen.md), proven
through the real parts: a real ScreenServer on a loopback TCP port, a ScreenHub without any
card reader or pcscd, and Debian's headless Chromium running the real page (screen.js).

* The page reconnects by itself: when the server goes, the page says it is reconnecting
  (body class ``reconnecting``, ``#reconnecting`` shown, ``请稍候`` instead of the last
  outcome); when a new server comes back on the same port, the same page - never reloaded -
  gets its stream back and shows the next outcome pushed to the hub.
* Stalled clients never lock the page out: more raw ``GET /events`` connections than the
  hub has slots (:data:`~terminal.screen.hub.MAX_SUBSCRIBERS`), none of them reading, take
  every slot; a page loaded after them still gets the state and the next outcome (the oldest
  stream yields), and once the screen keeps talking the stalled streams end by the write
  time-out, giving their slots back.

Every wait is bounded by a deadline on a condition; no assertion is about a timing figure.
"""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from onecard.browser import new_page
from terminal.outputs import HolderMessage, Outcome
from terminal.screen.hub import MAX_SUBSCRIBERS, ScreenHub
from terminal.screen.model import ScreenSettings
from terminal.screen.server import ScreenServer

pytestmark = [pytest.mark.integration, pytest.mark.browser]

WAIT = 30.0
"""Seconds: the bound on every wait for a condition (never a sleep that is asserted on)."""
WAIT_MS = int(WAIT * 1000)
POLL = 0.05
"""Seconds between two looks at a condition polled from Python."""
STALLED = MAX_SUBSCRIBERS + 8
"""Raw connections that ask for a stream and never read: more than there are slots."""

OUTCOMES = [
    (Outcome.ACCEPTED, "ok"),
    (Outcome.REFUSED, "hotlisted"),
    (Outcome.REFUSED, "region_not_accepted"),
    (Outcome.REFUSED, "category_not_accepted"),
]


class Screen:
    """A hub (no readers, no runtime) and the servers started on it, closed at the end."""

    def __init__(self) -> None:
        # Results stay up far longer than any test: what is on screen is what was pushed.
        self.hub = ScreenHub(ScreenSettings(result_seconds=600.0, reset_seconds=600.0))
        self.servers: list[ScreenServer] = []

    def serve(self, port: int = 0) -> ScreenServer:
        """A new server on ``port``; a port just released may take a moment to bind again."""
        deadline = time.monotonic() + WAIT
        while True:
            try:
                server = ScreenServer(self.hub, port=port)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(POLL)
                continue
            self.servers.append(server)
            return server

    def push(self, index: int) -> str:
        """Show outcome ``index`` (cycling through :data:`OUTCOMES`); its Chinese title."""
        outcome, reason = OUTCOMES[index % len(OUTCOMES)]
        self.hub.show(HolderMessage(outcome, "", "", reason=reason))
        state: dict[str, Any] = json.loads(self.hub.state_json())
        title: str = state["result"]["title"]["zh"]
        return title

    def close(self) -> None:
        for server in self.servers:
            server.close()
        self.hub.close()


@pytest.fixture
def screen() -> Iterator[Screen]:
    made = Screen()
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def pages(chromium: Any) -> Iterator[Callable[[], Any]]:
    """``open_page()``: a new kiosk-sized page, its context closed at the end."""
    opened: list[Any] = []

    def open_page() -> Any:
        page = new_page(chromium, "kiosk")
        opened.append(page)
        return page

    yield open_page
    for page in opened:
        page.context.close()


def wait_title(page: Any, text: str) -> None:
    page.wait_for_function(
        "t => document.getElementById('title').textContent === t", arg=text, timeout=WAIT_MS
    )


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"not within {WAIT:.0f} s: {what}"
        time.sleep(POLL)


def reconnecting(page: Any) -> bool:
    shown: bool = page.evaluate(
        "document.body.classList.contains('reconnecting') &&"
        " !document.getElementById('reconnecting').hidden"
    )
    return shown


def test_the_page_reconnects_to_a_restarted_server_by_itself(
    screen: Screen, pages: Callable[[], Any], artifacts: Path
) -> None:
    first = screen.serve()
    port = first.port
    page = pages()
    page.goto(first.url)
    accepted = screen.push(0)
    wait_title(page, accepted)
    assert not reconnecting(page)
    # Marks this very document: a reload would lose it.
    page.evaluate("window.__sameDocument = true")
    connects = page.evaluate("window.__onecard.connects")

    # The server goes (a runtime restarting): its streams end, the port refuses.
    first.close()
    page.wait_for_function(
        "document.body.classList.contains('reconnecting')"
        " && !document.getElementById('reconnecting').hidden",
        timeout=WAIT_MS,
    )
    # Calm, and not the last holder's outcome: "please wait" in place of it.
    assert page.text_content("#reconnecting") == "正在连接终端…"
    assert page.text_content("#title") == "请稍候"
    assert page.get_attribute("#panel", "data-outcome") == "none"
    page.screenshot(path=str(artifacts / "reconnecting-kiosk.png"))
    assert page.evaluate("window.__onecard.connects") > connects, "the page never tried again"

    # A new server on the same port, the same hub: the page comes back without a reload.
    second = screen.serve(port)
    assert second.port == port
    refused = screen.push(1)
    wait_title(page, refused)
    page.wait_for_function(
        "!document.body.classList.contains('reconnecting')"
        " && document.getElementById('reconnecting').hidden",
        timeout=WAIT_MS,
    )
    assert page.get_attribute("#panel", "data-outcome") == "refused"
    assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"
    assert screen.hub.subscribers == 1

    # And it keeps following the hub on the new stream.
    third = screen.push(2)
    wait_title(page, third)


def stalled_stream(port: int) -> socket.socket:
    """A connection that asks for the event stream and then never reads a byte (a receive
    buffer as small as the kernel allows, so that it stalls soon)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    sock.settimeout(WAIT)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    return sock


def answered(socks: list[socket.socket]) -> bool:
    """Every one of ``socks`` has had an answer (a stream's head, or its end): readable,
    looked at without reading."""
    readable, _, _ = select.select(socks, [], [], 0)
    return len(readable) == len(socks)


def test_stalled_clients_never_lock_the_page_out(screen: Screen, pages: Callable[[], Any]) -> None:
    server = screen.serve()
    first = pages()
    first.goto(server.url)
    title = screen.push(0)
    wait_title(first, title)

    stalled: list[socket.socket] = []
    try:
        for _ in range(STALLED):
            stalled.append(stalled_stream(server.port))
        # The server has taken every one of them in, and every slot is held.
        wait_until(lambda: answered(stalled), "every stalled connection answered")
        wait_until(lambda: screen.hub.subscribers == MAX_SUBSCRIBERS, "every screen slot taken")

        # A page loaded now gets the state, and the next outcome: the oldest stream yields.
        second = pages()
        second.goto(server.url)
        wait_title(second, title)
        assert second.evaluate("window.__onecard.state !== null")
        title = screen.push(1)
        wait_title(second, title)
        # The page that was open before them was the oldest stream: it was cut off for
        # them, and came back by itself.
        wait_title(first, title)
        assert first.evaluate("window.__onecard.connects") >= 2

        # The screen keeps talking: the stalled streams fill their buffers and end by the
        # write time-out, until only the two pages hold a slot.
        pushed = 1
        deadline = time.monotonic() + 2 * WAIT
        while screen.hub.subscribers > 2:
            assert time.monotonic() < deadline, (
                f"stalled streams still hold {screen.hub.subscribers - 2} slots"
            )
            for _ in range(64):
                pushed += 1
                screen.push(pushed)
            time.sleep(POLL)
        pushed += 1
        title = screen.push(pushed)
        for page in (first, second):
            wait_title(page, title)
            assert not reconnecting(page)
        assert screen.hub.subscribers == 2
    finally:
        for sock in stalled:
            sock.close()
