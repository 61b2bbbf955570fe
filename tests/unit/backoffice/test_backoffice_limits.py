"""The back office's time and connection limits (backoffice.limits) and the watchdog that
applies the deadlines to sockets (backoffice.watchdog)."""

from __future__ import annotations

import socket
import time

import pytest

from backoffice.errors import BadRequestError, LengthRequiredError
from backoffice.limits import ByteBudget, ConnectionSlots, ServeLimits, Slot, body_length
from backoffice.watchdog import Watchdog


def test_body_deadline_moves_with_the_bytes_received():
    limits = ServeLimits(body_grace=10, min_body_rate=1000)
    assert limits.body_deadline(0) == 10
    assert limits.body_deadline(5000) == 15
    # A byte a second never catches up with the deadline: dropped once the grace is over.
    assert all(limits.body_deadline(n) < n for n in range(11, 100))


@pytest.mark.parametrize(
    "change",
    [{"idle_timeout": 0}, {"header_timeout": -1}, {"min_body_rate": 0}, {"max_connections": 0},
     {"linger": -1}, {"body_memory": 0}],
)  # fmt: skip
def test_limits_refuse_nonsense(change):
    with pytest.raises(ValueError):
        ServeLimits(**change)


def test_refusals_are_bounded_too():
    assert ServeLimits(max_connections=2).max_refusing == 4
    assert ServeLimits(max_connections=128).max_refusing == 32


@pytest.mark.parametrize(
    "method, headers, length",
    [
        ("GET", {}, 0),
        ("POST", {"Content-Length": "0"}, 0),
        ("POST", {"Content-Length": " 17 "}, 17),
        ("GET", {"Content-Length": "5"}, 5),
    ],
)
def test_body_length(method, headers, length):
    assert body_length(method, headers) == length


@pytest.mark.parametrize(
    "method, headers, error",
    [
        ("POST", {}, LengthRequiredError),
        ("POST", {"Transfer-Encoding": "chunked"}, LengthRequiredError),
        ("POST", {"Content-Length": "-1"}, BadRequestError),
        ("POST", {"Content-Length": "+1"}, BadRequestError),
        ("POST", {"Content-Length": "1_0"}, BadRequestError),
        ("POST", {"Content-Length": "١"}, BadRequestError),
        ("POST", {"Content-Length": "9" * 19}, BadRequestError),
    ],
)
def test_body_length_refusals(method, headers, error):
    with pytest.raises(error):
        body_length(method, headers)


def test_connection_slots_serve_then_refuse_then_drop():
    slots = ConnectionSlots(serving=2, refusing=1)
    taken = [slots.take() for _ in range(4)]
    assert taken == [Slot.SERVE, Slot.SERVE, Slot.REFUSE, Slot.DROP]
    assert slots.in_use() == 3
    slots.give_back(Slot.SERVE)
    slots.give_back(Slot.DROP)  # nothing was taken for it
    assert slots.take() is Slot.SERVE and slots.in_use() == 3


def test_byte_budget_never_waits():
    budget = ByteBudget(100)
    assert budget.reserve(60) and not budget.reserve(50) and budget.reserve(40)
    budget.release(60)
    assert budget.in_use() == 40 and budget.reserve(60)


@pytest.fixture
def watchdog():
    dog = Watchdog()
    dog.start()
    yield dog
    dog.stop()


def test_watchdog_ends_a_blocked_read_at_its_deadline(watchdog):
    ours, theirs = socket.socketpair()
    with ours, theirs:
        watchdog.watch(ours, 0.2, "test deadline")
        start = time.monotonic()
        assert ours.recv(10) == b""  # blocked until the watchdog shut it down
        assert 0.15 <= time.monotonic() - start < 5
        assert watchdog.tracked() == 0


def test_watchdog_deadline_moves_and_pauses(watchdog):
    ours, theirs = socket.socketpair()
    with ours, theirs:
        watchdog.watch(ours, 0.05)
        watchdog.pause(ours)  # our own work: no deadline
        theirs.sendall(b"x")
        assert ours.recv(10) == b"x"
        watchdog.watch(ours, 60)
        watchdog.watch(ours, 0.05)  # moved nearer: the watchdog wakes for it
        assert ours.recv(10) == b""


def test_watchdog_forget_and_drop_all(watchdog):
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    with a, b, c, d:
        watchdog.watch(a, 60)
        watchdog.watch(c, 60)
        watchdog.forget(c)
        assert watchdog.tracked() == 1
        watchdog.drop_all()
        assert a.recv(10) == b""
        d.sendall(b"y")
        assert c.recv(10) == b"y"  # forgotten: left alone
