"""One APDU to an in-process simulated card, the answer split into data and status word."""

from __future__ import annotations

from firmware_sim.cardos import CardOS
from terminal.apdu import ResponseAPDU


def tx(card: CardOS, apdu: str | bytes) -> tuple[bytes, int]:
    raw = bytes.fromhex(apdu) if isinstance(apdu, str) else apdu
    response = ResponseAPDU.from_bytes(card.process(raw))
    return response.data, response.sw
