"""The small interface the terminal needs of a card reader, and the events readers raise.

Drivers (``drivers/``) implement these protocols; the domain only ever sees them. A
:class:`CardChannel` wraps a driver's raw transmit with the ISO 7816-4 response rules
(``61xx`` -> GET RESPONSE, ``6Cxx`` -> re-issue with the exact Le) and counts every APDU that
crossed the wire, because on a real card each one costs 5-20 ms.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from terminal.errors import CardUnresponsiveError
from terminal.iso7816.apdu import CommandAPDU, ResponseAPDU
from terminal.iso7816.status_words import is_bytes_available, is_wrong_le


class Interface(enum.Enum):
    CONTACT = "contact"
    CONTACTLESS = "contactless"


@dataclass(frozen=True)
class ReaderInfo:
    """A reader as the service lists it, with what is in it right now."""

    name: str
    card_present: bool
    atr: bytes | None


class CardConnection(Protocol):
    """A powered card in a reader, ready for APDUs."""

    reader: str
    atr: bytes
    protocol: str  # "T=0" or "T=1"
    interface: Interface

    def transmit_raw(self, apdu: bytes) -> bytes:
        """Send one command APDU and return the card's raw answer (data + SW1 SW2)."""
        ...

    def close(self) -> None: ...


class ReaderBackend(Protocol):
    """A family of readers (PC/SC, ...), chosen by name from the configuration."""

    def readers(self) -> list[ReaderInfo]: ...

    def connect(self, reader: str) -> CardConnection: ...


# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReaderAdded:
    reader: str


@dataclass(frozen=True)
class ReaderRemoved:
    reader: str


@dataclass(frozen=True)
class CardInserted:
    reader: str
    atr: bytes


@dataclass(frozen=True)
class CardRemoved:
    reader: str


@dataclass(frozen=True)
class ServiceLost:
    reason: str


@dataclass(frozen=True)
class ServiceRestored:
    pass


ReaderEvent = (
    ReaderAdded | ReaderRemoved | CardInserted | CardRemoved | ServiceLost | ServiceRestored
)
EventSink = Callable[[ReaderEvent], None]


# --- the channel ----------------------------------------------------------------------------

GET_RESPONSE_INS = 0xC0
PIN_INSTRUCTIONS = frozenset({0x20, 0x24, 0x2C, 0x5E})
"""Instructions whose command data is a PIN: VERIFY (20), CHANGE REFERENCE DATA (24), RESET
RETRY COUNTER (2C, unblock: PUK and new PIN), CHANGE PIN (80 5E). Whatever keeps a command
beyond the call that sends it (the diagnostic trace here, trace files) keeps :func:`hide_pin`
of it."""
MAX_CHAINED_RESPONSES = 64  # 64 * 256 bytes: far beyond any SSC answer, bounds a looping card


def hide_pin(apdu: bytes) -> bytes:
    """``apdu`` with its command data zeroed when it carries a PIN (:data:`PIN_INSTRUCTIONS`,
    any class): header and Lc kept, so it still reads as the command it was. Any other
    command unchanged."""
    if len(apdu) > 5 and apdu[1] in PIN_INSTRUCTIONS:
        return bytes(apdu[:5]) + bytes(len(apdu) - 5)
    return bytes(apdu)


class CardChannel:
    """APDU exchange with response chaining over a :class:`CardConnection`.

    ``transmit`` returns the final answer: it follows ``61xx`` with GET RESPONSE
    (``00 C0 00 00 xx``) and concatenates the data, and on ``6Cxx`` re-issues the same command
    with Le = xx once. ``apdu_count`` counts every APDU sent, chained ones included.
    """

    def __init__(self, connection: CardConnection) -> None:
        self.connection = connection
        self.apdu_count = 0
        self.trace: list[tuple[bytes, bytes]] | None = None
        """Set to a list to record every (command, answer) pair, for diagnostics."""

    def transmit(self, command: CommandAPDU) -> ResponseAPDU:
        response = self._send(command)
        if is_wrong_le(response.sw):
            response = self._send(command.with_le(response.sw2 or 256))
        data = bytearray(response.data)
        for _ in range(MAX_CHAINED_RESPONSES):
            if not is_bytes_available(response.sw):
                return ResponseAPDU(bytes(data), response.sw)
            get_response = CommandAPDU(
                command.cla & 0x03, GET_RESPONSE_INS, 0, 0, le=response.sw2 or 256
            )
            response = self._send(get_response)
            if is_wrong_le(response.sw):
                response = self._send(get_response.with_le(response.sw2 or 256))
            data += response.data
        raise CardUnresponsiveError("card keeps answering 61xx: response chaining does not end")

    def _send(self, command: CommandAPDU) -> ResponseAPDU:
        raw = command.to_bytes()
        self.apdu_count += 1
        answer = self.connection.transmit_raw(raw)
        if self.trace is not None:
            # PIN data never leaves the call that sends it, not even into a trace.
            self.trace.append((hide_pin(raw), answer))
        return ResponseAPDU.from_bytes(answer)
