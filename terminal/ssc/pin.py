"""Holder PIN verification and change on the SSC (``VERIFY`` ``00 20``, ``CHANGE PIN`` ``80 5E``).

The PIN travels as BCD digits padded with ``F`` nibbles. Outcomes are typed: ``63Cx`` is a
wrong PIN with x tries left, ``6983`` a blocked PIN. A PIN is held only for the length of the
call that sends it: never logged, journaled or kept (the channel's diagnostic trace redacts
PIN commands).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from terminal.devices.reader import CardChannel
from terminal.errors import CardError, OneCardError
from terminal.iso7816.apdu import CommandAPDU, ResponseAPDU
from terminal.iso7816.status_words import SW, describe, tries_left
from terminal.ssc.cardspec import CARD_SPEC
from terminal.ssc.session import select_ssse, ssse_selected

PIN_SEPARATOR = b"\xff"


class PinFormatError(OneCardError):
    """A PIN that is not 4 to 12 digits; nothing was sent to the card."""

    code = "pin_format"


class PinOutcome(enum.Enum):
    OK = "ok"
    WRONG = "wrong"
    BLOCKED = "blocked"


@dataclass(frozen=True)
class PinResult:
    outcome: PinOutcome
    tries_left: int | None = None

    def to_json(self) -> dict[str, object]:
        return {"result": self.outcome.value, "tries_left": self.tries_left}


def encode_pin(pin: str) -> bytes:
    """BCD digits, right-padded with an ``F`` nibble to whole bytes: ``12345`` -> ``12 34 5F``."""
    if not (4 <= len(pin) <= 12 and pin.isascii() and pin.isdigit()):
        raise PinFormatError("a PIN is 4 to 12 digits")
    digits = pin + "F" * (len(pin) % 2)
    return bytes.fromhex(digits)


def verify_command(pin: str) -> CommandAPDU:
    """``VERIFY`` ``00 20 00 00 Lc <PIN>`` (a real log: ``00 20 00 00 03 12 34 56``)."""
    cla, ins, p1, p2 = CARD_SPEC.verify_pin
    return CommandAPDU(cla, ins, p1, p2, encode_pin(pin))


def change_command(old: str, new: str) -> CommandAPDU:
    """``CHANGE PIN`` ``80 5E 01 00 Lc <old> FF <new>``."""
    cla, ins, p1, p2 = CARD_SPEC.change_pin
    return CommandAPDU(cla, ins, p1, p2, encode_pin(old) + PIN_SEPARATOR + encode_pin(new))


def interpret(answer: ResponseAPDU) -> PinResult:
    """The outcome of a VERIFY or CHANGE PIN answer; other status words are a CardError."""
    if answer.sw == SW.OK:
        return PinResult(PinOutcome.OK)
    left = tries_left(answer.sw)
    if answer.sw == SW.AUTH_METHOD_BLOCKED or left == 0:
        return PinResult(PinOutcome.BLOCKED, 0)
    if left is not None:
        return PinResult(PinOutcome.WRONG, left)
    raise CardError(f"PIN command refused: {describe(answer.sw)}", answer.sw)


def _select_ssse(channel: CardChannel) -> None:
    ssse_selected(channel.transmit(select_ssse()))


def verify_pin(channel: CardChannel, pin: str) -> PinResult:
    """Select the SSSE and VERIFY ``pin``."""
    command = verify_command(pin)  # a malformed PIN fails before anything is sent
    _select_ssse(channel)
    return interpret(channel.transmit(command))


def change_pin(channel: CardChannel, old: str, new: str) -> PinResult:
    """Select the SSSE and CHANGE PIN from ``old`` to ``new``."""
    command = change_command(old, new)
    _select_ssse(channel)
    return interpret(channel.transmit(command))
