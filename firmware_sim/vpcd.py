"""Put a simulated card into the real PC/SC stack through vsmartcard's vpcd driver.

vpcd is a pcscd reader driver that listens on TCP (port 35963 for its first slot, one port
more for each further slot) and forwards everything pcscd asks of "the card" to whoever
connects. This module is that someone: a virtual ICC that connects, answers and - by
closing the socket - leaves the reader.

Wire format, both directions: a 2-byte big-endian length, then the payload. A one-byte
payload from vpcd is a control message (00 power off, 01 power on, 02 reset, 04 get ATR;
only get ATR is answered); anything longer is a command APDU, answered with the response
APDU. vpcd asks for the ATR every time pcscd polls for card presence, so answering fast
matters as much as answering APDUs fast.

TCP_NODELAY and TCP_QUICKACK are set because the exchange is many tiny request/response
pairs: with Nagle and delayed acks each APDU would wait about 40 ms.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
from typing import Protocol

log = logging.getLogger(__name__)

VPCD_HOST = "127.0.0.1"
VPCD_BASE_PORT = 35963

CTRL_OFF = 0x00
CTRL_ON = 0x01
CTRL_RESET = 0x02
CTRL_ATR = 0x04


class VirtualICC(Protocol):
    """What the bridge needs of a simulated card (a :class:`firmware_sim.cardos.CardOS`)."""

    @property
    def atr(self) -> bytes: ...

    def power_on(self) -> bytes: ...

    def power_off(self) -> None: ...

    def process(self, apdu: bytes) -> bytes: ...


def slot_port(slot: int, base_port: int = VPCD_BASE_PORT) -> int:
    """TCP port of vpcd slot ``slot`` (slots of consecutive vpcd readers are contiguous)."""
    if not 0 <= slot < 64:
        raise ValueError(f"vpcd slot {slot} out of range")
    return base_port + slot


class VpcdBridge:
    """A simulated card in one vpcd slot: :meth:`insert` it, :meth:`remove` it.

    The bridge runs one daemon thread per insertion. If vpcd goes away while the card is
    inserted (pcscd restarted), the thread reconnects by itself as soon as vpcd listens again,
    which is what a card left in a reader looks like to a restarted pcscd.
    """

    def __init__(
        self,
        card: VirtualICC,
        slot: int = 0,
        host: str = VPCD_HOST,
        base_port: int = VPCD_BASE_PORT,
    ) -> None:
        self.card = card
        self.slot = slot
        self.address = (host, slot_port(slot, base_port))
        self.apdu_count = 0
        self._lock = threading.Lock()
        self._inserted = threading.Event()
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._tear_after: int | None = None

    # -- control, called by tests and the CLI ------------------------------------------------

    def insert(self, timeout: float = 10.0) -> None:
        """Insert the card: connect to vpcd and serve it. Returns once vpcd accepted us."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("card is already inserted")
        self._stop.clear()
        self._connected.clear()
        self._inserted.set()
        self._thread = threading.Thread(
            target=self._serve, name=f"vpcd-slot{self.slot}", daemon=True
        )
        self._thread.start()
        if not self._connected.wait(timeout):
            self.remove()
            raise ConnectionError(
                f"vpcd is not listening on {self.address[0]}:{self.address[1]} "
                "(is pcscd running with the vpcd driver?)"
            )

    def remove(self) -> None:
        """Pull the card out of the reader: close the connection to vpcd."""
        self._inserted.clear()
        self._stop.set()
        self._close_socket()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        self._thread = None

    def tear_after(self, apdus: int | None) -> None:
        """Leave the reader instead of answering the ``apdus``-th next command APDU.

        Models a card pulled out (or out of the field) in the middle of a transaction.
        """
        with self._lock:
            self._tear_after = None if apdus is None else self.apdu_count + apdus

    @property
    def inserted(self) -> bool:
        return self._inserted.is_set()

    def wait_connected(self, timeout: float) -> bool:
        """Block until the bridge is connected to vpcd (e.g. after a pcscd restart)."""
        return self._connected.wait(timeout)

    # -- the serving thread -----------------------------------------------------------------

    def _close_socket(self) -> None:
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _connect(self) -> socket.socket | None:
        delay = 0.02
        while not self._stop.is_set():
            try:
                sock = socket.create_connection(self.address, timeout=1.0)
            except OSError:
                # vpcd not listening (pcscd down or restarting): try again with back-off.
                self._stop.wait(delay)
                delay = min(delay * 2, 0.5)
                continue
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _quickack(sock)
            return sock
        return None

    def _serve(self) -> None:
        while not self._stop.is_set():
            sock = self._connect()
            if sock is None:
                return
            with self._lock:
                self._sock = sock
            self._connected.set()
            log.debug("slot %d: connected to vpcd", self.slot)
            try:
                self._answer(sock)
            except OSError as exc:
                log.debug("slot %d: vpcd connection ended: %s", self.slot, exc)
            finally:
                self._connected.clear()
                self._close_socket()
            self.card.power_off()

    def _answer(self, sock: socket.socket) -> None:
        while True:
            header = _recv_exact(sock, 2)
            if header is None:
                return
            (length,) = struct.unpack(">H", header)
            payload = _recv_exact(sock, length) if length else b""
            if payload is None:
                return
            if length == 1:
                reply = self._control(payload[0])
            else:
                with self._lock:
                    self.apdu_count += 1
                    torn = self._tear_after is not None and self.apdu_count > self._tear_after
                if torn:
                    self._tear_after = None
                    self._inserted.clear()
                    self._stop.set()
                    return
                reply = self.card.process(payload)
            if reply is not None:
                sock.sendall(struct.pack(">H", len(reply)) + reply)

    def _control(self, code: int) -> bytes | None:
        if code == CTRL_ATR:
            return self.card.atr
        if code in (CTRL_ON, CTRL_RESET):
            self.card.power_on()
        elif code == CTRL_OFF:
            self.card.power_off()
        else:
            log.warning("slot %d: unknown vpcd control byte %02X", self.slot, code)
        return None


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        # vpcd writes the length and the payload separately: ack each part at once, or its
        # Nagle holds the payload until our delayed ack fires.
        _quickack(sock)
        buf += chunk
    return bytes(buf)


def _quickack(sock: socket.socket) -> None:
    # Linux clears TCP_QUICKACK after use, so it is re-armed after every receive.
    quickack = getattr(socket, "TCP_QUICKACK", None)
    if quickack is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, quickack, 1)


# vpcd readers as scripts/setup.sh registers them: each has two slots, and pcscd names a slot
# "<friendly name> <reader index> <slot>" (index and slot in two hex digits).
VPCD_FRIENDLY_NAMES = ("Virtual PCD", "Virtual PCD B")
SLOTS_PER_READER = 2


def reader_name(slot: int, names: list[str]) -> str | None:
    """The PC/SC name, among ``names``, of the reader that vpcd slot ``slot`` shows up as."""
    reader, sub = divmod(slot, SLOTS_PER_READER)
    if reader >= len(VPCD_FRIENDLY_NAMES):
        return None
    friendly = VPCD_FRIENDLY_NAMES[reader]
    for name in names:
        head, _, tail = name.rpartition(" ")
        prefix, _, index = head.rpartition(" ")
        if prefix == friendly and len(index) == 2 and tail == f"{sub:02X}":
            return name
    return None
