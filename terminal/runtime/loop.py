"""The event loop: one queue, one credential at a time, until told to stop.

Card events come from a card watcher (``drivers.pcsc.CardWatcher``: its own thread; it
survives a pcscd restart by itself), scans from each scanner's reader thread (a serial scanner
reconnects by itself after an unplug); all of them go into one queue, and the loop thread
takes them one by one and runs each credential to completion with
:class:`terminal.runtime.transaction.TransactionSteps`. A stop request (SIGTERM, SIGINT,
:meth:`TerminalRuntime.request_stop`) is seen between transactions: the current one
finishes, then the loop closes everything and returns.

The runtime takes ready objects; :func:`onecard.runtime.build_runtime`, the composition
root of ``onecard run``, opens them from a :class:`~terminal.runtime.config.RuntimeConfig`.
Tests and the demo may build a :class:`TerminalRuntime` directly, with no back office.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from terminal.devices.reader import (
    CardInserted,
    CardRemoved,
    ReaderAdded,
    ReaderRemoved,
    ServiceLost,
    ServiceRestored,
)
from terminal.devices.scanner import ScanEvent
from terminal.errors import OneCardError
from terminal.host.clock import Clock, SystemClock
from terminal.runtime.statuspage import RuntimeStatus, StatusServer
from terminal.runtime.transaction import (
    CardPresented,
    CodePresented,
    TransactionOutcome,
    TransactionSteps,
)

log = logging.getLogger(__name__)

POLL = 0.25
"""Seconds a blocked thread waits before looking at the stop flag again."""


class _Stop:
    """Queued to wake the loop when a stop is requested."""


@dataclass
class ReaderFilter:
    """Which readers hold holders' cards: ``names`` (empty: all) minus the PSAM slot."""

    names: tuple[str, ...] = ()
    psam: str = ""

    def wanted(self, reader: str) -> bool:
        if self.psam and reader == self.psam:
            return False
        return not self.names or reader in self.names


@dataclass
class TerminalRuntime:
    """The running terminal: the steps, the event sources, the status page.

    ``watcher_factory(sink)`` returns a started-on-``start()`` watcher (default: PC/SC's
    :class:`drivers.pcsc.CardWatcher`; None in ``sources`` means no card readers).
    ``closers`` run at shutdown, in reverse order (journal, secure module, uploader...).
    """

    steps: TransactionSteps
    status: RuntimeStatus
    watcher_factory: Callable[[Callable[[Any], None]], Any] | None = None
    scanners: list[Any] = field(default_factory=list)
    readers: ReaderFilter = field(default_factory=ReaderFilter)
    status_port: int | None = None
    clock: Clock = field(default_factory=SystemClock)
    closers: list[Callable[[], None]] = field(default_factory=list)
    background: list[Callable[[threading.Event], None]] = field(default_factory=list)
    """Functions run in their own threads until the stop event is set (document downloads)."""
    screen: Any = None
    """The holder screen's :class:`terminal.screen.hub.ScreenHub` (also among the outputs),
    told when a credential arrives so the holder sees the terminal is working."""
    screen_port: int | None = None
    """Serve the holder screen on 127.0.0.1 at this port (0: a free one; None: not served)."""
    voice_clips: Any = None
    """The :class:`terminal.screen.clips.ClipIndex` the screen server hands clips from."""

    def __post_init__(self) -> None:
        self._queue: queue.Queue[object] = queue.Queue()
        self._stop = threading.Event()
        self._done = threading.Condition()
        self.outcomes: list[TransactionOutcome] = []
        self.status_server: StatusServer | None = None
        self.screen_server: Any = None
        self._threads: list[threading.Thread] = []
        self._watcher: Any = None
        self._started = False

    # --- control ---------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Finish the current transaction, then stop (safe from a signal handler)."""
        self._stop.set()
        self._queue.put(_Stop())

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def submit(self, event: object) -> None:
        """Queue an event (a reader event, a :class:`ScanEvent`, or a presentation)."""
        self._queue.put(event)

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT request a stop (main thread only, as Python requires)."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.request_stop())

    def wait_for_outcomes(self, count: int, timeout: float) -> bool:
        """Block until at least ``count`` transactions have completed (tests, demos)."""
        with self._done:
            return self._done.wait_for(lambda: len(self.outcomes) >= count, timeout)

    # --- running ---------------------------------------------------------------------------

    def start_sources(self) -> None:
        """Start the status server, the watcher, the scanner threads and the background
        work, once. :meth:`run` calls it; callers may call it first (to learn the status
        port before the loop runs)."""
        if self._started:
            return
        self._started = True
        if self.status.recent_errors is None:
            from terminal.runtime.recent_errors import RecentErrors

            self.status.recent_errors = RecentErrors()
            self.status.recent_errors.install()
        if self.screen is not None and self.screen_port is not None and self.screen_port >= 0:
            from terminal.screen.server import ScreenServer

            self.screen_server = ScreenServer(self.screen, self.screen_port, clips=self.voice_clips)
            self.status.screen_url = self.screen_server.url
            self.status.assistance = self.screen.assistance
            self.status.acknowledge_call = self.screen.acknowledge_call
            log.info("holder screen at %s", self.screen_server.url)
        if self.status_port is not None and self.status_port >= 0 and self.status_server is None:
            self.status_server = StatusServer(self.status, self.status_port)
        if self.watcher_factory is not None:
            self._watcher = self.watcher_factory(self.submit)
            self._watcher.start()
        for scanner in self.scanners:
            self._spawn(f"scanner-{scanner.source}", self._scan_loop, scanner)
        for work in self.background:
            self._spawn(getattr(work, "__name__", "background"), work, self._stop)

    def _spawn(self, name: str, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def run(self, once_for: float | None = None) -> int:
        """Run until stopped (or for ``once_for`` seconds); returns the exit status 0."""
        timer: threading.Timer | None = None
        if once_for is not None:
            timer = threading.Timer(once_for, self.request_stop)
            timer.daemon = True
            timer.start()
        try:
            self.start_sources()
            while not self._stop.is_set():
                try:
                    event = self._queue.get(timeout=POLL)
                except queue.Empty:
                    continue
                if isinstance(event, _Stop):
                    break
                self.handle(event)
        finally:
            if timer is not None:
                timer.cancel()
            self.shutdown()
        return 0

    def handle(self, event: object) -> TransactionOutcome | None:
        """One event: device state changes update the status; a card or a code runs a
        transaction to completion."""
        presentation: CardPresented | CodePresented | None = None
        if isinstance(event, CardInserted):
            if not self.readers.wanted(event.reader):
                return None
            self.status.set_reader(event.reader, "card")
            presentation = CardPresented(event.reader, event.atr)
        elif isinstance(event, ScanEvent):
            presentation = CodePresented(event.text.rstrip("\r\n"), event.source)
        elif isinstance(event, CardPresented | CodePresented):
            presentation = event
        elif isinstance(event, CardRemoved):
            if self.readers.wanted(event.reader):
                self.status.set_reader(event.reader, "empty")
        elif isinstance(event, ReaderAdded):
            if self.readers.wanted(event.reader):
                self.status.set_reader(event.reader, "empty")
            self.status.pcsc = "up"
        elif isinstance(event, ReaderRemoved):
            self.status.set_reader(event.reader, None)
        elif isinstance(event, ServiceLost):
            log.warning("PC/SC service lost: %s (the watcher reconnects)", event.reason)
            self.status.pcsc = "down"
        elif isinstance(event, ServiceRestored):
            log.info("PC/SC service restored")
            self.status.pcsc = "up"
        if presentation is None:
            return None
        if self.screen is not None:
            self.screen.presenting("code" if isinstance(presentation, CodePresented) else "card")
        try:
            outcome = self.steps.run(presentation)
        except Exception:
            # A bug in one transaction must not stop the terminal (article 22): log it with
            # its traceback, count it, and take the next credential.
            log.exception("transaction failed unexpectedly; the terminal carries on")
            outcome = TransactionOutcome(
                kind="code" if isinstance(presentation, CodePresented) else "card",
                decision="error",
                reason="internal_error",
                detail="the terminal could not complete this transaction",
            )
        log.info(
            "transaction %s %s %s (%d APDUs, %.0f ms)",
            outcome.kind,
            outcome.decision,
            outcome.reason,
            outcome.apdu_count,
            outcome.total_ms,
        )
        self.status.count(outcome.decision, outcome.reason, self.clock.now())
        with self._done:
            self.outcomes.append(outcome)
            self._done.notify_all()
        return outcome

    def _scan_loop(self, scanner: Any) -> None:
        while not self._stop.is_set():
            try:
                event = scanner.read(timeout=POLL)
            except OneCardError as error:  # the driver reconnects; keep asking
                log.warning("scanner %s: %s", scanner.source, error.reason)
                self._stop.wait(POLL)
                continue
            if event is not None:
                self._queue.put(event)
            elif getattr(scanner, "exhausted", False):
                return  # a video file has ended

    def shutdown(self) -> None:
        """Stop the sources and close everything (idempotent)."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        for scanner in self.scanners:
            try:
                scanner.close()
            except OneCardError:
                log.debug("scanner close failed", exc_info=True)
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()
        if self.status_server is not None:
            self.status_server.close()
            self.status_server = None
        if self.screen_server is not None:
            self.screen_server.close()
            self.screen_server = None
        if self.status.recent_errors is not None:
            self.status.recent_errors.remove()
        while self.closers:
            closer = self.closers.pop()
            try:
                closer()
            except Exception:  # one failing close must not leave the rest open
                log.exception("closing failed")
