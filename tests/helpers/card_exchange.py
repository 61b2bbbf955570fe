"""In-process exchanges with a simulated card (unit tests only: integration goes through
pcscd); in-process connections are the ``inprocess`` reader back-end's
(:class:`drivers.inprocess.InProcessConnection`)."""

from __future__ import annotations

from firmware_sim.cardos import CardOS
from terminal.devices.reader import Interface
from terminal.iso7816.apdu import ResponseAPDU


def tx(card: CardOS, apdu: str | bytes) -> tuple[bytes, int]:
    raw = bytes.fromhex(apdu) if isinstance(apdu, str) else apdu
    response = ResponseAPDU.from_bytes(card.process(raw))
    return response.data, response.sw


class ScriptedConnection:
    """A CardConnection answering from a table of command bytes -> answer bytes: a card of
    the field's shape without a simulator. Unlisted commands answer 6D00; every command
    sent is kept in ``sent``."""

    def __init__(
        self,
        answers: dict[bytes, bytes],
        atr: bytes = bytes.fromhex("3B6D000000814A444686605199000001AC"),
        protocol: str = "T=1",
    ) -> None:
        self.answers = answers
        self.atr = atr
        self.reader = "scripted"
        self.protocol = protocol
        self.interface = Interface.CONTACT
        self.sent: list[bytes] = []

    def transmit_raw(self, apdu: bytes) -> bytes:
        self.sent.append(bytes(apdu))
        return self.answers.get(bytes(apdu), b"\x6d\x00")

    def close(self) -> None:
        pass
