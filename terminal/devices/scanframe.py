"""Frames of a serial code scanner: suffix framing, AIM prefixes, serial trigger commands.

A serial (or USB CDC) scanner sends each code it reads as one frame: an optional AIM
symbology identifier (ISO/IEC 15424: ``]`` + code character + modifier character, ``]Q1``
for a QR code), the data, then a suffix the installer configured - CR, LF or CR LF.
Nothing else delimits a frame, so the suffix is the only framing there is.

Pure code over bytes, no I/O: :class:`FrameDecoder` is fed whatever chunks the port gives
and returns the complete frames; the driver (``drivers.serial_scanner``) does the reading.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

SYN = 0x16
CR = 0x0D

DEFAULT_MAX_FRAME = 4096
"""Longest frame kept, suffix excluded. A version 40 QR code holds at most 2953 bytes."""


class Suffix(enum.Enum):
    """The frame suffix a scanner is configured to send after each code."""

    CR = b"\r"
    LF = b"\n"
    CRLF = b"\r\n"


@dataclass(frozen=True)
class Frame:
    """One code as the scanner framed it, suffix and AIM prefix removed."""

    raw: bytes
    """The data bytes, exactly as sent (binary-safe)."""
    symbology: str | None = None
    """The AIM identifier without ``]`` (``Q1``, ``d2``, ``E0``), when the frame had one."""


def serial_command(code: bytes) -> bytes:
    """A Honeywell-style serial command: ``SYN`` + ``code`` + ``CR`` (``16 .. 0D``)."""
    return bytes([SYN]) + code + bytes([CR])


TRIGGER = serial_command(b"T")
"""``SYN T CR`` (``16 54 0D``): start reading, as a trigger pull does (serial trigger mode)."""
UNTRIGGER = serial_command(b"U")
"""``SYN U CR`` (``16 55 0D``): stop reading, as a trigger release does."""


def _is_code_char(byte: int) -> bool:
    # ISO/IEC 15424 code characters are letters: A (Code 39) .. Q (QR) .. d (Data Matrix).
    return 0x41 <= byte <= 0x5A or 0x61 <= byte <= 0x7A


def _is_modifier_char(byte: int) -> bool:
    return 0x30 <= byte <= 0x39 or _is_code_char(byte)


def split_aim(data: bytes) -> Frame:
    """``data`` with a leading AIM identifier (``]`` code modifier) removed and reported.

    Data that does not start with a well-formed identifier is returned whole, with
    ``symbology=None``: a ``]`` followed by anything else is just data.
    """
    if len(data) >= 3 and data[0] == 0x5D and _is_code_char(data[1]) and _is_modifier_char(data[2]):
        return Frame(data[3:], data[1:3].decode("ascii"))
    return Frame(data, None)


def encode_frame(data: bytes, symbology: str | None = "Q1", suffix: bytes = b"\r") -> bytes:
    """The bytes a scanner sends for ``data``: ``]`` + ``symbology`` (if any), data, suffix."""
    if symbology is None:
        return data + suffix
    prefix = b"]" + symbology.encode("ascii")
    if len(prefix) != 3 or split_aim(prefix).symbology is None:
        raise ValueError(f"not an AIM symbology identifier: {symbology!r}")
    return prefix + data + suffix


class FrameDecoder:
    """Splits a byte stream into :class:`Frame` values on the configured suffix.

    Feed it chunks of any size, cut anywhere; it keeps the unfinished frame between calls.
    Binary-safe: every byte other than the suffix is data (in CR LF mode a lone CR or LF is
    data). Bounded: when more than ``max_frame`` bytes arrive without a suffix, those bytes
    are dropped, :attr:`overflows` is counted, and everything up to the next suffix is
    dropped too - the tail of an overlong frame is not a frame. Empty frames (a suffix right
    after a suffix, e.g. the LF of a CR LF scanner read in CR mode) are skipped and counted
    in :attr:`empty`.
    """

    def __init__(
        self,
        suffix: Suffix = Suffix.CR,
        max_frame: int = DEFAULT_MAX_FRAME,
        strip_aim: bool = True,
    ) -> None:
        if max_frame < 1:
            raise ValueError("max_frame must be at least 1")
        self.suffix = suffix
        self.max_frame = max_frame
        self.strip_aim = strip_aim
        self.frames = 0
        self.overflows = 0
        self.empty = 0
        self._sep = suffix.value
        self._buffer = bytearray()
        self._discarding = False

    @property
    def pending(self) -> int:
        """Bytes held for a frame not yet complete."""
        return 0 if self._discarding else len(self._buffer)

    def reset(self) -> None:
        """Forget the unfinished frame (the port was reopened: its start is lost)."""
        self._buffer.clear()
        self._discarding = False

    def feed(self, data: bytes) -> list[Frame]:
        """The frames that ``data`` completes, in order."""
        buffer = self._buffer
        sep = self._sep
        # A suffix may straddle the previous chunk and this one (CR | LF).
        search_from = max(0, len(buffer) - len(sep) + 1)
        buffer += data
        frames: list[Frame] = []
        start = 0
        while True:
            end = buffer.find(sep, max(start, search_from))
            if end < 0:
                break
            body = bytes(buffer[start:end])
            start = end + len(sep)
            if self._discarding:
                self._discarding = False
            elif len(body) > self.max_frame:
                self.overflows += 1
            elif not body:
                self.empty += 1
            else:
                self.frames += 1
                frames.append(split_aim(body) if self.strip_aim else Frame(body))
        del buffer[:start]
        # The tail may end with the first bytes of a suffix: keep those, they are not data yet.
        keep = len(sep) - 1
        if self._discarding:
            if len(buffer) > keep:
                del buffer[: len(buffer) - keep]
        elif len(buffer) > self.max_frame + keep:
            self.overflows += 1
            self._discarding = True
            del buffer[: len(buffer) - keep]
        return frames
