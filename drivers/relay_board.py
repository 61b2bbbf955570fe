"""A gate relay, lamp, buzzer and holder display on one serial relay board (pyserial).

Implements :class:`terminal.outputs.Outputs`. The board speaks a line protocol: the host
sends one command line, the board answers one line, and the host sends nothing else until
that answer (or the answer time-out). Lines end in CR LF; the board also takes a bare LF.

Commands (ASCII, upper case, single spaces)::

    RELAY <n> PULSE <ms>    close relay n (1: the gate) for ms milliseconds, 1..10000
    LAMP GREEN|RED|OFF      set the lamp
    BUZZ <ms>               sound the buzzer for ms milliseconds, 1..5000
    TEXT <text>             show one line on the holder display; UTF-8, at most
                            MAX_TEXT_BYTES bytes, no control characters
    PING                    liveness check, does nothing

Answers::

    OK                      done, or started: a pulse or a buzz runs on by itself
    ERR <reason>            not done (unknown command, bad argument, display fault)

On the wire: ``RELAY 1 PULSE 500\\r\\n`` -> ``OK\\r\\n``; ``LAMP PURPLE\\r\\n`` ->
``ERR bad lamp\\r\\n``.

Failures are :class:`terminal.errors.RelayBoardError` values, never a crash: ``ERR`` or a
garbled answer is a ``RelayBoardError``, no answer in time a ``RelayBoardTimeoutError``,
a port that cannot be opened or fails a ``RelayBoardGoneError``. After a failure of the
port the driver closes it and opens the same path again on the next command, so a board
replugged at the same path just works again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import unicodedata

import serial

try:
    import termios
except ImportError:  # not POSIX: pyserial raises SerialException only
    termios = None  # type: ignore[assignment]

from terminal.errors import RelayBoardError, RelayBoardGoneError, RelayBoardTimeoutError
from terminal.outputs import SIGNALS, HolderMessage, Outcome, message_line

log = logging.getLogger(__name__)

GATE_RELAY = 1
MAX_TEXT_BYTES = 200
MAX_ANSWER = 256
WRITE_TIMEOUT = 1.0

# pyserial lets termios.error (not an OSError) out of tcflush on a dead pty or USB port.
_PORT_ERRORS: tuple[type[BaseException], ...] = (serial.SerialException, OSError) + (
    (termios.error,) if termios is not None else ()
)


def clean_text(text: str, limit: int = MAX_TEXT_BYTES) -> str:
    """``text`` fit for a ``TEXT`` command: control characters (a CR LF would end the
    command early) become spaces, and the text is cut to ``limit`` UTF-8 bytes on a
    character boundary."""
    flat = "".join(" " if unicodedata.category(ch).startswith("C") else ch for ch in text)
    encoded = flat.encode("utf-8")
    if len(encoded) <= limit:
        return flat
    return encoded[:limit].decode("utf-8", errors="ignore")


class SerialRelayBoard:
    """The relay board at ``port`` (``/dev/ttyUSB0``, a ``/dev/serial/by-id/...`` link).

    ``gate_pulse_ms`` is how long :meth:`open_gate` closes the gate relay;
    ``answer_timeout`` how long a command waits for ``OK``. If the port cannot be opened
    at start the board counts as gone and the first command tries again (a kiosk may boot
    before its board enumerates). Thread-safe: commands are sent one at a time.
    """

    def __init__(
        self,
        port: str,
        baudrate: int = 9600,
        gate_pulse_ms: int = 500,
        answer_timeout: float = 1.0,
    ) -> None:
        if not 1 <= gate_pulse_ms <= 10_000:
            raise ValueError("gate_pulse_ms must be 1..10000")
        if baudrate <= 0 or answer_timeout <= 0:
            raise ValueError("baudrate and answer_timeout must be positive")
        self.port = port
        self.baudrate = baudrate
        self.gate_pulse_ms = gate_pulse_ms
        self.answer_timeout = answer_timeout
        self._lock = threading.Lock()
        self._serial: serial.Serial | None = None
        self._closed = False
        try:
            self._open()
        except RelayBoardGoneError as exc:
            log.warning("relay board %s not available yet: %s", port, exc.reason)

    @property
    def connected(self) -> bool:
        """True while the port is open (it may still have gone since the last command)."""
        return self._serial is not None

    # --- Outputs ----------------------------------------------------------------------------

    def open_gate(self) -> None:
        """``RELAY 1 PULSE <gate_pulse_ms>``."""
        self.command(f"RELAY {GATE_RELAY} PULSE {self.gate_pulse_ms}")

    def indicate(self, outcome: Outcome) -> None:
        """``LAMP GREEN|RED`` then ``BUZZ <ms>``, as :data:`terminal.outputs.SIGNALS` says."""
        signal = SIGNALS[outcome]
        self.command(f"LAMP {signal.lamp}")
        self.command(f"BUZZ {signal.buzz_ms}")

    def show(self, message: HolderMessage) -> None:
        """``TEXT <title - detail>``, cleaned and cut by :func:`clean_text`."""
        self.command(f"TEXT {clean_text(message_line(message))}")

    def ping(self) -> None:
        """``PING``: raises unless the board answers ``OK``."""
        self.command("PING")

    def close(self) -> None:
        """Close the port; later commands raise :class:`RelayBoardError`."""
        with self._lock:
            self._closed = True
            self._drop_port()

    def __enter__(self) -> SerialRelayBoard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the wire ---------------------------------------------------------------------------

    def command(self, line: str) -> None:
        """Send ``line`` + CR LF and wait for ``OK``.

        Raises :class:`RelayBoardError` on ``ERR`` or a garbled answer,
        :class:`RelayBoardTimeoutError` when nothing comes back in time,
        :class:`RelayBoardGoneError` when the port cannot be opened or fails.
        """
        verb = line.split(" ", 1)[0]  # logs name the verb only: TEXT carries display text
        with self._lock:
            if self._closed:
                raise RelayBoardError(f"relay board {self.port} is closed")
            port = self._current_port()
            payload = line.encode("utf-8") + b"\r\n"
            try:
                # A late answer to a command that timed out must not pass for this one's.
                port.reset_input_buffer()
                port.write(payload)
            except serial.SerialTimeoutException as exc:
                # The port is there but takes no data (flow control held): a reopen would
                # not help, and part of the line may be in the board already.
                raise RelayBoardTimeoutError(
                    f"relay board {self.port} does not take commands"
                ) from exc
            except _PORT_ERRORS as exc:
                # Nothing (or a cut line, which a board that came back never saw) reached a
                # board: one retry on a freshly opened port cannot act twice.
                self._drop_port()
                log.info("relay board %s lost on write (%s); reopening", self.port, exc)
                port = self._current_port()
                try:
                    port.write(payload)
                except _PORT_ERRORS as again:
                    self._drop_port()
                    raise RelayBoardGoneError(
                        f"relay board {self.port} went away: {again}"
                    ) from again
            answer = self._answer(port, verb)
        if answer == "OK":
            return
        if answer.startswith("ERR"):
            reason = answer[3:].strip() or "no reason given"
            raise RelayBoardError(f"relay board {self.port} refused {verb}: {reason}")
        raise RelayBoardError(f"relay board {self.port} answered {verb} with {answer[:40]!r}")

    def _answer(self, port: serial.Serial, verb: str) -> str:
        try:
            raw = port.read_until(b"\n", MAX_ANSWER)
        except _PORT_ERRORS as exc:
            # No retry here: the board may have acted (a second gate pulse lets two in).
            self._drop_port()
            raise RelayBoardGoneError(f"relay board {self.port} went away: {exc}") from exc
        if not raw.endswith(b"\n"):
            if len(raw) >= MAX_ANSWER:
                raise RelayBoardError(f"relay board {self.port} answered {verb} with junk")
            if not os.path.exists(self.port):
                self._drop_port()
                raise RelayBoardGoneError(f"relay board {self.port} is gone (path disappeared)")
            raise RelayBoardTimeoutError(
                f"relay board {self.port} did not answer {verb} within {self.answer_timeout} s"
            )
        return raw.decode("ascii", errors="replace").strip()

    def _current_port(self) -> serial.Serial:
        """The open port; opened again when the previous one failed or the path now leads
        to another device (the board was replugged between two commands)."""
        if self._serial is not None and not self._same_device(self._serial):
            log.info("relay board %s was replugged; reopening", self.port)
            self._drop_port()
        if self._serial is None:
            self._open()
        assert self._serial is not None
        return self._serial

    def _same_device(self, port: serial.Serial) -> bool:
        if not os.path.isabs(self.port):
            return True  # not a filesystem path: only a failing write or read tells
        try:
            path_stat = os.stat(self.port)
            open_stat = os.fstat(port.fileno())
        except _PORT_ERRORS:
            return False
        return (path_stat.st_dev, path_stat.st_ino, path_stat.st_rdev) == (
            open_stat.st_dev,
            open_stat.st_ino,
            open_stat.st_rdev,
        )

    def _open(self) -> None:
        """Open the port 8N1, no flow control (what such boards ship with)."""
        try:
            # exclusive: a second process on the port would take half the answers.
            self._serial = serial.Serial(
                self.port,
                self.baudrate,
                timeout=self.answer_timeout,
                write_timeout=WRITE_TIMEOUT,
                exclusive=True,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise RelayBoardGoneError(f"cannot open relay board {self.port}: {exc}") from exc
        log.info("relay board %s connected", self.port)

    def _drop_port(self) -> None:
        port, self._serial = self._serial, None
        if port is not None:
            with contextlib.suppress(*_PORT_ERRORS):
                port.close()
