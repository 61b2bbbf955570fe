"""The open streams (server-sent events) of a loopback server, and how each one ends.

A stream holds a thread and, on the holder screen, one of a few subscriber slots; a page
that is gone must give both back at once, and a page that stalls must not keep them:

* **The peer goes** - an ``EventSource`` sends nothing after its request, so anything its
  socket has to say (end of file, a reset, bytes) means it is gone, or is no page. One
  thread per server (:class:`PeerWatch`) waits on the sockets of every open stream and
  ends a stream the moment its socket says something: its ``close`` runs (the slot is
  free) without waiting for the next write to fail, which on a quiet screen is the next
  keep-alive, seconds later.
* **The peer stalls** - a write the peer does not take within the write time-out ends the
  stream; the stream's send buffer is small (:data:`SEND_BUFFER`), so a page that stopped
  reading is found after tens of kilobytes of states, not megabytes.
* **The server ends it** - :meth:`OpenStreams.end_oldest` (a new page wants a slot and all
  are taken: the oldest yields) and :meth:`OpenStreams.close` (the server stops). The
  connection is shut down, so a write blocked on it returns at once and the page sees the
  end of its stream.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

SEND_BUFFER = 16 * 1024
"""``SO_SNDBUF`` of a stream's socket (the kernel doubles it): a state is about 2 KB."""


class StreamEnded(ConnectionError):
    """A write to a stream that has ended (the peer went, or the server ended it)."""


class StreamChannel:
    """One open stream, as its pump sees it: :meth:`write` the next frame, :attr:`open`
    until the stream ends, :meth:`wait` for that. Any thread may :meth:`end` it."""

    def __init__(
        self,
        connection: socket.socket,
        write: Callable[[bytes], None],
        close: Callable[[], None],
        on_end: Callable[[StreamChannel], None],
    ) -> None:
        self.connection = connection
        self._write = write
        self._close = close
        self._on_end = on_end
        self._ended = threading.Event()
        self._once = threading.Lock()

    @property
    def open(self) -> bool:
        """False once the stream has ended."""
        return not self._ended.is_set()

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the stream to end; True when it has."""
        return self._ended.wait(timeout)

    def write(self, data: bytes) -> None:
        """Send ``data`` now; :class:`StreamEnded` once the stream has ended, the socket's
        error (``TimeoutError`` after the write time-out) when the peer does not take it."""
        if self._ended.is_set():
            raise StreamEnded("the stream has ended")
        try:
            self._write(data)
        except OSError:
            self.finish()
            raise

    def end(self) -> None:
        """End the stream from any thread: the connection is shut down and the stream's
        ``close`` runs (once)."""
        self.finish(shutdown=True)

    def finish(self, shutdown: bool = False) -> None:
        """The stream is over: ``close`` runs once, whoever gets here first."""
        with self._once:
            if self._ended.is_set():
                return
            self._ended.set()
        if shutdown:
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
        self._on_end(self)
        try:
            self._close()
        except Exception:  # one stream's cleanup must not take the watcher or server down
            log.exception("closing a stream failed")


class PeerWatch:
    """One thread that ends a stream as soon as its peer has anything to say."""

    def __init__(self, name: str) -> None:
        self._selector = selectors.DefaultSelector()
        self._wake_in, self._wake_out = socket.socketpair()
        self._wake_in.setblocking(False)
        self._wake_out.setblocking(False)
        self._selector.register(self._wake_in, selectors.EVENT_READ)
        self._lock = threading.Lock()
        # Changes go through the watcher's own thread: a selector is not meant to be
        # changed by one thread while another waits on it.
        self._changes: list[tuple[bool, StreamChannel]] = []
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def add(self, channel: StreamChannel) -> None:
        self._change(True, channel)

    def remove(self, channel: StreamChannel) -> None:
        self._change(False, channel)

    def close(self) -> None:
        with self._lock:
            self._stopped = True
        self._wake()
        self._thread.join(timeout=5)
        self._selector.close()
        self._wake_in.close()
        self._wake_out.close()

    def _change(self, add: bool, channel: StreamChannel) -> None:
        with self._lock:
            if self._stopped:
                return
            self._changes.append((add, channel))
        self._wake()

    def _wake(self) -> None:
        # Full: a wake-up is pending anyway.
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_out.send(b"\0")

    def _run(self) -> None:
        while True:
            gone: list[StreamChannel] = []
            for key, _ in self._selector.select():
                if key.fileobj is self._wake_in:
                    with contextlib.suppress(BlockingIOError, OSError):
                        self._wake_in.recv(4096)
                else:
                    gone.append(key.data)
            with self._lock:
                changes, self._changes = self._changes, []
                stopped = self._stopped
            for add, channel in changes:
                self._apply(add, channel)
            if stopped:
                return
            for channel in gone:
                # Unregistered first: the socket stays readable until it is closed.
                self._apply(False, channel)
                channel.end()

    def _apply(self, add: bool, channel: StreamChannel) -> None:
        # A stream may have ended before its watch began (then there is nothing to watch),
        # and its connection may be closed already (its handler finished first: the kernel
        # dropped it from the selector by itself).
        with contextlib.suppress(KeyError, ValueError, OSError):
            if not add:
                self._selector.unregister(channel.connection)
            elif channel.open:
                self._selector.register(channel.connection, selectors.EVENT_READ, channel)


class OpenStreams:
    """The open streams of one server, oldest first."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._open: dict[StreamChannel, None] = {}  # insertion order: oldest first
        self._watch: PeerWatch | None = None
        self._closed = False

    def __len__(self) -> int:
        with self._lock:
            return len(self._open)

    def start(
        self,
        connection: socket.socket,
        write: Callable[[bytes], None],
        close: Callable[[], None],
    ) -> StreamChannel:
        """A new open stream on ``connection``, watched; ended at once when the server is
        closing."""
        channel = StreamChannel(connection, write, close, self._forget)
        with self._lock:
            closed = self._closed
            if not closed:
                self._open[channel] = None
                if self._watch is None:
                    self._watch = PeerWatch(f"{self._name}-streams")
                watch = self._watch
        if closed:
            channel.end()
        else:
            watch.add(channel)
        return channel

    def end_oldest(self) -> bool:
        """End the stream open the longest; False when none is open."""
        with self._lock:
            oldest = next(iter(self._open), None)
        if oldest is None:
            return False
        oldest.end()
        return True

    def close(self) -> None:
        """End every open stream and stop watching."""
        with self._lock:
            self._closed = True
            channels = list(self._open)
            watch, self._watch = self._watch, None
        for channel in channels:
            channel.end()
        if watch is not None:
            watch.close()

    def _forget(self, channel: StreamChannel) -> None:
        with self._lock:
            self._open.pop(channel, None)
            watch = self._watch
        if watch is not None:
            watch.remove(channel)
