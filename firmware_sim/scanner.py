"""A simulated serial QR scanner on a real pseudo-terminal.

The driver under test opens :attr:`PtyScanner.port` with pyserial exactly as it opens
``/dev/ttyACM0``: the path is a symlink to the pty's slave (``/dev/pts/N``). The simulator
writes scanner frames (AIM prefix, data, suffix) to the master side, and reads the master
side for Honeywell-style serial commands (``SYN T CR`` trigger, ``SYN U CR`` untrigger).

:meth:`PtyScanner.unplug` closes the pty - the driver's reads fail as they do when a USB
scanner is pulled - and removes the symlink; :meth:`PtyScanner.replug` makes a new pty and
points the same path at it, because a real scanner comes back at the same device path.
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

from terminal.scanframe import SYN, TRIGGER, UNTRIGGER, FrameDecoder, Suffix, encode_frame

log = logging.getLogger(__name__)


class PtyScanner:
    """A scanner on a pty, reachable at the stable path :attr:`port` while plugged.

    ``directory`` holds the symlink (a fresh temporary directory, removed by
    :meth:`close`, when not given). With ``trigger_mode=True`` the scanner behaves as in
    serial trigger mode: :meth:`scan` reads a code only while triggered, and a good read
    ends the trigger, as on the real device.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        name: str = "scanner0",
        trigger_mode: bool = False,
    ) -> None:
        self._own_directory = directory is None
        self.directory = Path(
            tempfile.mkdtemp(prefix="onecard-scanner-") if directory is None else directory
        )
        self.port = str(self.directory / name)
        self.trigger_mode = trigger_mode
        self.triggered = False
        self.commands: list[bytes] = []
        """Every serial command received (``b"T"``, ``b"U"``, ...), in order."""
        self.device: str | None = None
        """The current ``/dev/pts/N`` behind :attr:`port`, None while unplugged."""
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

    # --- the scanner's output -------------------------------------------------------------

    def scan(self, text: str | bytes, symbology: str | None = "Q1", suffix: bytes = b"\r") -> bool:
        """Write the frame of one code read: ``]`` + ``symbology``, data, ``suffix``.

        ``str`` data is sent as Latin-1 (one byte per character). False, and nothing sent,
        when in trigger mode and not triggered.
        """
        data = text.encode("latin-1") if isinstance(text, str) else bytes(text)
        with self._changed:
            if self.trigger_mode:
                if not self.triggered:
                    return False
                self.triggered = False  # a good read ends a serial trigger
                self._changed.notify_all()
        self.write(encode_frame(data, symbology, suffix))
        return True

    def write(self, data: bytes) -> None:
        """Write raw bytes to the line (garbage, a frame cut in two, several frames)."""
        with self._write_lock:
            if self._master is None:
                raise RuntimeError("scanner is unplugged")
            view = memoryview(data)
            while view:
                written = os.write(self._master, view)
                view = view[written:]

    # --- plugging -------------------------------------------------------------------------

    def unplug(self) -> None:
        """Remove the device: the pty is closed (the driver's reads fail) and the path goes."""
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
            self.triggered = False
            self._changed.notify_all()

    def replug(self) -> None:
        """Plug the device (back) in: a new pty, at the same :attr:`port` path."""
        if self.plugged:
            self.unplug()
        master, slave = os.openpty()
        # Raw: no CR/LF translation, no echo - the line carries bytes, not text.
        tty.setraw(slave)
        self.device = os.ttyname(slave)
        self._master, self._slave = master, slave
        self._wake = os.pipe()
        # Swap the link in one rename so the path never points at nothing half-made.
        staging = f"{self.port}.new"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staging)
        os.symlink(self.device, staging)
        os.replace(staging, self.port)
        self._thread = threading.Thread(
            target=self._listen, args=(master, self._wake[0]), name="pty scanner", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Unplug, and remove the directory of the link if this scanner made it."""
        self.unplug()
        if self._own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PtyScanner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- commands from the host -----------------------------------------------------------

    def wait_for(self, predicate: Callable[[PtyScanner], bool], timeout: float) -> bool:
        """True once ``predicate(self)`` holds (checked whenever a command arrives)."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout=timeout)

    def wait_triggered(self, triggered: bool = True, timeout: float = 5.0) -> bool:
        return self.wait_for(lambda s: s.triggered == triggered, timeout)

    def _listen(self, master: int, wake: int) -> None:
        decoder = FrameDecoder(Suffix.CR, strip_aim=False)
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
            for frame in decoder.feed(data):
                self._command(frame.raw)

    def _command(self, line: bytes) -> None:
        start = line.rfind(bytes([SYN]))
        if start < 0:
            log.debug("scanner ignored %d bytes that are not a command", len(line))
            return
        command = line[start:] + b"\r"
        with self._changed:
            self.commands.append(command[1:-1])
            if command == TRIGGER:
                self.triggered = True
            elif command == UNTRIGGER:
                self.triggered = False
            self._changed.notify_all()
