"""CardWatcher logic for reader unplug/replug, over a scripted fake of the PC/SC calls.

vpcd readers cannot be unplugged, so the unplug path is driven here with the states pcsc-lite
reports (the integration tests cover insert/remove and a pcscd restart on the real stack).
"""

from __future__ import annotations

import queue
import threading

import pytest
from smartcard import scard

from drivers import pcsc
from terminal.devices.reader import (
    CardInserted,
    CardRemoved,
    ReaderAdded,
    ReaderRemoved,
    ServiceLost,
    ServiceRestored,
)

ATR = bytes.fromhex("3B6D000000814A444686605199000001AC")
CHANGED = scard.SCARD_STATE_CHANGED
PRESENT = scard.SCARD_STATE_PRESENT
EMPTY = scard.SCARD_STATE_EMPTY
UNKNOWN = scard.SCARD_STATE_UNKNOWN


class ScriptedPcsc:
    """Answers SCardListReaders / SCardGetStatusChange from a script, then blocks until
    SCardCancel - as pcsc-lite does when nothing changes."""

    def __init__(self, steps):
        self.steps = list(steps)  # each: (readers listed, {reader: (state, atr)}) or "service-gone"
        self.readers: list[str] = []
        self.cancelled = threading.Event()
        self.establish_failures = 0

    def establish(self, scope):
        if self.establish_failures:
            self.establish_failures -= 1
            return scard.SCARD_E_NO_SERVICE, 0
        return scard.SCARD_S_SUCCESS, 1

    def list_readers(self, context, groups):
        if not self.readers:
            return scard.SCARD_E_NO_READERS_AVAILABLE, []
        return scard.SCARD_S_SUCCESS, list(self.readers)

    def get_status_change(self, context, timeout, states):
        if not self.steps:
            self.cancelled.wait(10)
            return scard.SCARD_E_CANCELLED, []
        step = self.steps.pop(0)
        if step == "service-gone":
            self.establish_failures = 2
            return scard.SCARD_F_COMM_ERROR, []
        readers, changes = step
        pnp_changed = readers != self.readers
        self.readers = readers
        out = []
        for name, _current in states:
            if name == pcsc.PNP_READER:
                out.append((name, CHANGED if pnp_changed else 0, []))
            elif name in changes:
                state, atr = changes[name]
                out.append((name, state | CHANGED, list(atr)))
            else:
                out.append((name, EMPTY, []))
        return scard.SCARD_S_SUCCESS, out

    def cancel(self, context):
        self.cancelled.set()
        return scard.SCARD_S_SUCCESS


@pytest.fixture
def scripted(monkeypatch):
    def install(steps):
        fake = ScriptedPcsc(steps)
        monkeypatch.setattr(scard, "SCardEstablishContext", fake.establish)
        monkeypatch.setattr(scard, "SCardReleaseContext", lambda ctx: scard.SCARD_S_SUCCESS)
        monkeypatch.setattr(scard, "SCardListReaders", fake.list_readers)
        monkeypatch.setattr(scard, "SCardGetStatusChange", fake.get_status_change)
        monkeypatch.setattr(scard, "SCardCancel", fake.cancel)
        return fake

    return install


def collect(expected: int, steps, scripted) -> list[object]:
    fake = scripted(steps)
    fake.readers = ["R1"]
    events: queue.Queue = queue.Queue()
    watcher = pcsc.CardWatcher(events.put, max_backoff=0.01).start()
    got = []
    try:
        for _ in range(expected):
            got.append(events.get(timeout=10))
    finally:
        watcher.stop()
    return got


def test_reader_unplug_and_replug_with_card(scripted):
    steps = [
        (["R1"], {"R1": (PRESENT, ATR)}),  # card in the reader
        ([], {"R1": (UNKNOWN, b"")}),  # reader unplugged
        (["R1"], {}),  # reader back, empty
        (["R1"], {"R1": (PRESENT, ATR)}),  # card again
    ]
    events = collect(6, steps, scripted)
    assert events == [
        ReaderAdded("R1"),
        CardInserted("R1", ATR),
        CardRemoved("R1"),
        ReaderRemoved("R1"),
        ReaderAdded("R1"),
        CardInserted("R1", ATR),
    ]


def test_service_loss_reports_everything_gone_then_recovers(scripted):
    steps = [
        (["R1"], {"R1": (PRESENT, ATR)}),
        "service-gone",
        (["R1"], {"R1": (PRESENT, ATR)}),
    ]
    events = collect(8, steps, scripted)
    assert events[:2] == [ReaderAdded("R1"), CardInserted("R1", ATR)]
    assert isinstance(events[2], ServiceLost)
    assert events[3:] == [
        CardRemoved("R1"),
        ReaderRemoved("R1"),
        ServiceRestored(),
        ReaderAdded("R1"),
        CardInserted("R1", ATR),
    ]


def test_a_failing_consumer_does_not_stop_the_watcher(scripted):
    fake = scripted([(["R1"], {"R1": (PRESENT, ATR)})])
    fake.readers = ["R1"]
    seen: queue.Queue = queue.Queue()

    def consumer(event):
        seen.put(event)
        raise RuntimeError("consumer bug")

    watcher = pcsc.CardWatcher(consumer).start()
    try:
        assert seen.get(timeout=10) == ReaderAdded("R1")
        assert seen.get(timeout=10) == CardInserted("R1", ATR)
    finally:
        watcher.stop()
