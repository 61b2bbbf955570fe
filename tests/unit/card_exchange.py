"""In-process exchanges with a simulated card (unit tests only: integration goes through pcscd)."""

from __future__ import annotations

from firmware_sim.cardos import CardOS
from terminal.apdu import ResponseAPDU
from terminal.reader import Interface


def tx(card: CardOS, apdu: str | bytes) -> tuple[bytes, int]:
    raw = bytes.fromhex(apdu) if isinstance(apdu, str) else apdu
    response = ResponseAPDU.from_bytes(card.process(raw))
    return response.data, response.sw


class InProcessConnection:
    """A CardConnection straight onto a CardOS: unit tests only (integration uses pcscd)."""

    def __init__(self, card: CardOS) -> None:
        self.card = card
        self.atr = card.power_on()
        self.reader = "in-process"
        self.protocol = card.protocol
        self.interface = Interface.CONTACT

    def transmit_raw(self, apdu: bytes) -> bytes:
        return self.card.process(apdu)

    def close(self) -> None:
        self.card.power_off()
