"""The relay board driver through a real pseudo-terminal (drivers.relay_board).

The simulated board (firmware_sim.relay_board) answers the line protocol on the pty's
master; the driver opens the slave through a stable symlink with pyserial, as it opens
/dev/ttyUSB0. Each command waits for the board's answer, so what the board recorded is
settled when the call returns: no test waits on time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from drivers.relay_board import MAX_TEXT_BYTES, SerialRelayBoard, clean_text
from firmware_sim.relay_board import PtyRelayBoard
from terminal.errors import (
    RelayBoardError,
    RelayBoardGoneError,
    RelayBoardTimeoutError,
)
from terminal.outputs import HolderMessage, MultiOutputs, Outcome, RecordingOutputs, message_for

pytestmark = pytest.mark.integration


@pytest.fixture
def sim(tmp_path) -> Iterator[PtyRelayBoard]:
    board = PtyRelayBoard(tmp_path)
    yield board
    board.close()


DriverFactory = Callable[..., SerialRelayBoard]


@pytest.fixture
def open_driver(sim: PtyRelayBoard) -> Iterator[DriverFactory]:
    opened: list[SerialRelayBoard] = []

    def factory(**options) -> SerialRelayBoard:
        options.setdefault("port", sim.port)
        driver = SerialRelayBoard(**options)
        opened.append(driver)
        return driver

    yield factory
    for driver in opened:
        driver.close()


def test_gate_pulse(sim, open_driver):
    board = open_driver(gate_pulse_ms=350)
    assert board.connected
    board.open_gate()
    assert sim.gate_pulses == [350]
    assert sim.commands == ["RELAY 1 PULSE 350"]


def test_lamps_and_buzzer(sim, open_driver):
    board = open_driver()
    board.indicate(Outcome.ACCEPTED)
    assert sim.lamp == "GREEN" and sim.buzzes == [100]
    board.indicate(Outcome.REFUSED)
    assert sim.lamp == "RED"
    board.indicate(Outcome.ERROR)
    assert sim.lamps == ["GREEN", "RED", "RED"]
    assert sim.buzzes == [100, 400, 800]


def test_text_in_utf8(sim, open_driver):
    board = open_driver()
    board.show(message_for(Outcome.REFUSED, "hotlisted"))
    board.show(message_for(Outcome.ACCEPTED, "ok", fare=200, balance=1000, lang="en"))
    assert sim.texts == [
        "此卡已挂失 / Card reported lost - 请到服务窗口 / Please go to the service desk",
        "Please pass - Fare 2.00 yuan, balance 10.00 yuan",
    ]


def test_text_is_cleaned_and_cut(sim, open_driver):
    board = open_driver()
    board.show(HolderMessage(Outcome.ERROR, "line\r\nbreak", "请" * 100))
    (text,) = sim.texts
    assert text.startswith("line  break - 请")
    assert len(text.encode("utf-8")) <= MAX_TEXT_BYTES
    assert clean_text("请" * 100, 10) == "请" * 3  # never half a character


def test_err_answer_is_a_typed_error(sim, open_driver):
    board = open_driver()
    sim.fail_next("display fault")
    with pytest.raises(RelayBoardError, match="display fault"):
        board.show(message_for(Outcome.ACCEPTED, "ok"))
    board.open_gate()  # the next command is fine
    assert sim.gate_pulses == [500]


def test_no_answer_is_a_timeout(sim, open_driver):
    board = open_driver(answer_timeout=0.2)
    sim.mute = True
    with pytest.raises(RelayBoardTimeoutError):
        board.open_gate()
    sim.mute = False
    board.ping()
    assert sim.commands == ["RELAY 1 PULSE 500", "PING"]


def test_unplug_then_replug(sim, open_driver):
    board = open_driver(answer_timeout=2.0)
    board.open_gate()
    sim.unplug()
    with pytest.raises(RelayBoardGoneError):
        board.open_gate()
    assert not board.connected
    with pytest.raises(RelayBoardGoneError):  # still gone: the open fails
        board.indicate(Outcome.ACCEPTED)
    sim.replug()
    board.open_gate()  # reconnected on the next command
    assert board.connected
    assert sim.gate_pulses == [500, 500]


def test_replug_between_commands_needs_no_failed_command(sim, open_driver):
    board = open_driver()
    board.ping()
    sim.unplug()
    sim.replug()
    board.open_gate()
    assert sim.gate_pulses == [500]


def test_board_absent_at_start_works_once_plugged(sim, open_driver):
    sim.unplug()
    board = open_driver()
    assert not board.connected
    with pytest.raises(RelayBoardGoneError):
        board.ping()
    sim.replug()
    board.ping()
    assert board.connected


def test_closed_driver_refuses(sim, open_driver):
    board = open_driver()
    board.close()
    with pytest.raises(RelayBoardError):
        board.open_gate()
    assert sim.commands == []


def test_dead_board_does_not_keep_the_console_from_acting(sim, open_driver):
    board = open_driver()
    recording = RecordingOutputs()
    outputs = MultiOutputs(board, recording)
    sim.unplug()
    with pytest.raises(RelayBoardGoneError):
        outputs.open_gate()
    assert recording.gate_openings == 1


def test_write_on_a_dead_port_reopens_once_and_sends(sim, open_driver, monkeypatch):
    # A USB board can come back at the same device node, which the path check cannot tell
    # from the old one: the write on the old descriptor fails, and the driver reopens.
    board = open_driver()
    board.ping()
    monkeypatch.setattr(SerialRelayBoard, "_same_device", lambda self, port: True)
    sim.unplug()
    sim.replug()
    board.open_gate()
    assert sim.gate_pulses == [500]
