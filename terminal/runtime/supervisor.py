"""Every background worker of the runtime runs here, and none dies silently.

A worker is a function ``work(stop)`` that runs until the ``stop`` event is set: the card
watcher, each scanner's loop, the back office link's uploader, event sender and document
downloads, the holder screen's timer. :class:`Supervisor` runs each in a daemon thread of
its own; when one raises, the supervisor logs the exception with its traceback, records it,
waits a back-off delay (:class:`RestartPolicy`: doubling from ``first_delay`` to
``max_delay``, back to the first after a worker ran ``healthy_after`` seconds without
failing) and runs it again. A worker that returns before the stop event is finished (a
video file that ended), not restarted.

:meth:`Supervisor.snapshot` is what the status page and ``/metrics`` show: each worker's
name, state (``running``, ``restarting``, ``finished``, ``stopped``), restarts and last
error.

Time is injected: the clock measures how long a worker ran, and ``sleep(stop, seconds)``
waits out a back-off (tests pass one that returns at once and records the delay).
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from terminal.host.clock import Clock, SystemClock
from terminal.sync.sender import backoff_ceiling

log = logging.getLogger(__name__)

Work = Callable[[threading.Event], None]


class Worker(NamedTuple):
    """A worker as its owner hands it over: its name, ``work(stop)``, and what else to do
    at stop (optional)."""

    name: str
    work: Work
    on_stop: Callable[[], None] | None = None


Sleep = Callable[[threading.Event, float], bool]
"""``(stop, seconds)``: wait, True when the stop event ended the wait."""
JOIN_TIMEOUT = 5.0


class WorkerState(enum.StrEnum):
    RUNNING = "running"
    RESTARTING = "restarting"
    """It failed and waits out its back-off delay."""
    FINISHED = "finished"
    """It returned by itself before the stop."""
    STOPPED = "stopped"


@dataclass(frozen=True)
class RestartPolicy:
    """How long a failed worker waits before it runs again. Pure."""

    first_delay: float = 0.5
    max_delay: float = 30.0
    healthy_after: float = 60.0
    """A worker that ran this long before failing starts again from ``first_delay``."""

    def delay(self, failures: int) -> float:
        """The wait after the ``failures``-th failure in a row (1 for the first)."""
        return backoff_ceiling(max(0, failures - 1), self.first_delay, self.max_delay)


@dataclass
class WorkerRecord:
    """What the supervisor knows of one worker."""

    name: str
    state: WorkerState = WorkerState.RUNNING
    restarts: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    failures_in_row: int = 0
    started: float = 0.0
    """Monotonic time of the current run's start."""

    def failed(self, error: BaseException, policy: RestartPolicy, clock: Clock) -> float:
        """Record a failure; the delay before the next run. A run longer than
        ``healthy_after`` ends the streak of failures first. Pure but for the clock."""
        if clock.monotonic() - self.started >= policy.healthy_after:
            self.failures_in_row = 0
        self.failures_in_row += 1
        self.last_error = f"{type(error).__name__}: {error}"
        self.last_error_at = clock.now()
        self.state = WorkerState.RESTARTING
        return policy.delay(self.failures_in_row)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state.value,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
        }


def _wait(stop: threading.Event, seconds: float) -> bool:
    return stop.wait(seconds)


@dataclass
class _Worker:
    record: WorkerRecord
    work: Work
    on_stop: Callable[[], None] | None
    thread: threading.Thread | None = None


@dataclass
class Supervisor:
    """Runs workers in threads, restarts them when they raise, reports them."""

    clock: Clock = field(default_factory=SystemClock)
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    sleep: Sleep = _wait

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Condition()
        self._workers: dict[str, _Worker] = {}

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def spawn(self, name: str, work: Work, on_stop: Callable[[], None] | None = None) -> None:
        """Run ``work(stop)`` in a thread named ``name`` (unique) until :meth:`stop`.
        ``on_stop`` is called at :meth:`stop`, for a worker that blocks where the stop
        event cannot reach (in ``SCardGetStatusChange``)."""
        with self._lock:
            if name in self._workers:
                raise ValueError(f"a worker named {name!r} runs already")
            worker = _Worker(WorkerRecord(name), work, on_stop)
            self._workers[name] = worker
        worker.thread = threading.Thread(
            target=self._supervise, args=(worker,), name=name, daemon=True
        )
        worker.thread.start()

    def stop(self, timeout: float = JOIN_TIMEOUT) -> None:
        """Set the stop event, call each ``on_stop``, wait for the threads (idempotent)."""
        self._stop.set()
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            if worker.on_stop is not None:
                try:
                    worker.on_stop()
                except Exception:  # one failing stop must not keep the others running
                    log.exception("stopping worker %s failed", worker.record.name)
        for worker in workers:
            if worker.thread is not None and worker.thread is not threading.current_thread():
                worker.thread.join(timeout)

    def snapshot(self) -> list[dict[str, Any]]:
        """Each worker: name, state, restarts, last error (and when), by name."""
        with self._lock:
            return [self._workers[n].record.to_json() for n in sorted(self._workers)]

    def record(self, name: str) -> WorkerRecord | None:
        with self._lock:
            worker = self._workers.get(name)
            return None if worker is None else WorkerRecord(**vars(worker.record))

    def wait_for(self, predicate: Callable[[Supervisor], bool], timeout: float) -> bool:
        """Block until ``predicate(self)`` holds after a change of some worker's record."""
        with self._lock:
            return self._lock.wait_for(lambda: predicate(self), timeout)

    def _supervise(self, worker: _Worker) -> None:
        record = worker.record
        while not self._stop.is_set():
            with self._lock:
                record.state = WorkerState.RUNNING
                record.started = self.clock.monotonic()
                self._lock.notify_all()
            try:
                worker.work(self._stop)
            except Exception as error:
                if self._stop.is_set():
                    log.debug("worker %s ended at stop: %r", record.name, error)
                    break
                with self._lock:
                    delay = record.failed(error, self.policy, self.clock)
                    self._lock.notify_all()
                log.exception(
                    "worker %s failed (restart %d in %.1fs)",
                    record.name,
                    record.restarts + 1,
                    delay,
                )
                if self.sleep(self._stop, delay):
                    break
                with self._lock:
                    record.restarts += 1
                continue
            if not self._stop.is_set():
                with self._lock:
                    record.state = WorkerState.FINISHED
                    self._lock.notify_all()
                log.info("worker %s finished", record.name)
                return
        with self._lock:
            record.state = WorkerState.STOPPED
            self._lock.notify_all()
