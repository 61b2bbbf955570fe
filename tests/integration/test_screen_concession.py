"""A concession card on the real holder page (screen.js in Debian's headless Chromium): its
name shown apart from the outcome, its own chime before the words, and the prompts after
them (docs/transit.md "Rides", article 21)."""

from __future__ import annotations

import dataclasses

import pytest

from onecard.browser import new_page
from terminal.outputs import Outcome, message_for
from terminal.screen.hub import ScreenHub
from terminal.screen.model import ScreenSettings
from terminal.screen.server import ScreenServer

pytestmark = [pytest.mark.integration, pytest.mark.browser]

WAIT_MS = 30_000


def test_an_elderly_card_is_named_and_chimed_and_an_adult_card_is_not(chromium) -> None:
    # A clip address for every spoken text (the page fetches it and finds none: the chime
    # and the words on screen are what is checked, not espeak).
    hub = ScreenHub(
        ScreenSettings(result_seconds=600.0, reset_seconds=600.0),
        voice_url=lambda lang, text: f"/voice/{abs(hash(text))}.wav",
    )
    server = ScreenServer(hub, port=0)
    page = new_page(chromium, "validator")
    try:
        page.goto(server.url)
        page.wait_for_function("() => window.__onecard.state !== null", timeout=WAIT_MS)
        # The page speaks only once the holder has touched it (autoplay), as a kiosk's does.
        page.mouse.click(5, 5)
        elderly = dataclasses.replace(
            message_for(Outcome.ACCEPTED, "ok", 0, 300), concession="4", notice="low_balance"
        )
        hub.show(elderly)
        page.wait_for_function(
            "() => document.getElementById('concession').textContent === '老年卡'",
            timeout=WAIT_MS,
        )
        assert page.is_visible("#concession")
        assert "余额不足，请及时充值" in page.inner_text("#detail")
        page.wait_for_function("() => (window.__onecard.chimes || 0) === 1", timeout=WAIT_MS)
        adult = dataclasses.replace(message_for(Outcome.ACCEPTED, "ok", 200, 800), concession="3")
        hub.show(adult)
        page.wait_for_function("() => window.__onecard.spoken.length >= 2", timeout=WAIT_MS)
        assert not page.is_visible("#concession")
        assert page.evaluate("window.__onecard.chimes") == 1
    finally:
        page.context.close()
        server.close()
        hub.close()
