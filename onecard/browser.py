"""A headless Chromium for looking at the holder screen: the demo's screenshots, the
browser tests and ``bench/screen.py`` (the kiosk itself runs its own full-screen browser,
see docs/screen.md).

The browser is the system's (Debian's ``chromium``), driven by Playwright; nothing is
downloaded. The flags keep a headless Chromium from reaching for Google's services, which a
closed network refuses many times a second, and let spoken prompts play without a click, as
a kiosk's browser is set up to.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from terminal.errors import OneCardError

CHROMIUM_ARGS = (
    "--no-sandbox",  # the terminal runs as root in tests and demos; the page is our own
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--autoplay-policy=no-user-gesture-required",
    "--mute-audio",
)

LAYOUTS = {"kiosk": (1920, 1080), "validator": (800, 480)}
"""The two screens the page is designed for: gate kiosks and counters, bus validators."""


class BrowserUnavailable(OneCardError):
    """No Chromium or no Playwright on this machine."""

    code = "browser_unavailable"


def find_chromium() -> str:
    """The system Chromium's path (``ONECARD_CHROMIUM`` overrides); raises
    :class:`BrowserUnavailable` with what to install."""
    wanted = os.environ.get("ONECARD_CHROMIUM")
    for candidate in (wanted, "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise BrowserUnavailable("no Chromium found: apt-get install chromium")


def launch(playwright: Any, headless: bool = True) -> Any:
    """Start the system Chromium under ``playwright`` (a ``sync_playwright()`` object)."""
    return playwright.chromium.launch(
        executable_path=find_chromium(), args=list(CHROMIUM_ARGS), headless=headless
    )


def new_page(browser: Any, layout: str = "kiosk") -> Any:
    """A page in a fresh context the size of ``layout``. The context bypasses the page's
    Content-Security-Policy so tests and benchmarks may evaluate script in it; the policy
    itself is checked over HTTP."""
    width, height = LAYOUTS[layout]
    context = browser.new_context(
        viewport={"width": width, "height": height}, bypass_csp=True, device_scale_factor=1
    )
    return context.new_page()


def sync_playwright() -> Any:
    """Playwright's synchronous entry point; raises :class:`BrowserUnavailable` when the
    package is missing."""
    try:
        from playwright.sync_api import sync_playwright as start
    except ImportError:
        raise BrowserUnavailable("Playwright is missing: pip install playwright") from None
    return start()
