"""The back office link of a running terminal: uploads, staff-call events, documents.

:class:`BackOfficeLink` is three workers sharing one
:class:`terminal.sync.client.BackOfficeClient`: the uploader's thread and the event sender's
thread (each retries with back-off through outages), and the periodic document downloads.
The runtime runs each worker under its supervisor (:mod:`terminal.runtime.supervisor`), so
a worker that dies is logged, shown and restarted; :func:`back_office_link` runs all of
them in one caller's thread instead (tools and tests).

Nothing a back office sends can end the link: a document that does not parse or verify is
refused with a typed error, logged, and the previous one stays in force (the downloader's
report); anything else that goes wrong in a round is logged and the next round tries again.
Only the stop event ends it - the uploader and the event sender go on meanwhile.

``on_state(up, reason)`` hears whether the back office answers, as the uploader last found
it (checked every :data:`WATCH_INTERVAL` seconds): the status page's ``backoffice`` link.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from terminal.errors import OneCardError
from terminal.host.clock import Clock
from terminal.sync.heartbeat import DEFAULT_HEARTBEAT_INTERVAL, HeartbeatSender

log = logging.getLogger(__name__)

WATCH_INTERVAL = 1.0
"""Seconds between two looks at a sender's thread and its last error."""
Work = Callable[[threading.Event], None]


class SenderStopped(RuntimeError):
    """A sender's thread ended although nobody stopped it (its supervisor restarts it)."""


class BackOfficeLink:
    """The uploader, the event sender and the downloader of one terminal, on one client.
    ``wake_sender`` receives the event sender's ``notify`` (the holder screen calls it)."""

    def __init__(
        self,
        journal: Any,
        events: Any,
        wake_sender: list[Callable[[], None]],
        credentials: Any,
        store: Any,
        clock: Clock,
        interval: float,
        on_state: Callable[[bool, str], None] | None = None,
        *,
        heartbeat: Callable[[], Mapping[str, Any]] | None = None,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        documents: Iterable[str] | None = None,
    ) -> None:
        from terminal.sync.client import BackOfficeClient
        from terminal.sync.downloads import Downloader
        from terminal.sync.events import EventSender
        from terminal.sync.uploader import Uploader

        self.interval = interval
        self.client = BackOfficeClient(credentials, clock)
        self.uploader = Uploader(journal, credentials, clock, client=self.client)
        self.sender = EventSender(events, credentials, clock, client=self.client)
        self.downloader = (
            Downloader(store, self.client, clock)
            if documents is None
            else Downloader(store, self.client, clock, documents=documents)
        )
        self._wake_sender = wake_sender
        wake_sender.append(self.sender.notify)
        self._on_state = on_state
        # The heartbeat (docs/fleet.md) rides the same signed connection: the status
        # snapshot it samples is the runtime's, so only a runtime gives one.
        self.heartbeat = (
            HeartbeatSender(
                credentials.terminal_id, heartbeat, self.client.post, clock, heartbeat_interval
            )
            if heartbeat is not None
            else None
        )

    def workers(self) -> list[tuple[str, Work]]:
        """``(name, work)`` of the three workers (four with a heartbeat), for a supervisor."""
        return [
            ("backoffice-uploader", self._keep_running(self.uploader, self._report)),
            ("backoffice-events", self._keep_running(self.sender, None)),
            ("backoffice-documents", self.download),
            *([("backoffice-heartbeat", self.heartbeat.run)] if self.heartbeat else []),
        ]

    def download(self, stop: threading.Event) -> None:
        """Download the documents every ``interval`` seconds until ``stop``."""
        while not stop.is_set():
            download_round(self.downloader)
            # Longer than the interval only when the back office asked (Retry-After).
            stop.wait(self.downloader.next_delay(self.interval))

    def close(self) -> None:
        """Stop both senders and drop the connection."""
        self._wake_sender.clear()
        self.uploader.stop()
        self.sender.stop()
        self.client.close()

    def _report(self, error: str | None) -> None:
        if self._on_state is not None:
            self._on_state(error is None, error or "")

    @staticmethod
    def _keep_running(sender: Any, report: Callable[[str | None], None] | None) -> Work:
        """A worker that starts ``sender``'s own thread and watches it: a thread that ended
        by itself is an error the supervisor sees (and restarts it with)."""

        def work(stop: threading.Event) -> None:
            sender.start()
            try:
                while not stop.wait(WATCH_INTERVAL):
                    if report is not None:
                        report(sender.last_error)
                    if not sender.running:
                        raise SenderStopped(f"the {sender.what} thread ended by itself")
            finally:
                if stop.is_set():
                    sender.stop()

        return work


def back_office_link(*parts: Any) -> Work:
    """The whole link as one function of the stop event, run in the caller's thread: the
    senders' own threads and the downloads, until the stop event (a tool's ``sync``, and
    tests; the runtime supervises :meth:`BackOfficeLink.workers` instead). ``parts``: the
    arguments of :class:`BackOfficeLink` (journal, events, wake_sender, credentials, store,
    clock, interval)."""

    def sync(stop: threading.Event) -> None:
        link = BackOfficeLink(*parts)
        link.uploader.start()
        link.sender.start()
        try:
            link.download(stop)
        finally:
            link.close()

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
