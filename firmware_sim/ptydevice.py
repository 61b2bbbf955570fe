"""A simulated serial device on a real pseudo-terminal, at a stable path.

The driver under test opens :attr:`PtyDevice.port` with pyserial exactly as it opens
``/dev/ttyACM0``: the path is a symlink to the pty's slave (``/dev/pts/N``). The simulator
talks on the master side: it writes what the device sends, and a thread reads what the host
sends and hands it to :meth:`PtyDevice._received`.

:meth:`PtyDevice.unplug` closes the pty - the driver's I/O fails as it does when a USB device
is pulled - and removes the symlink; :meth:`PtyDevice.replug` makes a new pty and points the
same path at it, because a real device comes back at the same device path.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import tempfile
import threading
import tty
from collections.abc import Callable
from pathlib import Path
from typing import Self


class PtyDevice:
    """The plugging, the path and the host-to-device thread of a simulated serial device.

    ``directory`` holds the symlink (a fresh temporary directory, removed by :meth:`close`,
    when not given). Subclasses implement :meth:`_received`, and may reset their state in
    :meth:`_plugged` (each new pty) and :meth:`_unplugged` (under the state lock).
    """

    thread_name = "pty device"

    def __init__(self, directory: str | os.PathLike[str] | None, name: str, prefix: str) -> None:
        self._own_directory = directory is None
        self.directory = Path(tempfile.mkdtemp(prefix=prefix) if directory is None else directory)
        self.port = str(self.directory / name)
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

    def write(self, data: bytes) -> None:
        """Write raw bytes to the line, as the device sends them."""
        with self._write_lock:
            if self._master is None:
                raise RuntimeError(f"{self.thread_name} is unplugged")
            view = memoryview(data)
            while view:
                written = os.write(self._master, view)
                view = view[written:]

    # --- plugging -------------------------------------------------------------------------

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
            self._unplugged()
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
        self._plugged()
        # Swap the link in one rename so the path never points at nothing half-made.
        staging = f"{self.port}.new"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staging)
        os.symlink(self.device, staging)
        os.replace(staging, self.port)
        self._thread = threading.Thread(
            target=self._listen, args=(master, self._wake[0]), name=self.thread_name, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Unplug, and remove the directory of the link if this device made it."""
        self.unplug()
        if self._own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the host's side ------------------------------------------------------------------

    def wait_for(self, predicate: Callable[[Self], bool], timeout: float) -> bool:
        """True once ``predicate(self)`` holds (checked whenever the host sends something)."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout=timeout)

    def _listen(self, master: int, wake: int) -> None:
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
            self._received(data)

    def _received(self, data: bytes) -> None:
        """Bytes from the host (the driver), in the listening thread."""
        raise NotImplementedError

    def _plugged(self) -> None:
        """A new pty is in place (before its listening thread starts)."""

    def _unplugged(self) -> None:
        """The pty is gone; called holding the state lock."""
