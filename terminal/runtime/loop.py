"""The event loop: one queue, one credential at a time, until told to stop.

Card events come from a card watcher (``drivers.pcsc.CardWatcher``; it survives a pcscd
restart by itself), scans from each scanner's loop (a serial scanner reconnects by itself
after an unplug); all of them go into one queue, and the loop thread takes them one by one
and runs each credential to completion with
:class:`terminal.runtime.transaction.TransactionSteps`. A stop request (SIGTERM, SIGINT,
:meth:`TerminalRuntime.request_stop`) is seen between transactions: the current one
finishes, then the loop closes everything and returns.

Every thread the runtime starts - the watcher, each scanner's loop, the background workers
(the back office link, the holder screen's timer) - runs under one
:class:`terminal.runtime.supervisor.Supervisor`: a worker that raises is logged, restarted
after a back-off and shown on the status page with its restarts and last error. The links
the runtime hears about (pcscd and each reader from the watcher's events, the PSAM, the
scanners and the back office from their own callbacks) are kept in
:attr:`RuntimeStatus.links <terminal.runtime.statuspage.RuntimeStatus.links>`.

The runtime takes ready objects; :func:`onecard.runtime.build_runtime`, the composition
root of ``onecard run``, opens them from a :class:`~terminal.runtime.config.RuntimeConfig`.
Tests and the demo may build a :class:`TerminalRuntime` directly, with no back office.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Self

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
from terminal.runtime.links import Links
from terminal.runtime.statuspage import RuntimeStatus, StatusServer
from terminal.runtime.supervisor import Supervisor, Work, Worker
from terminal.runtime.transaction import (
    CardPresented,
    CodePresented,
    TransactionOutcome,
    TransactionSteps,
)

log = logging.getLogger(__name__)

POLL = 0.25
"""Seconds a blocked thread waits before looking at the stop flag again."""
OUTCOMES_KEPT = 10_000
"""Outcomes kept in :attr:`TerminalRuntime.outcomes` (a runtime runs all day: the oldest
half goes when there are more; :attr:`TerminalRuntime.completed` counts them all)."""


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

    ``watcher_factory(sink)`` returns a watcher: one with ``run()`` and ``stop()`` (PC/SC's
    :class:`drivers.pcsc.CardWatcher`) runs under the supervisor, another is ``start()``-ed
    (None: no card readers). ``closers`` run at shutdown, in reverse order (journal,
    secure module, uploader...).
    """

    steps: TransactionSteps
    status: RuntimeStatus
    watcher_factory: Callable[[Callable[[Any], None]], Any] | None = None
    scanners: list[Any] = field(default_factory=list)
    readers: ReaderFilter = field(default_factory=ReaderFilter)
    status_port: int | None = None
    clock: Clock = field(default_factory=SystemClock)
    closers: list[Callable[[], None]] = field(default_factory=list)
    background: list[Worker | Work] = field(default_factory=list)
    """Workers run under the supervisor until the stop (the back office link, the screen's
    timer); a bare function is named after itself."""
    supervisor: Supervisor | None = None
    """Runs every thread of the runtime (default: one on ``clock``)."""
    screen: Any = None
    """The holder screen's :class:`terminal.screen.hub.ScreenHub` (also among the outputs),
    told when a credential arrives so the holder sees the terminal is working."""
    screen_port: int | None = None
    """Serve the holder screen on 127.0.0.1 at this port (0: a free one; None: not served)."""
    voice_clips: Any = None
    """The :class:`terminal.screen.clips.ClipIndex` the screen server hands clips from."""
    on_outcome: Callable[[TransactionOutcome], None] | None = None
    """Told every outcome, from the loop thread (a soak's child reports them)."""

    def __post_init__(self) -> None:
        self._queue: queue.Queue[object] = queue.Queue()
        self._stop = threading.Event()
        self._done = threading.Condition()
        self.outcomes: list[TransactionOutcome] = []
        """The latest outcomes, oldest first (at most :data:`OUTCOMES_KEPT`)."""
        self.completed = 0
        """Transactions completed since start."""
        self.status_server: StatusServer | None = None
        self.screen_server: Any = None
        self._watcher: Any = None
        self._started = False
        self._loop_thread: threading.Thread | None = None
        if self.supervisor is None:
            self.supervisor = Supervisor(self.clock)
        if self.status.links is None:
            self.status.links = Links(self.clock)
        self.links: Links = self.status.links
        self.status.workers = self.supervisor.snapshot

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
            return self._done.wait_for(lambda: self.completed >= count, timeout)

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
        supervisor = self.supervisor
        assert supervisor is not None
        if self.watcher_factory is not None:
            watcher = self._watcher = self.watcher_factory(self.submit)
            if hasattr(watcher, "run"):
                supervisor.spawn("pcsc-watcher", lambda stop: watcher.run(), watcher.stop)
            else:
                watcher.start()
        for scanner in self.scanners:
            supervisor.spawn(
                f"scanner-{scanner.source}",
                lambda stop, scanner=scanner: self._scan_loop(scanner, stop),
            )
        for work in self.background:
            worker = work if isinstance(work, Worker) else Worker(_name_of(work), work)
            supervisor.spawn(worker.name, worker.work, worker.on_stop)

    @contextlib.contextmanager
    def running(self, name: str = "runtime", join_timeout: float = 15.0) -> Iterator[Self]:
        """The loop in a thread of its own for the block (an embedding, a demo, a test):
        sources started first, then on leaving a stop requested, the thread joined for at
        most ``join_timeout`` seconds and everything closed."""
        self.start_sources()
        thread = self._loop_thread = threading.Thread(target=self.run, name=name, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.request_stop()
            thread.join(join_timeout)
            self.shutdown()
            if thread.is_alive():
                log.error("the runtime loop did not stop within %.0f s", join_timeout)

    @property
    def looping(self) -> bool:
        """Whether the loop that :meth:`running` started is still running (after the block:
        it did not stop within the join time-out)."""
        return self._loop_thread is not None and self._loop_thread.is_alive()

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
                self.links.report(f"reader {event.reader}", True)
            self.status.pcsc = "up"
            self.links.report("pcsc", True)
        elif isinstance(event, ReaderRemoved):
            self.status.set_reader(event.reader, None)
            if self.readers.wanted(event.reader):
                self.links.report(f"reader {event.reader}", False, "reader removed")
        elif isinstance(event, ServiceLost):
            log.warning("PC/SC service lost: %s (the watcher reconnects)", event.reason)
            self.status.pcsc = "down"
            self.links.report("pcsc", False, event.reason)
        elif isinstance(event, ServiceRestored):
            log.info("PC/SC service restored")
            self.status.pcsc = "up"
            self.links.report("pcsc", True, "restored")
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
            if len(self.outcomes) >= OUTCOMES_KEPT:
                del self.outcomes[: OUTCOMES_KEPT // 2]
            self.outcomes.append(outcome)
            self.completed += 1
            self._done.notify_all()
        if self.on_outcome is not None:
            try:
                self.on_outcome(outcome)
            except Exception:  # an observer must not stop the terminal
                log.exception("outcome observer failed")
        return outcome

    def _scan_loop(self, scanner: Any, stop: threading.Event) -> None:
        """One scanner's codes into the queue until ``stop``; anything but a driver's typed
        error is the supervisor's to log and restart."""
        while not stop.is_set():
            try:
                event = scanner.read(timeout=POLL)
            except OneCardError as error:  # the driver reconnects; keep asking
                log.warning("scanner %s: %s", scanner.source, error.reason)
                stop.wait(POLL)
                continue
            if event is not None:
                self._queue.put(event)
            elif getattr(scanner, "exhausted", False):
                return  # a video file has ended

    def shutdown(self) -> None:
        """Stop the sources and close everything (idempotent)."""
        self._stop.set()
        assert self.supervisor is not None
        self.supervisor.stop()  # the watcher's stop, then every worker's end
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        for scanner in self.scanners:
            try:
                scanner.close()
            except OneCardError:
                log.debug("scanner close failed", exc_info=True)
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


def _name_of(work: Callable[..., None]) -> str:
    return getattr(work, "__name__", "background")
