"""Where the holder types the PIN: a small interface, and a console implementation.

A real counter has a PIN pad (often inside the reader); the demo and the CLI use the console.
Implementations return the digits and forget them: nothing here logs or stores a PIN.
"""

from __future__ import annotations

import getpass
import sys
from typing import Protocol, TextIO

from terminal.errors import OneCardError


class PinEntryCancelled(OneCardError):
    """The holder cancelled, or the pad gave nothing."""

    code = "pin_cancelled"


class PinPad(Protocol):
    def read_pin(self, prompt: str) -> str:
        """Ask the holder for a PIN; raise :class:`PinEntryCancelled` if none is given."""
        ...


class ConsolePinPad:
    """PIN entry on the terminal's console without echo; from ``stream`` lines when given
    (scripts and tests: one PIN per line on standard input)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    def read_pin(self, prompt: str) -> str:
        if self._stream is not None:
            line = self._stream.readline()
            if not line:
                raise PinEntryCancelled("no PIN given (end of input)")
            pin = line.strip()
        else:
            try:
                pin = getpass.getpass(prompt, stream=sys.stderr)
            except (EOFError, KeyboardInterrupt):
                raise PinEntryCancelled("PIN entry cancelled") from None
        if not pin:
            raise PinEntryCancelled("empty PIN")
        return pin
