"""What the uploader and the event sender share: a background thread that sends whatever
waits for the back office, and backs off through failures.

A pass sends everything pending and raises a typed :class:`SyncError` (or another
:class:`OneCardError`) on the first failure. The thread never dies of one: it logs it,
waits a back-off delay - exponential with full jitter (:func:`backoff_delays`), starting
again from the first delay after a success, or after a failing pass that still delivered
something - and tries again (after a ``Retry-After``, that long plus the draw:
:func:`throttled_delay`); with nothing pending it waits for :meth:`notify` or the idle
poll. Exactly-once at the back office is not this module's job: the back office ignores
what it already holds, and a sender resends everything not acknowledged.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypedDict

from terminal.errors import OneCardError, SyncError, SyncThrottledError
from terminal.host.clock import Clock
from terminal.sync.auth import TerminalCredentials
from terminal.sync.client import DEFAULT_TIMEOUT, BackOfficeClient

log = logging.getLogger(__name__)

DEFAULT_BASE_BACKOFF = 0.5
DEFAULT_MAX_BACKOFF = 60.0
DEFAULT_IDLE_INTERVAL = 5.0


# --- back-off (pure) ----------------------------------------------------------------------


def backoff_ceiling(attempt: int, base: float, cap: float, factor: float = 2.0) -> float:
    """The largest delay of failure ``attempt`` (0 for the first): ``min(cap, base *
    factor**attempt)``, computed without overflow for any attempt."""
    ceiling = base
    for _ in range(attempt):
        ceiling *= factor
        if ceiling >= cap:
            return cap
    return min(cap, ceiling)


def backoff_delays(
    base: float = DEFAULT_BASE_BACKOFF,
    cap: float = DEFAULT_MAX_BACKOFF,
    rng: random.Random | None = None,
    factor: float = 2.0,
) -> Iterator[float]:
    """Delays before successive retries: exponential back-off with full jitter, each drawn
    uniformly from ``[0, min(cap, base * factor**attempt)]``.

    Full jitter spreads a fleet of terminals that lost the back office at the same moment,
    so they do not all come back at the same moment. Endless; start a new one after success.
    """
    if base <= 0 or cap <= 0 or factor < 1:
        raise ValueError("back-off needs base > 0, cap > 0 and factor >= 1")
    rng = rng or random.Random()
    attempt = 0
    while True:
        ceiling = backoff_ceiling(attempt, base, cap, factor)
        yield rng.uniform(0.0, ceiling)
        if ceiling < cap:
            attempt += 1


def throttled_delay(jittered: float, error: BaseException) -> float:
    """The wait after a failure: the jittered back-off draw, on top of the ``Retry-After``
    of a back office that said "not now" (:class:`SyncThrottledError`, already bounded by
    the client; an unreadable one is None and ignored). Waiting the whole ``Retry-After``
    honours it; the jitter on top keeps a fleet refused at the same moment from all coming
    back at the same later moment."""
    retry_after = error.retry_after if isinstance(error, SyncThrottledError) else None
    return jittered if retry_after is None else retry_after + jittered


# --- the background sender ----------------------------------------------------------------


class SenderOptions(TypedDict, total=False):
    """The keyword arguments every background sender takes (:class:`Uploader
    <terminal.sync.uploader.Uploader>`, :class:`EventSender <terminal.sync.events.EventSender>`)."""

    client: BackOfficeClient | None
    timeout: float
    base_backoff: float
    max_backoff: float
    rng: random.Random | None
    idle_interval: float
    backoff_sleep: Callable[[float], None] | None


@dataclass(frozen=True)
class SenderSettings:
    """How a background sender talks and backs off: :class:`SenderOptions` with defaults."""

    client: BackOfficeClient | None = None
    timeout: float = DEFAULT_TIMEOUT
    base_backoff: float = DEFAULT_BASE_BACKOFF
    max_backoff: float = DEFAULT_MAX_BACKOFF
    rng: random.Random | None = None
    idle_interval: float = DEFAULT_IDLE_INTERVAL
    backoff_sleep: Callable[[float], None] | None = None

    @classmethod
    def of(cls, options: SenderOptions) -> SenderSettings:
        return cls(**options)


class _Source(Protocol):
    terminal_id: str


class BackgroundSender:
    """The thread, back-off and status shared by :class:`terminal.sync.uploader.Uploader`
    and :class:`terminal.sync.events.EventSender`.

    A subclass says what one pass is (:meth:`_send_pending`: send, return how much is still
    pending) and how far the back office has acknowledged (:meth:`_progress`). ``client`` is
    the terminal's one :class:`BackOfficeClient` (the sender then leaves it open at
    :meth:`stop`: its owner closes it); without one the sender makes and owns its own.
    ``backoff_sleep`` replaces the wait between retries (tests pass a function that records
    the delays and returns at once).
    """

    thread_name = "onecard-sender"
    what = "sending"
    """The task, in log lines: "upload failed", "next upload attempt in..."."""
    wake_cuts_backoff = False
    """Whether :meth:`notify` ends a back-off early (else only :meth:`stop` does)."""

    max_batch = 1
    """The most items the back office takes per request (the subclass's wire limit)."""
    mismatch_error: type[OneCardError] = SyncError
    """Raised when the credentials are another terminal's than the source's."""

    source_name = "source"
    """What the sender sends from, in errors: "the journal", "the outbox"."""

    def __init__(
        self,
        source: _Source,
        credentials: TerminalCredentials,
        clock: Clock,
        batch_size: int,
        options: SenderOptions,
    ) -> None:
        if not 1 <= batch_size <= self.max_batch:
            raise ValueError(f"batch_size must be 1..{self.max_batch}")
        if credentials.terminal_id != source.terminal_id:
            raise self.mismatch_error(
                f"credentials of terminal {credentials.terminal_id!r} "
                f"for the {self.source_name} of {source.terminal_id!r}"
            )
        settings = SenderSettings.of(options)
        self._terminal_id = credentials.terminal_id
        self.batch_size = batch_size
        self._clock = clock
        self._owns_client = settings.client is None
        self._client = settings.client or BackOfficeClient(credentials, clock, settings.timeout)
        self.base_backoff = settings.base_backoff
        self.max_backoff = settings.max_backoff
        self.idle_interval = settings.idle_interval
        self._rng = settings.rng if settings.rng is not None else random.Random()
        self._backoff_sleep = settings.backoff_sleep
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._state = threading.Condition()
        # One pass at a time: a caller's run_once() while the thread runs must not
        # interleave its batches and acknowledgements with the thread's.
        self._pass = threading.Lock()
        self._failures = 0
        self._last_error: str | None = None
        self._last_success: float | None = None
        self._caught_up_runs = 0

    # --- what a subclass says --------------------------------------------------------------

    def _send_pending(self, stoppable: bool) -> int:
        """One pass: send what is pending; return how much still is. ``stoppable``: end
        early (between requests) once :meth:`stop` is called."""
        raise NotImplementedError

    def _progress(self) -> int | None:
        """How far the back office has acknowledged (None when it cannot be read)."""
        raise NotImplementedError

    # --- the thread ------------------------------------------------------------------------

    def start(self) -> None:
        """Send continuously in a background thread until :meth:`stop`."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the thread (after its current request at most); close the connection if
        this sender owns the client."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if not self._thread.is_alive():
                self._thread = None
        if self._owns_client:
            self._client.close()

    def notify(self) -> None:
        """Something new waits: send now rather than at the next idle poll."""
        self._wake.set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def last_error(self) -> str | None:
        """``code: reason`` of the last failed pass, None after a success."""
        with self._state:
            return self._last_error

    def wait_caught_up(self, timeout: float) -> bool:
        """Block until a pass of the background thread ends with nothing pending (True), or
        ``timeout`` seconds pass (False). For an orderly shutdown, and for tests."""
        with self._state:
            seen = self._caught_up_runs
            self._wake.set()
            return self._state.wait_for(lambda: self._caught_up_runs > seen, timeout)

    def _loop(self) -> None:
        delays: Iterator[float] | None = None
        while not self._stop.is_set():
            self._wake.clear()  # a notify() from here on triggers another pass
            before = self._progress()
            try:
                with self._pass:
                    pending = self._send_pending(stoppable=True)
            except Exception as exc:
                # Never let the thread die: a dead sender silently stops all syncing.
                self._failed(exc)
                after = self._progress()
                if before is not None and (after or 0) > before:
                    delays = None  # some of it got through before the failure: a success
                if delays is None:
                    delays = backoff_delays(self.base_backoff, self.max_backoff, self._rng)
                # A Retry-After is honoured whole: new work does not cut that wait short.
                throttled = isinstance(exc, SyncThrottledError) and exc.retry_after is not None
                self._back_off(throttled_delay(next(delays), exc), cuttable=not throttled)
                continue
            delays = None  # success: the next failure starts from the first delay
            with self._state:
                self._failures = 0
                self._last_error = None
                self._last_success = self._clock.now()
                if pending == 0:
                    self._caught_up_runs += 1
                    self._state.notify_all()
            if pending == 0:
                self._wake.wait(self.idle_interval)
        if self._owns_client:
            self._client.close()

    def _failed(self, exc: Exception) -> None:
        if isinstance(exc, OneCardError):
            level = logging.WARNING if isinstance(exc, SyncError) else logging.ERROR
            log.log(level, "%s failed: %s: %s", self.what, exc.code, exc.reason)
            error = f"{exc.code}: {exc.reason}"
        else:
            log.exception("%s failed unexpectedly", self.what)
            error = f"internal: {exc!r}"
        with self._state:
            self._failures += 1
            self._last_error = error

    def _back_off(self, delay: float, cuttable: bool = True) -> None:
        log.info("next %s attempt in %.1fs", self.what, delay)
        if self._backoff_sleep is not None:
            self._backoff_sleep(delay)
        elif self.wake_cuts_backoff and cuttable:
            self._wake.wait(delay)  # stop() sets it too
        else:
            self._stop.wait(delay)  # back off even if new work arrives
