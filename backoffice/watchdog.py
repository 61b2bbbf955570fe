"""One thread that ends connections past their deadline.

A socket's own timeout bounds one read, not a request: a client sending a byte every few
seconds never trips it and holds its server thread for ever. Here each connection has a
deadline for what it is doing now (its TLS handshake, its request head, its body, taking
the answer), moved by the thread serving it; when one passes, the watchdog shuts the
socket down. The serving thread, blocked in a read or a write, then sees the end of the
stream or an error, and ends - which is what frees it.

Shutting down is the one thing done to another thread's socket: it is safe while that
thread is blocked in it, and the serving thread still closes the socket itself.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Watchdog:
    """Deadlines for sockets, each shut down when its deadline passes.

    ``watch(sock, seconds, why)`` sets or moves a socket's deadline (``why`` is logged when
    it passes; None for a normal end such as an idle keep-alive connection), ``pause``
    keeps it tracked without one (the server's own work), ``forget`` stops tracking it.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._deadlines: dict[socket.socket, tuple[float, str | None]] = {}
        self._wake = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="backoffice-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()
        if self._thread.is_alive():
            self._thread.join()

    def watch(self, sock: socket.socket, seconds: float, why: str | None = None) -> None:
        """Shut ``sock`` down ``seconds`` from now unless moved or forgotten before."""
        at = self._clock() + seconds
        with self._wake:
            earlier = at < self._deadlines.get(sock, (math.inf, None))[0]
            self._deadlines[sock] = (at, why)
            if earlier:  # a later one needs no wake: the thread finds it when it wakes
                self._wake.notify()

    def pause(self, sock: socket.socket) -> None:
        """Keep ``sock`` tracked (for :meth:`drop_all`) with no deadline."""
        with self._wake:
            self._deadlines[sock] = (math.inf, None)

    def forget(self, sock: socket.socket) -> None:
        with self._wake:
            self._deadlines.pop(sock, None)

    def tracked(self) -> int:
        with self._wake:
            return len(self._deadlines)

    def drop_all(self) -> None:
        """Shut every tracked socket down now (the server is stopping)."""
        with self._wake:
            socks = list(self._deadlines)
        for sock in socks:
            _shut(sock)

    def _run(self) -> None:
        while True:
            with self._wake:
                if self._stopped:
                    return
                now = self._clock()
                expired = [(s, why) for s, (at, why) in self._deadlines.items() if at <= now]
                for sock, _ in expired:
                    del self._deadlines[sock]
                if not expired:
                    nearest = min((at for at, _ in self._deadlines.values()), default=math.inf)
                    self._wake.wait(None if nearest == math.inf else nearest - now)
                    continue
            for sock, why in expired:
                if why is None:
                    log.debug("closing a connection at its deadline")
                else:
                    log.info("dropping a connection: %s", why)
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    # The plain socket's shutdown even for a TLS socket: ssl.SSLSocket.shutdown also drops
    # its TLS state, which the thread blocked in it is still using.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
