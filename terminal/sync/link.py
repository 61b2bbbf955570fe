"""The back office link of a running terminal: uploads, staff-call events, documents.

:func:`back_office_link` is the background work :class:`terminal.runtime.loop.TerminalRuntime`
runs in a thread of its own: the uploader's and the event sender's threads (each retries with
back-off through outages) and the periodic document downloads, until the stop event.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from terminal.errors import OneCardError
from terminal.host.clock import Clock

log = logging.getLogger(__name__)


def back_office_link(
    journal: Any,
    events: Any,
    wake_sender: list[Callable[[], None]],
    credentials: Any,
    store: Any,
    clock: Clock,
    interval: float,
) -> Callable[[threading.Event], None]:
    """The back office link: the uploader's and the event sender's own threads (they retry
    with back-off through outages) and periodic document downloads, until the stop event."""

    def sync(stop: threading.Event) -> None:
        from terminal.sync.downloads import Downloader
        from terminal.sync.events import EventSender
        from terminal.sync.uploader import IngestClient, Uploader

        uploader = Uploader(journal, credentials, clock)
        sender = EventSender(events, credentials, clock)
        wake_sender.append(sender.notify)
        client = IngestClient(credentials, clock)
        downloader = Downloader(store, client.fetch, clock)
        uploader.start()
        sender.start()
        try:
            while not stop.is_set():
                try:
                    downloader.run_once()
                except OneCardError as error:  # an outage: the next round tries again
                    log.warning("document download failed: %s", error.reason)
                stop.wait(interval)
        finally:
            wake_sender.clear()
            uploader.stop()
            sender.stop()
            client.close()

    return sync
