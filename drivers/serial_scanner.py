"""QR and barcode scanners on a serial port (RS-232, or USB CDC-ACM as ``/dev/ttyACM0``).

Through pyserial. The scanner sends one frame per code: optional AIM prefix, data, suffix
(:mod:`terminal.devices.scanframe`). A daemon thread reads whatever arrives, splits it into frames
and queues :class:`terminal.devices.scanner.ScanEvent` values for :meth:`SerialScanner.read`.

When the device goes away (a USB scanner unplugged: the read fails, or the port's path is
gone) the thread closes the port, reports ``gone`` and tries to open the same path again
every ``reconnect_interval`` seconds; when that works it reports ``connected`` and carries
on. The caller does nothing: a scanner replugged at the same path just works again.

``ScanEvent.text`` is the data decoded as Latin-1 by default: one character per byte, so it
never fails and ``text.encode("latin-1") == raw``. Codes of this project are ASCII, for
which Latin-1 and ASCII agree; anything else is for ``raw``.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import logging
import os
import threading
from collections.abc import Callable

import serial

from terminal.devices.scanframe import DEFAULT_MAX_FRAME, TRIGGER, UNTRIGGER, FrameDecoder, Suffix
from terminal.devices.scanner import ScanEvent
from terminal.errors import ScannerError, ScannerGoneError
from terminal.host.clock import Clock, SystemClock

log = logging.getLogger(__name__)

IDLE_CHECK = 0.5
"""Seconds a read waits before checking that the port's path still exists."""
WRITE_TIMEOUT = 1.0


class ScannerState(enum.StrEnum):
    """What ``on_state`` is told (plain strings: ``"connected"``, ``"gone"``)."""

    CONNECTED = "connected"
    GONE = "gone"


class SerialScanner:
    """A serial code scanner: :meth:`read` returns its scans as :class:`ScanEvent`.

    ``port`` is the device path (``/dev/ttyACM0``, a ``/dev/serial/by-id/...`` link);
    ``suffix`` the frame suffix the scanner is set up to send. With ``trigger=True`` the
    scanner is in serial trigger mode - it reads only after ``SYN T CR`` and stops after
    one good read - so the driver arms it whenever the port opens and again after each
    frame, which gives continuous reading; :meth:`trigger` and :meth:`untrigger` work in
    both modes. ``on_state`` is called from the reader thread with ``"gone"`` or
    ``"connected"`` when the device goes or comes back.

    If the port cannot be opened at start the scanner starts as gone and keeps trying, as
    after an unplug (a kiosk may boot before its scanner enumerates);
    :meth:`wait_connected` serves a caller who wants to insist. ``on_state`` then gets
    ``"gone"`` at once and ``"connected"`` when the port opens; a port that opens at once
    is shown by :attr:`connected` alone.
    """

    def __init__(
        self,
        port: str,
        baudrate: int = 9600,
        suffix: Suffix = Suffix.CR,
        trigger: bool = False,
        reconnect_interval: float = 0.2,
        clock: Clock | None = None,
        on_state: Callable[[str], None] | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        max_pending: int = 256,
        encoding: str = "latin-1",
    ) -> None:
        if reconnect_interval <= 0:
            raise ValueError("reconnect_interval must be positive")
        if baudrate <= 0 or max_pending < 1:
            raise ValueError("baudrate and max_pending must be positive")
        self.source = port
        self.port = port
        self.baudrate = baudrate
        self.suffix = suffix
        self.trigger_mode = trigger
        self.reconnect_interval = reconnect_interval
        self.encoding = encoding
        self.dropped = 0
        """Events dropped, oldest first, because more than ``max_pending`` were unread."""
        self._clock = clock or SystemClock()
        self._on_state = on_state
        self._decoder = FrameDecoder(suffix, max_frame)
        self._events: collections.deque[ScanEvent] = collections.deque()
        self._max_pending = max_pending
        self._ready = threading.Condition()
        self._connected = threading.Event()
        self._stop = threading.Event()
        # Guards _serial: the reader thread opens and closes it, callers write to it.
        self._port_lock = threading.Lock()
        self._serial: serial.Serial | None = None
        try:
            self._open()
        except ScannerError as exc:
            log.warning("scanner %s not available yet, retrying: %s", port, exc.reason)
        self._thread = threading.Thread(target=self._run, name=f"scanner {port}", daemon=True)
        self._thread.start()

    # --- the caller's side ----------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while the port is open."""
        return self._connected.is_set()

    @property
    def overflows(self) -> int:
        """Frames dropped for being longer than ``max_frame`` without a suffix."""
        return self._decoder.overflows

    def wait_connected(self, timeout: float | None = None) -> bool:
        """True once the port is open; False when ``timeout`` seconds pass first."""
        return self._connected.wait(timeout)

    def read(self, timeout: float | None = None) -> ScanEvent | None:
        """The next scan, or None when ``timeout`` seconds pass without one (or when the
        scanner is closed and nothing is left)."""
        with self._ready:
            if not self._ready.wait_for(
                lambda: self._events or self._stop.is_set(), timeout=timeout
            ):
                return None
            return self._events.popleft() if self._events else None

    def trigger(self) -> None:
        """Write ``SYN T CR``: start reading (serial trigger mode)."""
        self._write(TRIGGER)

    def untrigger(self) -> None:
        """Write ``SYN U CR``: stop reading."""
        self._write(UNTRIGGER)

    def close(self) -> None:
        """Stop the reader thread (a blocked read is cancelled at once) and close the port."""
        self._stop.set()
        with self._port_lock:
            if self._serial is not None:
                self._serial.cancel_read()
        with self._ready:
            self._ready.notify_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
            if self._thread.is_alive():
                log.warning("scanner %s reader thread did not stop", self.port)

    def __enter__(self) -> SerialScanner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the port -------------------------------------------------------------------------

    def _open(self) -> None:
        """Open and configure the port (8N1, no flow control: what scanners ship with)."""
        try:
            # exclusive: a second reader on the same port would silently take half the bytes.
            port = serial.Serial(
                self.port,
                self.baudrate,
                timeout=IDLE_CHECK,
                write_timeout=WRITE_TIMEOUT,
                exclusive=True,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise ScannerError(f"cannot open {self.port}: {exc}") from exc
        with self._port_lock:
            self._serial = port
        # Bytes of a frame cut by the unplug are not the start of the next one.
        self._decoder.reset()
        self._connected.set()
        if self.trigger_mode:
            self._arm()

    def _drop_port(self) -> None:
        with self._port_lock:
            port, self._serial = self._serial, None
        self._connected.clear()
        if port is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                port.close()

    def _write(self, data: bytes) -> None:
        with self._port_lock:
            port = self._serial
            if port is None:
                raise ScannerGoneError(f"scanner {self.port} is not connected")
            try:
                port.write(data)
            except serial.SerialTimeoutException as exc:
                raise ScannerError(f"scanner {self.port} does not take commands") from exc
            except (serial.SerialException, OSError) as exc:
                # The reader thread notices the same failure and reconnects.
                raise ScannerGoneError(f"scanner {self.port} went away: {exc}") from exc

    def _arm(self) -> None:
        try:
            self._write(TRIGGER)
        except ScannerError as exc:
            log.warning("cannot arm scanner %s: %s", self.port, exc.reason)

    # --- the reader thread ----------------------------------------------------------------

    def _report(self, state: ScannerState) -> None:
        log.info("scanner %s %s", self.port, state.value)
        if self._on_state is None:
            return
        try:
            self._on_state(state.value)
        except Exception:  # a faulty consumer must not kill the reader
            log.exception("scanner state consumer failed on %s", state.value)

    def _run(self) -> None:
        if not self._connected.is_set():
            self._report(ScannerState.GONE)
        while not self._stop.is_set():
            if self._serial is None:
                if self._stop.wait(self.reconnect_interval):
                    break
                try:
                    self._open()
                except ScannerError as exc:
                    log.debug("scanner %s still gone: %s", self.port, exc.reason)
                    continue
                self._report(ScannerState.CONNECTED)
            reason = self._pump()
            if reason is not None:
                log.warning("scanner %s lost: %s", self.port, reason)
                self._drop_port()
                self._report(ScannerState.GONE)
        self._drop_port()
        with self._ready:
            self._ready.notify_all()

    def _pump(self) -> str | None:
        """Read and queue until stopped (None) or the device goes away (the reason)."""
        port = self._serial
        assert port is not None
        # Only a filesystem path can vanish; anything else is checked by reads alone.
        watch_path = os.path.isabs(self.port)
        while not self._stop.is_set():
            try:
                # read(1) returns as soon as one byte is there (or after IDLE_CHECK); the
                # rest of the frame is then taken in one go, so a frame costs a few calls.
                data = port.read(1)
                if data and port.in_waiting:
                    data += port.read(port.in_waiting)
            except (serial.SerialException, OSError) as exc:
                return str(exc)
            if not data:
                if watch_path and not os.path.exists(self.port):
                    return "port path disappeared"
                continue
            self._queue(data)
        return None

    def _queue(self, data: bytes) -> None:
        frames = self._decoder.feed(data)
        if not frames:
            return
        at = self._clock.monotonic()
        events = [
            ScanEvent(
                text=frame.raw.decode(self.encoding, errors="replace"),
                raw=frame.raw,
                symbology=frame.symbology,
                source=self.port,
                at=at,
            )
            for frame in frames
        ]
        with self._ready:
            for event in events:
                if len(self._events) >= self._max_pending:
                    # A stale scan is worse than a lost one: a gate must act on the latest.
                    self._events.popleft()
                    self.dropped += 1
                self._events.append(event)
            self._ready.notify_all()
        # Never log scan contents: a code carries the holder's card data.
        log.debug("scanner %s: %d frame(s)", self.port, len(events))
        if self.trigger_mode:
            self._arm()
