"""Code scanners (serial, camera): the event they raise and the small interface they share.

A scanner driver turns a device's frames into :class:`ScanEvent` values; the domain never
touches the device. Symbology identifiers follow AIM (ISO/IEC 15424): ``]Q1`` is a QR code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class ScanEvent:
    """One code read by a scanner."""

    text: str
    """The decoded content as text (codes of this project are ASCII)."""
    raw: bytes
    """The content as bytes, exactly as the device gave it (binary-safe)."""
    symbology: str | None = None
    """AIM symbology identifier without the ``]`` (``Q1`` QR code), when the device sent one."""
    source: str = ""
    """Which scanner: a serial port or a camera source."""
    at: float = 0.0
    """Monotonic time the frame was complete."""
    meta: dict[str, object] = field(default_factory=dict, compare=False)


class Scanner(Protocol):
    """A source of scan events: a serial scanner or a camera."""

    source: str

    def read(self, timeout: float | None = None) -> ScanEvent | None:
        """The next event, or None when ``timeout`` seconds pass without one."""
        ...

    def close(self) -> None: ...
