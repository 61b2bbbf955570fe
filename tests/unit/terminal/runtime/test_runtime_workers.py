"""The runtime runs its watcher, scanner loops and background work under its supervisor:
one that raises is restarted and shown; the stop ends them all; reader events keep the
links of /health."""

from __future__ import annotations

import threading

from terminal.devices.reader import ReaderAdded, ServiceLost, ServiceRestored
from terminal.host.clock import FixedClock
from terminal.runtime.loop import ReaderFilter, TerminalRuntime
from terminal.runtime.statuspage import RuntimeStatus
from terminal.runtime.supervisor import RestartPolicy, Supervisor, Worker

WAIT = 10.0


class CrashingWatcher:
    """A watcher whose first run dies of a bug; the second reports a reader and waits."""

    def __init__(self, sink) -> None:
        self.sink = sink
        self.runs = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        self.runs += 1
        if self.runs == 1:
            raise RuntimeError("unexpected PC/SC answer")
        self.sink(ReaderAdded("Reader 0"))
        self.stopped.wait()

    def stop(self) -> None:
        self.stopped.set()


class CrashingScanner:
    source = "/dev/ttyACM0"

    def __init__(self) -> None:
        self.reads = 0

    def read(self, timeout: float):
        self.reads += 1
        if self.reads == 1:
            raise ValueError("a frame nobody foresaw")
        threading.Event().wait(timeout)  # nothing scanned: the read's own time-out
        return None

    def close(self) -> None:
        pass


def test_every_thread_is_supervised_and_shown() -> None:
    clock = FixedClock()
    watchers: list[CrashingWatcher] = []

    def factory(sink):
        watchers.append(CrashingWatcher(sink))
        return watchers[-1]

    status = RuntimeStatus("gate", "GATE-0001")
    supervisor = Supervisor(clock, RestartPolicy(first_delay=0.0))
    ticks = threading.Event()
    runtime = TerminalRuntime(
        steps=None,  # type: ignore[arg-type]
        status=status,
        watcher_factory=factory,
        scanners=[CrashingScanner()],
        readers=ReaderFilter(),
        clock=clock,
        background=[Worker("ticker", lambda stop: ticks.set() or stop.wait())],
        supervisor=supervisor,
    )
    runtime.start_sources()
    try:
        assert supervisor.wait_for(
            lambda s: all(
                (r := s.record(name)) is not None and r.restarts == 1
                for name in ("pcsc-watcher", "scanner-/dev/ttyACM0")
            ),
            WAIT,
        )
        assert ticks.wait(WAIT)
        # The second run's reader event, handled as the loop would.
        runtime.handle(runtime._queue.get(timeout=WAIT))
        health = status.snapshot()
    finally:
        runtime.shutdown()
    workers = {w["name"]: w for w in health["workers"]}
    assert workers["pcsc-watcher"]["last_error"] == "RuntimeError: unexpected PC/SC answer"
    assert workers["scanner-/dev/ttyACM0"]["restarts"] == 1
    assert workers["ticker"]["restarts"] == 0
    assert {link["name"] for link in health["links"]} == {"pcsc", "reader Reader 0"}
    assert watchers[0].stopped.is_set()
    assert {w["state"] for w in status.snapshot()["workers"]} == {"stopped"}


def test_pcscd_going_and_coming_back_counts_a_reconnection() -> None:
    status = RuntimeStatus("gate", "GATE-0001")
    runtime = TerminalRuntime(steps=None, status=status, clock=FixedClock())  # type: ignore[arg-type]
    for event in (ReaderAdded("Reader 0"), ServiceLost("pcscd stopped"), ServiceRestored()):
        runtime.handle(event)
    [pcsc] = [link for link in status.snapshot()["links"] if link["name"] == "pcsc"]
    assert pcsc["state"] == "up" and pcsc["reconnects"] == 1


def test_the_screen_timer_runs_under_the_supervisor_and_ends_at_stop() -> None:
    from terminal.screen.hub import ScreenHub
    from terminal.screen.model import ScreenSettings

    hub = ScreenHub(ScreenSettings(), clock=FixedClock(), timer=False)
    supervisor = Supervisor(FixedClock())
    supervisor.spawn("screen-timer", hub.run_timer, hub.close)
    assert supervisor.wait_for(
        lambda s: s.record("screen-timer").state.value == "running",  # type: ignore[union-attr]
        WAIT,
    )
    supervisor.stop()
    assert supervisor.record("screen-timer").state.value == "stopped"  # type: ignore[union-attr]
