"""A simulated relay board (gate relay, lamp, buzzer, display) on a real pseudo-terminal.

The driver under test (:mod:`drivers.relay_board`) opens :attr:`PtyRelayBoard.port` with
pyserial exactly as it opens ``/dev/ttyUSB0``: the path is a symlink to the pty's slave. The
simulator reads command lines from the master side, answers each with ``OK`` or
``ERR <reason>`` (the protocol is in :mod:`drivers.relay_board`), and records what a real
board would have done: :attr:`gate_pulses`, :attr:`lamp`, :attr:`buzzes`, :attr:`texts`.

:meth:`unplug` closes the pty and removes the symlink, as pulling a USB board does;
:meth:`replug` makes a new pty at the same path (:class:`firmware_sim.ptydevice.PtyDevice`).
:attr:`mute` makes the board swallow commands without answering; :meth:`fail_next` makes it
answer the next command with ``ERR``.
"""

from __future__ import annotations

import logging
import os

from firmware_sim.ptydevice import PtyDevice

log = logging.getLogger(__name__)

MAX_LINE = 512
MAX_TEXT_BYTES = 200
RELAYS = 4
MAX_PULSE_MS = 10_000
MAX_BUZZ_MS = 5_000
LAMPS = ("GREEN", "RED", "OFF")


class PtyRelayBoard(PtyDevice):
    """A relay board on a pty, reachable at the stable path :attr:`port` while plugged.

    ``directory`` holds the symlink (a fresh temporary directory, removed by :meth:`close`,
    when not given).
    """

    thread_name = "pty relay board"

    def __init__(
        self, directory: str | os.PathLike[str] | None = None, name: str = "relay0"
    ) -> None:
        self.commands: list[str] = []
        """Every command line received, in order (without CR LF)."""
        self.pulses: list[tuple[int, int]] = []
        """Every relay pulse: (relay, ms)."""
        self.lamp = "OFF"
        self.lamps: list[str] = []
        """Every lamp setting, in order; :attr:`lamp` is the last."""
        self.buzzes: list[int] = []
        """Every buzz, in ms."""
        self.texts: list[str] = []
        """Every display text, in order."""
        self.mute = False
        """True: take commands and do nothing, answer nothing (a hung board)."""
        self._fail_next: str | None = None
        super().__init__(directory, name, "onecard-relay-")

    @property
    def gate_pulses(self) -> list[int]:
        """The pulses of the gate relay (relay 1), in ms."""
        with self._changed:
            return [ms for relay, ms in self.pulses if relay == 1]

    def fail_next(self, reason: str = "display fault") -> None:
        """Answer the next command with ``ERR <reason>`` and do nothing."""
        with self._changed:
            self._fail_next = reason

    # --- the board --------------------------------------------------------------------------

    def _plugged(self) -> None:
        self._buffer = b""

    def _received(self, data: bytes) -> None:
        self._buffer += data
        while b"\n" in self._buffer:
            raw, self._buffer = self._buffer.split(b"\n", 1)
            self._line(raw.rstrip(b"\r"))
        if len(self._buffer) > MAX_LINE:
            self._buffer = b""
            self._send("ERR line too long")

    def _line(self, raw: bytes) -> None:
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            self._send("ERR not utf-8")
            return
        with self._changed:
            self.commands.append(line)
            if self.mute:
                answer = None
            elif self._fail_next is not None:
                answer, self._fail_next = f"ERR {self._fail_next}", None
            else:
                answer = self._execute(line)
            self._changed.notify_all()
        if answer is not None:
            self._send(answer)

    def _execute(self, line: str) -> str:
        verb, _, rest = line.partition(" ")
        if verb == "PING" and not rest:
            return "OK"
        if verb == "RELAY":
            parts = rest.split(" ")
            if len(parts) != 3 or parts[1] != "PULSE":
                return "ERR usage: RELAY <n> PULSE <ms>"
            relay, ms = _number(parts[0]), _number(parts[2])
            if relay is None or not 1 <= relay <= RELAYS:
                return "ERR bad relay"
            if ms is None or not 1 <= ms <= MAX_PULSE_MS:
                return "ERR bad duration"
            self.pulses.append((relay, ms))
            return "OK"
        if verb == "LAMP":
            if rest not in LAMPS:
                return "ERR bad lamp"
            self.lamp = rest
            self.lamps.append(rest)
            return "OK"
        if verb == "BUZZ":
            ms = _number(rest)
            if ms is None or not 1 <= ms <= MAX_BUZZ_MS:
                return "ERR bad duration"
            self.buzzes.append(ms)
            return "OK"
        if verb == "TEXT":
            if len(rest.encode("utf-8")) > MAX_TEXT_BYTES:
                return "ERR text too long"
            if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in rest):
                return "ERR control character"
            self.texts.append(rest)
            return "OK"
        return "ERR unknown command"

    def _send(self, answer: str) -> None:
        with self._write_lock:
            if self._master is None:
                return
            try:
                os.write(self._master, answer.encode("ascii") + b"\r\n")
            except OSError as exc:
                log.debug("relay board answer lost: %s", exc)


def _number(text: str) -> int | None:
    # ASCII digits only: int() also takes "+5", " 5" and full-width digits.
    if not text.isascii() or not text.isdigit() or len(text) > 6:
        return None
    return int(text)
