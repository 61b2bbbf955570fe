"""A simulated relay board (gate relay, lamp, buzzer, display) on a real pseudo-terminal.

The driver under test (:mod:`drivers.relay_board`) opens :attr:`PtyRelayBoard.port` with
pyserial exactly as it opens ``/dev/ttyUSB0``: the path is a symlink to the pty's slave. The
simulator reads command lines from the master side, answers each with ``OK`` or
``ERR <reason>`` (the protocol is in :mod:`drivers.relay_board`), and records what a real
board would have done: :attr:`gate_pulses`, :attr:`lamp`, :attr:`buzzes`, :attr:`texts`.

:meth:`unplug` closes the pty and removes the symlink, as pulling a USB board does;
:meth:`replug` makes a new pty at the same path. :attr:`mute` makes the board swallow
commands without answering; :meth:`fail_next` makes it answer the next command with ``ERR``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import shutil
import tempfile
import threading
import tty
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

MAX_LINE = 512
MAX_TEXT_BYTES = 200
RELAYS = 4
MAX_PULSE_MS = 10_000
MAX_BUZZ_MS = 5_000
LAMPS = ("GREEN", "RED", "OFF")


class PtyRelayBoard:
    """A relay board on a pty, reachable at the stable path :attr:`port` while plugged.

    ``directory`` holds the symlink (a fresh temporary directory, removed by :meth:`close`,
    when not given).
    """

    def __init__(
        self, directory: str | os.PathLike[str] | None = None, name: str = "relay0"
    ) -> None:
        self._own_directory = directory is None
        self.directory = Path(
            tempfile.mkdtemp(prefix="onecard-relay-") if directory is None else directory
        )
        self.port = str(self.directory / name)
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
        self.device: str | None = None
        """The current ``/dev/pts/N`` behind :attr:`port`, None while unplugged."""
        self._fail_next: str | None = None
        self._changed = threading.Condition()
        self._write_lock = threading.Lock()
        self._master: int | None = None
        self._slave: int | None = None
        self._wake: tuple[int, int] | None = None
        self._thread: threading.Thread | None = None
        self.replug()

    @property
    def plugged(self) -> bool:
        return self._master is not None

    @property
    def gate_pulses(self) -> list[int]:
        """The pulses of the gate relay (relay 1), in ms."""
        with self._changed:
            return [ms for relay, ms in self.pulses if relay == 1]

    def fail_next(self, reason: str = "display fault") -> None:
        """Answer the next command with ``ERR <reason>`` and do nothing."""
        with self._changed:
            self._fail_next = reason

    # --- plugging ---------------------------------------------------------------------------

    def unplug(self) -> None:
        """Remove the device: the pty is closed (the driver's I/O fails) and the path goes."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.port)
        if self._thread is not None and self._wake is not None:
            os.write(self._wake[1], b"x")
            self._thread.join(timeout=5)
        self._thread = None
        with self._write_lock:
            for fd in (self._master, self._slave, *(self._wake or ())):
                if fd is not None:
                    os.close(fd)
            self._master = self._slave = self._wake = None
        self.device = None
        with self._changed:
            self._changed.notify_all()

    def replug(self) -> None:
        """Plug the device (back) in: a new pty, at the same :attr:`port` path."""
        if self.plugged:
            self.unplug()
        master, slave = os.openpty()
        # Raw: no CR/LF translation, no echo - the line carries bytes, not text.
        tty.setraw(slave)
        self.device = os.ttyname(slave)
        # The slave stays open here too: with no slave open, reads on the master fail (EIO)
        # before the driver has opened the port.
        self._master, self._slave = master, slave
        self._wake = os.pipe()
        # Swap the link in one rename so the path never points at nothing half-made.
        staging = f"{self.port}.new"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staging)
        os.symlink(self.device, staging)
        os.replace(staging, self.port)
        self._thread = threading.Thread(
            target=self._listen, args=(master, self._wake[0]), name="pty relay board", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Unplug, and remove the directory of the link if this board made it."""
        self.unplug()
        if self._own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PtyRelayBoard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- waiting ----------------------------------------------------------------------------

    def wait_for(self, predicate: Callable[[PtyRelayBoard], bool], timeout: float) -> bool:
        """True once ``predicate(self)`` holds (checked whenever a command arrives)."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout=timeout)

    # --- the board --------------------------------------------------------------------------

    def _listen(self, master: int, wake: int) -> None:
        buffer = b""
        while True:
            ready, _, _ = select.select([master, wake], [], [])
            if wake in ready:
                return
            try:
                data = os.read(master, 1024)
            except OSError:  # EIO: every slave descriptor closed
                return
            if not data:
                return
            buffer += data
            while b"\n" in buffer:
                raw, buffer = buffer.split(b"\n", 1)
                self._line(raw.rstrip(b"\r"))
            if len(buffer) > MAX_LINE:
                buffer = b""
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
