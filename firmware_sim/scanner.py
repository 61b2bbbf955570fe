"""A simulated serial QR scanner on a real pseudo-terminal.

The pty, its stable path and unplug/replug are :class:`firmware_sim.ptydevice.PtyDevice`'s.
The scanner writes frames (AIM prefix, data, suffix) and reads Honeywell-style serial
commands (``SYN T CR`` trigger, ``SYN U CR`` untrigger) from the host.
"""

from __future__ import annotations

import logging
import os

from firmware_sim.ptydevice import PtyDevice
from terminal.devices.scanframe import SYN, TRIGGER, UNTRIGGER, FrameDecoder, Suffix, encode_frame

log = logging.getLogger(__name__)


class PtyScanner(PtyDevice):
    """A scanner on a pty, reachable at the stable path :attr:`port` while plugged.

    ``directory`` holds the symlink (a fresh temporary directory, removed by
    :meth:`close`, when not given). With ``trigger_mode=True`` the scanner behaves as in
    serial trigger mode: :meth:`scan` reads a code only while triggered, and a good read
    ends the trigger, as on the real device.
    """

    thread_name = "pty scanner"

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        name: str = "scanner0",
        trigger_mode: bool = False,
    ) -> None:
        self.trigger_mode = trigger_mode
        self.triggered = False
        self.commands: list[bytes] = []
        """Every serial command received (``b"T"``, ``b"U"``, ...), in order."""
        super().__init__(directory, name, "onecard-scanner-")

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

    def wait_triggered(self, triggered: bool = True, timeout: float = 5.0) -> bool:
        return self.wait_for(lambda s: s.triggered == triggered, timeout)

    def _plugged(self) -> None:
        self._decoder = FrameDecoder(Suffix.CR, strip_aim=False)

    def _unplugged(self) -> None:
        self.triggered = False

    def _received(self, data: bytes) -> None:
        for frame in self._decoder.feed(data):
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
