"""Command and response APDUs as the card sees them (ISO/IEC 7816-3 12.1, 7816-4 5.1).

:func:`parse_command` reads the bytes a reader sends into a :class:`Command`: cases 1 to 4,
short and extended lengths. It is the card's own parser, written from ISO, so that a terminal
encoding mistake meets a card that reads the standard and says no.

=========  ============================================  ===========================
case       bytes after ``CLA INS P1 P2``                  Le
=========  ============================================  ===========================
1          nothing                                        none
2 short    ``Le``                                         1..256 (00 = 256)
3 short    ``Lc (01..FF) data``                           none
4 short    ``Lc data Le``                                 1..256
2 ext.     ``00 Le1 Le2``                                 1..65536 (0000 = 65536)
3 ext.     ``00 Lc1 Lc2 (0001..FFFF) data``               none
4 ext.     ``00 Lc1 Lc2 data Le1 Le2``                    1..65536
=========  ============================================  ===========================

Anything else raises :class:`terminal.errors.ApduError`; the card OS answers it ``6700``.
"""

from __future__ import annotations

from dataclasses import dataclass

from firmware_sim.spec.iso7816 import EXTENDED_LE_MAX, SHORT_LE_MAX
from terminal.errors import ApduError

HEADER_LENGTH = 4


@dataclass(frozen=True)
class Command:
    """``CLA INS P1 P2 [Lc data] [Le]``; ``le`` None when absent."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None
    extended: bool = False

    @property
    def case(self) -> int:
        """The ISO 7816-3 case: 1 nothing, 2 Le only, 3 data only, 4 both."""
        if self.data:
            return 4 if self.le is not None else 3
        return 2 if self.le is not None else 1

    def to_bytes(self) -> bytes:
        """The bytes of this command, in the form it was read (short or extended)."""
        out = bytearray((self.cla, self.ins, self.p1, self.p2))
        if self.extended:
            if self.data:
                out += b"\x00" + len(self.data).to_bytes(2, "big") + self.data
            if self.le is not None:
                le = (self.le % EXTENDED_LE_MAX).to_bytes(2, "big")
                out += le if self.data else b"\x00" + le
            return bytes(out)
        if self.data:
            out += bytes((len(self.data),)) + self.data
        if self.le is not None:
            out.append(self.le % SHORT_LE_MAX)
        return bytes(out)


def parse_command(raw: bytes) -> Command:
    """Read one command APDU; :class:`ApduError` when the lengths do not add up."""
    raw = bytes(raw)
    if len(raw) < HEADER_LENGTH:
        raise ApduError(f"a command APDU has at least 4 bytes, got {len(raw)}")
    cla, ins, p1, p2 = raw[:HEADER_LENGTH]
    body = raw[HEADER_LENGTH:]
    if not body:
        return Command(cla, ins, p1, p2)
    if len(body) == 1:
        return Command(cla, ins, p1, p2, le=body[0] or SHORT_LE_MAX)
    if body[0] != 0x00:
        lc = body[0]
        if len(body) == 1 + lc:
            return Command(cla, ins, p1, p2, body[1:])
        if len(body) == 2 + lc:
            return Command(cla, ins, p1, p2, body[1:-1], body[-1] or SHORT_LE_MAX)
        raise ApduError(f"Lc {lc} does not match {len(body) - 1} bytes after it")
    # Extended lengths: a 00 byte, then two length bytes.
    if len(body) == 3:
        le = int.from_bytes(body[1:3], "big") or EXTENDED_LE_MAX
        return Command(cla, ins, p1, p2, le=le, extended=True)
    if len(body) < 3:
        raise ApduError("a 00 length byte starts an extended length of 3 bytes")
    lc = int.from_bytes(body[1:3], "big")
    if lc == 0:
        raise ApduError("extended Lc 0000 is not a length")
    if len(body) == 3 + lc:
        return Command(cla, ins, p1, p2, body[3:], extended=True)
    if len(body) == 5 + lc:
        le = int.from_bytes(body[-2:], "big") or EXTENDED_LE_MAX
        return Command(cla, ins, p1, p2, body[3:-2], le, extended=True)
    raise ApduError(f"extended Lc {lc} does not match {len(body) - 3} bytes after it")


@dataclass(frozen=True)
class Response:
    """The card's answer: data, then SW1 SW2."""

    data: bytes
    sw: int

    def to_bytes(self) -> bytes:
        return self.data + self.sw.to_bytes(2, "big")


def status(sw: int) -> Response:
    """An answer that is a status word alone."""
    return Response(b"", sw)
