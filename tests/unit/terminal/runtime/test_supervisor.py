"""The supervisor: a worker that raises is logged, restarted after a back-off and shown;
one that returns is finished; the stop ends them all. Time is a fake clock and the back-off
wait returns at once, recording its delay."""

from __future__ import annotations

import threading

import pytest

from terminal.host.clock import FixedClock
from terminal.runtime.supervisor import RestartPolicy, Supervisor, WorkerRecord, WorkerState

WAIT = 10.0


class Waits:
    """The supervisor's sleep: records each delay and returns at once (not stopped)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, stop: threading.Event, seconds: float) -> bool:
        self.delays.append(seconds)
        return stop.is_set()


def test_the_restart_policy_doubles_up_to_its_cap() -> None:
    policy = RestartPolicy(first_delay=0.5, max_delay=4.0)
    assert [policy.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert policy.delay(10_000) == 4.0


def test_a_worker_that_ran_long_enough_starts_its_back_off_again() -> None:
    clock, policy = FixedClock(), RestartPolicy(first_delay=1.0, healthy_after=60.0)
    record = WorkerRecord("w", started=clock.monotonic())
    assert record.failed(ValueError("one"), policy, clock) == 1.0
    assert record.failed(ValueError("two"), policy, clock) == 2.0
    record.started = clock.monotonic()
    clock.advance(61)
    assert record.failed(ValueError("three"), policy, clock) == 1.0
    assert record.last_error == "ValueError: three" and record.state is WorkerState.RESTARTING
    assert record.last_error_at == clock.now()


def test_a_worker_that_raises_is_restarted_and_reported(caplog: pytest.LogCaptureFixture) -> None:
    clock, waits = FixedClock(), Waits()
    supervisor = Supervisor(clock, RestartPolicy(first_delay=0.5), waits)
    runs: list[int] = []

    def flaky(stop: threading.Event) -> None:
        runs.append(1)
        if len(runs) <= 2:
            raise RuntimeError(f"failure {len(runs)}")
        stop.wait()

    supervisor.spawn("flaky", flaky)
    try:
        assert supervisor.wait_for(
            lambda s: (
                (r := s.record("flaky")) is not None
                and r.restarts == 2
                and r.state is WorkerState.RUNNING
            ),
            WAIT,
        )
        [shown] = supervisor.snapshot()
        assert shown["name"] == "flaky" and shown["state"] == "running"
        assert shown["restarts"] == 2 and shown["last_error"] == "RuntimeError: failure 2"
        assert waits.delays == [0.5, 1.0]
        assert "worker flaky failed" in caplog.text and "Traceback" in caplog.text
    finally:
        supervisor.stop()
    assert supervisor.record("flaky").state is WorkerState.STOPPED  # type: ignore[union-attr]
    assert len(runs) == 3


def test_a_worker_that_returns_is_finished_not_restarted() -> None:
    supervisor = Supervisor(FixedClock(), sleep=Waits())
    supervisor.spawn("video", lambda stop: None)
    assert supervisor.wait_for(
        lambda s: s.record("video").state is WorkerState.FINISHED,  # type: ignore[union-attr]
        WAIT,
    )
    supervisor.stop()
    assert supervisor.record("video").restarts == 0  # type: ignore[union-attr]


def test_stop_calls_on_stop_for_a_worker_the_event_cannot_reach() -> None:
    released = threading.Event()
    supervisor = Supervisor(FixedClock(), sleep=Waits())
    supervisor.spawn("blocked", lambda stop: released.wait(), on_stop=released.set)
    supervisor.stop()
    assert released.is_set()
    assert supervisor.record("blocked").state is WorkerState.STOPPED  # type: ignore[union-attr]


def test_a_failure_during_the_stop_is_not_a_restart() -> None:
    supervisor = Supervisor(FixedClock(), sleep=Waits())
    gone = threading.Event()

    def dies_at_stop(stop: threading.Event) -> None:
        stop.wait()
        raise OSError("device closed under me")

    supervisor.spawn("device", dies_at_stop, on_stop=gone.set)
    supervisor.stop()
    record = supervisor.record("device")
    assert record is not None and record.restarts == 0 and record.last_error is None


def test_names_are_unique() -> None:
    supervisor = Supervisor(FixedClock(), sleep=Waits())
    supervisor.spawn("one", lambda stop: stop.wait())
    try:
        with pytest.raises(ValueError):
            supervisor.spawn("one", lambda stop: stop.wait())
    finally:
        supervisor.stop()
