"""Which voice clip the page plays for a text, and the clip files the server hands out.

:class:`ClipIndex` sits between the screen hub and a
:class:`~terminal.screen.voice.VoiceCatalog`: the hub asks :meth:`ClipIndex.url` for the
clip of what the screen says now (a name derived from the text, known at once); the clip is
rendered in the background if the build did not pre-render it, and :meth:`ClipIndex.file`
renders it on the spot if the page asks before that finished. Only texts the screen itself
produced can be rendered: a request for any other name is refused, so a page cannot make the
terminal run the synthesiser on arbitrary input. The screen's own prompts (what to do, busy,
staff calls) are kept in the catalog's cache like the fixed holder messages.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import OrderedDict
from pathlib import Path

from terminal.errors import OneCardError
from terminal.screen.model import LANGS, all_prompt_texts
from terminal.screen.voice import VoiceCatalog, spoken_text

log = logging.getLogger(__name__)

MAX_KNOWN = 512
"""Texts remembered for on-demand rendering; the screen has about a hundred fixed ones."""


class ClipIndex:
    """Clip names for texts, and their files (rendered on demand)."""

    def __init__(self, catalog: VoiceCatalog) -> None:
        self.catalog = catalog
        catalog.keep(screen_prompts())
        self._known: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._lock = threading.Lock()
        self._todo: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._worker = threading.Thread(target=self._render_loop, name="onecard-voice", daemon=True)
        self._worker.start()

    def url(self, lang: str, text: str) -> str | None:
        """The page's address of the clip saying ``text`` in ``lang`` (None: nothing to say)."""
        if not text:
            return None
        name = self.catalog.clip_name(lang, text)
        with self._lock:
            fresh = name not in self._known
            self._known[name] = (lang, text)
            self._known.move_to_end(name)
            while len(self._known) > MAX_KNOWN:
                self._known.popitem(last=False)
        if fresh and self.catalog.path(name) is None:
            self._todo.put((lang, text))
        return f"/voice/{name}"

    def file(self, name: str) -> Path | None:
        """The clip file for ``name`` (rendering it now if needed), or None when the name is
        not one of the screen's or the synthesiser failed."""
        path = self.catalog.path(name)
        if path is not None:
            return path
        with self._lock:
            known = self._known.get(name)
        if known is None:
            return None
        try:
            return self.catalog.render(*known)
        except OneCardError as error:
            log.warning("voice clip not rendered: %s", error.reason)
            return None

    def close(self) -> None:
        self._todo.put(None)
        self._worker.join(timeout=5)

    def _render_loop(self) -> None:
        while True:
            item = self._todo.get()
            if item is None:
                return
            try:
                self.catalog.render(*item)
            except OneCardError as error:
                log.warning("voice clip not rendered: %s", error.reason)


def screen_prompts() -> list[tuple[str, str]]:
    """Every ``(lang, spoken text)`` of the screen's own prompts, as the hub asks for them."""
    return [
        (lang, spoken_text(getattr(texts, lang), "", lang))
        for texts in all_prompt_texts()
        for lang in LANGS
    ]
