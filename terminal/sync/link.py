"""The back office link of a running terminal: uploads, staff-call events, documents.

:func:`back_office_link` is the background work :class:`terminal.runtime.loop.TerminalRuntime`
runs in a thread of its own: the uploader's and the event sender's threads (each retries
with back-off through outages) and the periodic document downloads, until the stop event.
All three talk through one :class:`terminal.sync.client.BackOfficeClient`.

Nothing a back office sends can end the link: a document that does not parse or verify is
refused with a typed error, logged, and the previous one stays in force (the downloader's
report); anything else that goes wrong in a round is logged and the next round tries again.
Only the stop event ends it - the uploader and the event sender go on meanwhile.
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
    with back-off through outages) and periodic document downloads, until the stop event.
    ``wake_sender`` receives the event sender's ``notify`` (the holder screen calls it)."""

    def sync(stop: threading.Event) -> None:
        from terminal.sync.client import BackOfficeClient
        from terminal.sync.downloads import Downloader
        from terminal.sync.events import EventSender
        from terminal.sync.uploader import Uploader

        client = BackOfficeClient(credentials, clock)
        uploader = Uploader(journal, credentials, clock, client=client)
        sender = EventSender(events, credentials, clock, client=client)
        wake_sender.append(sender.notify)
        downloader = Downloader(store, client.fetch, clock)
        uploader.start()
        sender.start()
        try:
            while not stop.is_set():
                download_round(downloader)
                stop.wait(interval)
        finally:
            wake_sender.clear()
            uploader.stop()
            sender.stop()
            client.close()

    return sync


def download_round(downloader: Any) -> None:
    """One round of document downloads (the downloader logs each refusal); whatever else
    fails is logged, never raised - the link, its uploader and its event sender must
    outlive any document."""
    try:
        downloader.run_once()
    except OneCardError as error:  # an outage: the next round tries again
        log.warning("document download failed: %s: %s", error.code, error.reason)
    except Exception:
        log.exception("document download failed unexpectedly; the next round tries again")
