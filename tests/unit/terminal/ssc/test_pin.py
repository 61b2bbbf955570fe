"""Holder PIN: encoding, outcomes, the simulator's persistent retry counter, no PIN in traces."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.inprocess import InProcessConnection
from firmware_sim.pin import decode_pin_block
from firmware_sim.profile import load_sample
from firmware_sim.ssc_applet import build_card
from terminal.devices.pinpad import ConsolePinPad, PinEntryCancelled
from terminal.devices.reader import CardChannel
from terminal.errors import CardError
from terminal.iso7816.apdu import ResponseAPDU
from terminal.ssc.pin import (
    PinFormatError,
    PinOutcome,
    PinResult,
    change_command,
    change_pin,
    encode_pin,
    interpret,
    verify_command,
    verify_pin,
)


def sample_card():
    card = build_card(load_sample("chongqing-2.0"))
    return card, CardChannel(InProcessConnection(card))


def test_encode_pin_pads_with_f():
    assert encode_pin("123456") == bytes.fromhex("123456")
    assert encode_pin("12345") == bytes.fromhex("12345F")
    for bad in ("123", "1234567890123", "12a4", "", "１２３４"):
        with pytest.raises(PinFormatError):
            encode_pin(bad)


def test_commands_on_the_wire():
    assert verify_command("123456").to_bytes().hex().upper() == "0020000003123456"
    wire = change_command("123456", "6543210").to_bytes().hex().upper()
    assert wire == "805E010008" + "123456" + "FF" + "6543210F"


@given(st.text(alphabet="0123456789", min_size=4, max_size=12))
def test_pin_block_round_trip(pin):
    assert decode_pin_block(encode_pin(pin)) == pin


def test_interpret():
    assert interpret(ResponseAPDU(b"", 0x9000)) == PinResult(PinOutcome.OK)
    assert interpret(ResponseAPDU(b"", 0x63C2)) == PinResult(PinOutcome.WRONG, 2)
    assert interpret(ResponseAPDU(b"", 0x63C0)) == PinResult(PinOutcome.BLOCKED, 0)
    assert interpret(ResponseAPDU(b"", 0x6983)) == PinResult(PinOutcome.BLOCKED, 0)
    with pytest.raises(CardError):
        interpret(ResponseAPDU(b"", 0x6A88))


def test_retry_counter_blocks_and_survives_power_cycles():
    card, channel = sample_card()
    assert verify_pin(channel, "123456").outcome is PinOutcome.OK
    assert verify_pin(channel, "000000") == PinResult(PinOutcome.WRONG, 2)
    card.power_off()
    card.power_on()  # pulling the card out must not reset the count
    assert verify_pin(channel, "000000") == PinResult(PinOutcome.WRONG, 1)
    assert verify_pin(channel, "000000") == PinResult(PinOutcome.BLOCKED, 0)
    assert verify_pin(channel, "123456") == PinResult(PinOutcome.BLOCKED, 0)


def test_correct_pin_resets_the_counter():
    _card, channel = sample_card()
    assert verify_pin(channel, "111111").tries_left == 2
    assert verify_pin(channel, "123456").outcome is PinOutcome.OK
    assert verify_pin(channel, "111111").tries_left == 2


def test_change_pin():
    _card, channel = sample_card()
    assert change_pin(channel, "000000", "654321") == PinResult(PinOutcome.WRONG, 2)
    assert change_pin(channel, "123456", "654321").outcome is PinOutcome.OK
    assert verify_pin(channel, "654321").outcome is PinOutcome.OK
    assert verify_pin(channel, "123456").outcome is PinOutcome.WRONG


def test_verify_is_refused_outside_the_ssse():
    card, channel = sample_card()
    card.power_on()
    answer = channel.transmit(verify_command("123456"))
    assert answer.sw != 0x9000


def test_trace_never_holds_the_pin():
    _card, channel = sample_card()
    channel.trace = []
    verify_pin(channel, "123456")
    change_pin(channel, "123456", "987654")
    dumped = b"".join(command for command, _answer in channel.trace)
    assert b"\x12\x34\x56" not in dumped and b"\x98\x76\x54" not in dumped


def test_console_pin_pad_from_stream():
    pad = ConsolePinPad(io.StringIO("123456\n\n"))
    assert pad.read_pin("PIN: ") == "123456"
    with pytest.raises(PinEntryCancelled):
        pad.read_pin("PIN: ")
    with pytest.raises(PinEntryCancelled):
        pad.read_pin("PIN: ")
