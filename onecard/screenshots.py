"""Pictures of the holder screen as a holder would see it, for the demo (``onecard demo``
leaves them in ``demo-screens/``) on machines with no display.

:class:`ScreenCamera` keeps one headless Chromium page per layout open on the screen's
address and, on :meth:`ScreenCamera.capture`, waits until every page has rendered the hub's
current state, then saves a PNG per layout.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from onecard.browser import LAYOUTS, launch, new_page, sync_playwright

log = logging.getLogger(__name__)


class ScreenCamera:
    """Screenshots of the screen at ``url`` into ``out_dir``, one per layout per capture.
    Raises :class:`onecard.browser.BrowserUnavailable` when there is no browser."""

    def __init__(self, url: str, out_dir: Path, layouts: tuple[str, ...] = tuple(LAYOUTS)) -> None:
        self.out_dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        self._playwright = sync_playwright().start()
        try:
            self._browser = launch(self._playwright)
            self._pages: dict[str, Any] = {}
            for layout in layouts:
                page = new_page(self._browser, layout)
                page.goto(url)
                self._pages[layout] = page
        except BaseException:
            self._playwright.stop()
            raise
        self.files: list[Path] = []

    def capture(self, name: str, seq: int, timeout: float = 10.0) -> list[Path]:
        """Wait until each page shows state ``seq`` (or later), then save
        ``<name>-<layout>.png``; the saved files."""
        saved = []
        for layout, page in self._pages.items():
            page.wait_for_function(
                "seq => Number(document.body.dataset.seq) >= seq", arg=seq, timeout=timeout * 1000
            )
            path = self.out_dir / f"{name}-{layout}.png"
            page.screenshot(path=str(path))
            saved.append(path)
        self.files += saved
        return saved

    def page(self, layout: str) -> Any:
        """The open page of ``layout`` (to press the holder's buttons)."""
        return self._pages[layout]

    def close(self) -> None:
        try:
            self._browser.close()
        finally:
            self._playwright.stop()

    def __enter__(self) -> ScreenCamera:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
