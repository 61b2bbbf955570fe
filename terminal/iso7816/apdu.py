"""Command and response APDUs (ISO/IEC 7816-4 section 5), short and extended lengths.

Pure codecs over bytes: no I/O. ``Le`` is the number of bytes expected, 1..65536, or
``None`` when no response data is expected; a short ``Le`` byte of ``00`` means 256 and an
extended ``0000`` means 65536, as on the wire.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from terminal.errors import ApduError

SHORT_MAX_LC = 255
SHORT_MAX_LE = 256
EXTENDED_MAX_LC = 65535
EXTENDED_MAX_LE = 65536


class Case(enum.IntEnum):
    """ISO 7816-3 command cases: 1 no data, 2 Le only, 3 Lc+data, 4 both."""

    ONE = 1
    TWO = 2
    THREE = 3
    FOUR = 4


@dataclass(frozen=True)
class CommandAPDU:
    """``CLA INS P1 P2 [Lc data] [Le]``."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None
    extended: bool = field(default=False, compare=False)
    """Force extended length encoding even when short would do."""

    def __post_init__(self) -> None:
        for name in ("cla", "ins", "p1", "p2"):
            value = getattr(self, name)
            if not 0 <= value <= 0xFF:
                raise ApduError(f"{name.upper()} {value!r} does not fit one byte")
        if len(self.data) > EXTENDED_MAX_LC:
            raise ApduError(f"command data of {len(self.data)} bytes exceeds 65535")
        if self.le is not None and not 1 <= self.le <= EXTENDED_MAX_LE:
            raise ApduError(f"Le {self.le} outside 1..65536")

    @property
    def case(self) -> Case:
        if self.data:
            return Case.FOUR if self.le is not None else Case.THREE
        return Case.TWO if self.le is not None else Case.ONE

    @property
    def is_extended(self) -> bool:
        return (
            self.extended
            or len(self.data) > SHORT_MAX_LC
            or (self.le is not None and self.le > SHORT_MAX_LE)
        )

    def with_le(self, le: int | None) -> CommandAPDU:
        """The same command asking for ``le`` bytes (the re-issue after ``6Cxx``)."""
        return CommandAPDU(self.cla, self.ins, self.p1, self.p2, self.data, le, self.extended)

    def to_bytes(self) -> bytes:
        out = bytearray((self.cla, self.ins, self.p1, self.p2))
        ext = self.is_extended
        if self.data:
            if ext:
                out += b"\x00" + len(self.data).to_bytes(2, "big")
            else:
                out.append(len(self.data))
            out += self.data
        if self.le is not None:
            if ext:
                le = self.le % EXTENDED_MAX_LE  # 65536 -> 0000
                if not self.data:
                    out.append(0)
                out += le.to_bytes(2, "big")
            else:
                out.append(self.le % SHORT_MAX_LE)  # 256 -> 00
        return bytes(out)

    @classmethod
    def from_bytes(cls, raw: bytes) -> CommandAPDU:
        """Parse a command APDU of any case, short or extended."""
        if len(raw) < 4:
            raise ApduError(f"command APDU of {len(raw)} bytes is shorter than its header")
        cla, ins, p1, p2 = raw[:4]
        body = raw[4:]
        n = len(body)
        if n == 0:
            return cls(cla, ins, p1, p2)
        if n == 1:  # case 2 short
            return cls(cla, ins, p1, p2, le=body[0] or SHORT_MAX_LE)
        if body[0] != 0:  # short Lc
            lc = body[0]
            if n == 1 + lc:
                return cls(cla, ins, p1, p2, body[1:])
            if n == 2 + lc:
                return cls(cla, ins, p1, p2, body[1 : 1 + lc], body[-1] or SHORT_MAX_LE)
            raise ApduError(f"short Lc {lc} does not match {n - 1} bytes of body")
        # Extended: the body opens with 00.
        if n == 3:  # case 2 extended
            le = int.from_bytes(body[1:3], "big") or EXTENDED_MAX_LE
            return cls(cla, ins, p1, p2, le=le, extended=True)
        if n < 3:
            raise ApduError("extended length field is truncated")
        lc = int.from_bytes(body[1:3], "big")
        if lc == 0:
            raise ApduError("extended Lc of zero")
        if n == 3 + lc:
            return cls(cla, ins, p1, p2, body[3:], extended=True)
        if n == 5 + lc:
            le = int.from_bytes(body[-2:], "big") or EXTENDED_MAX_LE
            return cls(cla, ins, p1, p2, body[3 : 3 + lc], le, extended=True)
        raise ApduError(f"extended Lc {lc} does not match {n - 3} bytes of body")

    def __str__(self) -> str:
        return self.to_bytes().hex(" ").upper()


@dataclass(frozen=True)
class ResponseAPDU:
    """``[data] SW1 SW2``."""

    data: bytes
    sw: int

    @property
    def sw1(self) -> int:
        return self.sw >> 8

    @property
    def sw2(self) -> int:
        return self.sw & 0xFF

    @property
    def ok(self) -> bool:
        return self.sw == 0x9000

    def to_bytes(self) -> bytes:
        return self.data + self.sw.to_bytes(2, "big")

    @classmethod
    def from_bytes(cls, raw: bytes) -> ResponseAPDU:
        if len(raw) < 2:
            raise ApduError(f"response of {len(raw)} bytes has no status word")
        return cls(bytes(raw[:-2]), int.from_bytes(raw[-2:], "big"))

    def __str__(self) -> str:
        return f"{self.data.hex().upper()} {self.sw:04X}".lstrip()
