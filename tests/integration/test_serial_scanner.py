"""The serial scanner driver through a real pseudo-terminal (drivers.serial_scanner).

The simulated scanner (firmware_sim.scanner) writes frames to the pty's master; the driver
opens the slave through a stable symlink with pyserial, as it opens /dev/ttyACM0. Every wait
is on an event with a timeout that fails the test.
"""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Callable, Iterator

import pytest

from drivers.serial_scanner import ScannerState, SerialScanner
from firmware_sim.scanner import PtyScanner
from terminal.devices.scanframe import Suffix
from terminal.devices.scanner import ScanEvent
from terminal.errors import ScannerGoneError

pytestmark = pytest.mark.integration

WAIT = 5.0


@pytest.fixture
def sim(tmp_path) -> Iterator[PtyScanner]:
    scanner = PtyScanner(tmp_path)
    yield scanner
    scanner.close()


class States:
    """on_state reports, to be waited on."""

    def __init__(self) -> None:
        self.queue: queue.Queue[str] = queue.Queue()

    def __call__(self, state: str) -> None:
        self.queue.put(state)

    def expect(self, state: str) -> None:
        try:
            got = self.queue.get(timeout=WAIT)
        except queue.Empty:
            pytest.fail(f"driver did not report {state!r} within {WAIT} s")
        assert got == state


DriverFactory = Callable[..., SerialScanner]


@pytest.fixture
def open_driver(sim: PtyScanner) -> Iterator[DriverFactory]:
    opened: list[SerialScanner] = []

    def factory(**options) -> SerialScanner:
        options.setdefault("port", sim.port)
        driver = SerialScanner(**options)
        opened.append(driver)
        return driver

    yield factory
    for driver in opened:
        driver.close()


def next_event(driver: SerialScanner) -> ScanEvent:
    event = driver.read(timeout=WAIT)
    assert event is not None, f"no scan event within {WAIT} s"
    return event


# --- frames -------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", list(Suffix))
def test_frames_with_each_suffix(sim: PtyScanner, open_driver: DriverFactory, suffix: Suffix):
    driver = open_driver(suffix=suffix)
    assert driver.connected
    for text in ("SSC:5001000001", "second code", "third"):
        assert sim.scan(text, suffix=suffix.value)
    events = [next_event(driver) for _ in range(3)]
    assert [e.text for e in events] == ["SSC:5001000001", "second code", "third"]
    assert all(e.source == sim.port and e.symbology == "Q1" for e in events)
    assert events[0].at <= events[1].at <= events[2].at


@pytest.mark.parametrize("symbology", ["Q1", "d2", "E0", None])
def test_aim_prefix_is_stripped_and_reported(
    sim: PtyScanner, open_driver: DriverFactory, symbology: str | None
):
    driver = open_driver()
    sim.scan("0123456789", symbology=symbology)
    event = next_event(driver)
    assert (event.text, event.raw, event.symbology) == ("0123456789", b"0123456789", symbology)


@pytest.mark.parametrize("suffix", list(Suffix))
def test_binary_payload_arrives_byte_for_byte(
    sim: PtyScanner, open_driver: DriverFactory, suffix: Suffix
):
    driver = open_driver(suffix=suffix)
    if suffix is Suffix.CRLF:
        payload = bytes(range(256)) + b"\r\x00\n"  # a lone CR and a lone LF are data here
    else:
        payload = bytes(b for b in range(256) if b != suffix.value[0])
    sim.scan(payload, suffix=suffix.value)
    event = next_event(driver)
    assert event.raw == payload
    assert event.text.encode("latin-1") == payload


def test_a_burst_of_200_codes_loses_none(sim: PtyScanner, open_driver: DriverFactory):
    driver = open_driver()
    codes = [f"]]code {i:04d} " + "x" * (i % 97) for i in range(200)]
    for code in codes:
        sim.scan(code)
    assert [next_event(driver).text for _ in codes] == codes
    assert driver.dropped == 0
    assert driver.read(timeout=0) is None


def test_garbage_on_the_line_does_not_stop_the_driver(sim: PtyScanner, open_driver: DriverFactory):
    driver = open_driver(max_frame=64)
    sim.write(os.urandom(5000).replace(b"\r", b""))  # one overlong frame, no suffix
    sim.write(b"\r\x00\xff\r")
    sim.scan("after garbage")
    events = [next_event(driver), next_event(driver)]
    assert events[-1].text == "after garbage"
    assert events[0].raw == b"\x00\xff"
    assert driver.overflows == 1
    assert driver.connected


# --- serial trigger -----------------------------------------------------------------------


def test_trigger_commands_reach_the_scanner(sim: PtyScanner, open_driver: DriverFactory):
    driver = open_driver()
    driver.trigger()
    assert sim.wait_triggered(True, WAIT)
    driver.untrigger()
    assert sim.wait_triggered(False, WAIT)
    assert sim.commands == [b"T", b"U"]


def test_trigger_mode_arms_on_connect_and_after_each_read(tmp_path, open_driver):
    with PtyScanner(tmp_path, name="trig0", trigger_mode=True) as sim:
        assert not sim.scan("ignored: scanner not triggered")
        driver = open_driver(port=sim.port, trigger=True)
        for i in range(3):
            assert sim.wait_triggered(True, WAIT), "driver did not (re)arm the scanner"
            assert sim.scan(f"code {i}")
            assert next_event(driver).text == f"code {i}"
        assert sim.wait_triggered(True, WAIT)
        assert sim.commands == [b"T"] * 4


# --- unplug and replug --------------------------------------------------------------------


def test_unplug_then_replug_reconnects_by_itself(sim: PtyScanner, open_driver: DriverFactory):
    states = States()
    driver = open_driver(on_state=states, reconnect_interval=0.05)
    sim.scan("before")
    assert next_event(driver).text == "before"

    sim.unplug()
    states.expect(ScannerState.GONE)
    assert not driver.connected
    with pytest.raises(ScannerGoneError):
        driver.trigger()

    sim.replug()
    states.expect(ScannerState.CONNECTED)
    assert driver.connected
    sim.scan("after")
    assert next_event(driver).text == "after"

    # and once more: a scanner is replugged more than once in its life
    sim.unplug()
    states.expect("gone")
    sim.replug()
    states.expect("connected")
    sim.scan("again")
    assert next_event(driver).text == "again"
    driver.trigger()
    assert sim.wait_triggered(True, WAIT)


def test_a_vanished_path_counts_as_gone(sim: PtyScanner, open_driver: DriverFactory):
    states = States()
    driver = open_driver(on_state=states, reconnect_interval=0.05)
    os.unlink(sim.port)  # the tty still works, but its path is gone
    states.expect("gone")
    assert sim.device is not None
    os.symlink(sim.device, sim.port)
    states.expect("connected")
    sim.scan("back")
    assert next_event(driver).text == "back"


def test_starts_while_unplugged_and_connects_when_plugged(
    sim: PtyScanner, open_driver: DriverFactory
):
    sim.unplug()
    states = States()
    driver = open_driver(on_state=states, reconnect_interval=0.05)
    assert not driver.connected
    states.expect("gone")
    sim.replug()
    assert driver.wait_connected(WAIT)
    states.expect("connected")
    sim.scan("first")
    assert next_event(driver).text == "first"


def test_a_failing_state_consumer_does_not_kill_the_reader(
    sim: PtyScanner, open_driver: DriverFactory
):
    states = States()

    def consumer(state: str) -> None:
        states(state)
        raise RuntimeError("consumer bug")

    driver = open_driver(on_state=consumer, reconnect_interval=0.05)
    sim.unplug()
    states.expect("gone")
    sim.replug()
    states.expect("connected")
    sim.scan("still reading")
    assert next_event(driver).text == "still reading"


# --- closing ------------------------------------------------------------------------------


def test_close_returns_promptly_while_reading(sim: PtyScanner):
    driver = SerialScanner(sim.port)
    started = time.monotonic()
    driver.close()
    assert time.monotonic() - started < 1.0
    assert not driver.connected
    assert driver.read(timeout=WAIT) is None  # closed: no waiting


def test_close_returns_promptly_while_reconnecting(sim: PtyScanner):
    sim.unplug()
    driver = SerialScanner(sim.port, reconnect_interval=60)
    started = time.monotonic()
    driver.close()
    assert time.monotonic() - started < 1.0


def test_a_second_reader_waits_for_the_port(sim: PtyScanner, open_driver: DriverFactory):
    first = open_driver()
    second = open_driver(reconnect_interval=0.05)
    assert first.connected
    assert not second.connected  # two readers would each get half the bytes
    first.close()
    assert second.wait_connected(WAIT)
    sim.scan("to the second")
    assert next_event(second).text == "to the second"
