"""The back office's HTTP/1.1 connections on uvicorn, with the limits that keep a client from
holding them (:mod:`backoffice.limits`, docs/sync.md "The back office's answers and limits").

uvicorn parses requests (httptools) and runs the ASGI app; what it does not do is bound a
hostile client: it has no deadline for a request head or a body (a client sending a byte
every few seconds holds a connection for ever), no bound on a head's size, a connection cap
that answers plain text, and a TLS handshake allowed a minute. :class:`GuardedHttpProtocol`
is uvicorn's httptools protocol with those added, per connection, on the event loop's own
timers (no thread, no watchdog):

* **connection cap** - each accepted connection takes a slot of a
  :class:`~backoffice.limits.ConnectionSlots`: served, answered ``503 busy`` with
  ``Retry-After`` once its head is in, or closed at once; nothing waits in a queue;
* **TLS handshake** within ``header_timeout`` (the TLS layer is set up here, with a small
  read buffer: asyncio's default of 256 KiB a connection would be 2.5 GB at 10,000);
* **idle** keep-alive connections closed after ``idle_timeout``;
* **request head** within ``header_timeout`` from its first byte and at most
  ``MAX_HEAD_BYTES`` (``431``; ``414`` for a request line alone over it);
* **body** at ``min_body_rate`` after ``body_grace``, from when the app asks for it (after
  admission: the headers are checked first, and reading stays paused until then, so an
  unadmitted body is never buffered beyond one read);
* **answer** taken by the client at ``min_send_rate`` after ``send_timeout``, from when
  it stops taking it as fast as it is written (the send buffer over its high-water mark),
  on a timer of its own beside the phase's (a client may send its next request while it
  still reads the last answer); the idle deadline starts once the answer is out, not when
  the app has handed it over.

A connection past a deadline is dropped unanswered. An answer given with the body unread
(a refusal) closes the connection after a linger: the back office half-closes and drops
what still arrives for up to ``linger`` seconds, so that the client gets the answer rather
than a TCP reset. Parser errors are answered JSON like everything else.

The protocol depends on uvicorn's ``HttpToolsProtocol`` hooks (``on_headers_complete``,
``on_body``, ``on_message_complete``, ``on_response_complete``, ``cycle``); the pinned
uvicorn range in pyproject.toml is the one these are tested with.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging

try:
    import fcntl
    import termios

    _OUTQ: int | None = termios.TIOCOUTQ
except ImportError:  # not a POSIX system: the kernel's send queue is not looked at
    _OUTQ = None
import socket
import ssl
import struct
import sys
import threading
from asyncio import sslproto
from collections.abc import Callable
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from backoffice.answers import Response, busy_response
from backoffice.limits import MAX_HEAD_BYTES, ConnectionSlots, ServeLimits, Slot

log = logging.getLogger(__name__)

READ_CHUNK = 32 * 1024
"""Bytes read from a connection at a time (plain and TLS). Small enough that 20 strangers'
reads held at once stay in a few MiB, large enough that a 16 MiB body is 512 reads."""
SEND_POLL = 1.0
"""Seconds between looks at whether an answer a client is taking slowly is out (to start
its idle deadline then): only connections with an answer stuck in the kernel are looked at."""
TLS_READ_BUFFER = 64 * 1024
"""Encrypted bytes the TLS layer takes ahead of the app before it stops reading."""


class ConnectionGuard:
    """What the connections of one server process share: its limits, its connection
    slots, the TLS context, and the connections open now (to drop at shutdown)."""

    def __init__(self, limits: ServeLimits, ssl_context: ssl.SSLContext | None) -> None:
        self.limits = limits
        self.ssl_context = ssl_context
        self.slots = ConnectionSlots(limits.max_connections, limits.max_refusing)
        self.open: set[GuardedHttpProtocol] = set()
        self._lock = threading.Lock()

    def connections(self) -> int:
        """Connections open now (served, or being answered 503)."""
        return self.slots.in_use()

    def drop_all(self) -> None:
        """End every connection that is not in the middle of being answered (the server
        is stopping): TLS handshakes, idle keep-alives, heads and bodies coming in."""
        for protocol in list(self.open):
            protocol.drop_unless_answering()


class _Phase(enum.Enum):
    HANDSHAKE = "handshake"
    IDLE = "idle"  # waiting for a request (kept alive, or new)
    HEAD = "head"  # a request head coming in
    ADMITTING = "admitting"  # head in; the app decides whether the body is wanted
    BODY = "body"  # the app reads the body
    SERVING = "serving"  # our own work: no deadline for the client
    SENDING = "sending"  # answered; the client still taking the answer (send-rate rule)
    CLOSING = "closing"  # answered and closing (lingering over unread bytes)


class _SmallBufferTls(sslproto.SSLProtocol):
    """asyncio's TLS layer reading at most :data:`READ_CHUNK` bytes at a time (its own
    buffer is allocated per connection at that size)."""

    max_size = READ_CHUNK


def _no_delay(transport: asyncio.BaseTransport) -> None:
    """Turn Nagle's algorithm off on a client's socket. asyncio does so only for sockets
    whose ``proto`` is ``IPPROTO_TCP``, and ``socket.create_server`` (backoffice.stack)
    makes them with ``proto`` 0: uvicorn writes an answer's head and body apart, so the
    body then waited for the client's delayed ACK - 40 ms on every answer with a body."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):  # the client is already gone: nothing to speed up
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Transport:
    """The transport uvicorn's code holds: the connection's own, but ``close()`` asks the
    protocol, which lingers over a body it did not read instead of resetting the client."""

    def __init__(self, inner: asyncio.Transport, protocol: GuardedHttpProtocol) -> None:
        self.inner = inner
        self._protocol = protocol

    def write(self, data: bytes) -> None:
        self._protocol.written += len(data)
        self.inner.write(data)

    def close(self) -> None:
        self._protocol.close_gracefully()

    def is_closing(self) -> bool:
        return self._protocol.phase is _Phase.CLOSING or self.inner.is_closing()

    def pause_reading(self) -> None:
        self.inner.pause_reading()

    def resume_reading(self) -> None:
        self.inner.resume_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.inner.get_extra_info(name, default)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def guard_of(config: Config) -> ConnectionGuard:
    """The :class:`ConnectionGuard` of the server ``config`` belongs to (made on first use,
    in the process that serves: a worker process gets its own)."""
    getter: Callable[[], ConnectionGuard] | None = getattr(config, "connection_guard", None)
    if getter is None:
        raise TypeError("GuardedHttpProtocol needs a config with connection_guard()")
    return getter()


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the back office's connection limits (module doc)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.guard = guard_of(config)
        self.limits = self.guard.limits
        self.phase = _Phase.HANDSHAKE
        self._raw: asyncio.Transport | None = None
        self._inner: asyncio.Transport | None = None
        self._slot: Slot | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._in_head = False
        self._head_bytes = 0
        self._body_started: float | None = None
        self._body_received = 0
        self._body_pending = False  # a request body not read to its end
        self._connected = False
        self.written = 0  # bytes of answers handed to the transport, for the send rate
        self._send_timer: asyncio.TimerHandle | None = None
        self._send_started: float | None = None
        self._send_base = 0  # bytes taken by the client when the send watch started

    # --- connection ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if self._raw is not None:  # the TLS layer's transport, its handshake done
            self._start(transport)
            return
        self._raw = transport
        slot = self.guard.slots.take()
        if slot is Slot.DROP:
            peer = transport.get_extra_info("peername")
            log.warning("connection from %s closed unanswered: at the limit", _host(peer))
            transport.abort()
            return
        self._slot = slot
        self.guard.open.add(self)
        _set_read_size(transport)
        context = self.guard.ssl_context
        if context is None:
            self._start(transport)
            return
        # The handshake happens under the head's deadline, so a silent client holds its
        # slot no longer than a slow head would.
        waiter = self.loop.create_future()
        waiter.add_done_callback(self._handshake_done)
        tls = _SmallBufferTls(
            self.loop,
            self,
            context,
            waiter,
            server_side=True,
            ssl_handshake_timeout=self.limits.header_timeout,
        )
        transport.set_protocol(tls)
        tls.connection_made(transport)

    def _handshake_done(self, waiter: asyncio.Future[None]) -> None:
        error = None if waiter.cancelled() else waiter.exception()
        if waiter.cancelled() or error is not None:
            peer = self._raw.get_extra_info("peername") if self._raw else None
            log.info("TLS handshake with %s failed: %s", _host(peer), error or "cancelled")
            if self._raw is not None:
                self._raw.abort()
            self._release()

    def _start(self, transport: asyncio.Transport) -> None:
        self._inner = transport
        _no_delay(self._raw or transport)
        if transport is not self._raw and hasattr(transport, "set_read_buffer_limits"):
            transport.set_read_buffer_limits(high=TLS_READ_BUFFER)
        self._connected = True
        super().connection_made(_Transport(transport, self))  # type: ignore[arg-type]
        self._idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self._stop_send_watch()
        self._release()
        if self._connected:
            self._connected = False
            self.phase = _Phase.CLOSING
            super().connection_lost(exc)

    def eof_received(self) -> bool | None:
        # The client sent everything it will: what it sent is still answered (uvicorn's
        # own behaviour), and a lingering close needs to wait no longer.
        if self.phase is _Phase.CLOSING and self._inner is not None:
            self._inner.close()
        return None

    def _release(self) -> None:
        if self._slot is not None:
            self.guard.slots.give_back(self._slot)
            self._slot = None
        self.guard.open.discard(self)

    # --- deadlines ----------------------------------------------------------------------

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self, seconds: float, on_expiry: Callable[[], None]) -> None:
        self._cancel_timer()
        self._timer = self.loop.call_later(seconds, on_expiry)

    def _idle(self) -> None:
        self.phase = _Phase.IDLE
        self._arm(self.limits.idle_timeout, self._idle_expired)

    def _idle_expired(self) -> None:
        self._timer = None
        if self._unsent() > 0:
            # Not idle: the last answer is still in the kernel's send queue (a slow link
            # takes a 256 KiB snapshot range for a minute, and the kernel holds all of
            # it). The client now has the send rate to keep up, then the idle deadline.
            self.phase = _Phase.SENDING
            self._start_send_watch()
            return
        log.debug("closing a connection idle for %g s", self.limits.idle_timeout)
        self._abort()

    def _drop(self, why: str) -> None:
        """The client is past a deadline: drop the connection unanswered."""
        self._timer = None
        log.info("dropping a connection: %s", why)
        self._abort()

    def _abort(self) -> None:
        self.phase = _Phase.CLOSING
        if self._inner is not None:
            self._inner.abort()
        elif self._raw is not None:
            self._raw.abort()

    def drop_unless_answering(self) -> None:
        """At shutdown: end this connection now unless its request is being answered
        (uvicorn then closes it after the answer)."""
        if self.phase is _Phase.SENDING:
            self.close_gracefully()  # the answer is given: let it out, under the send rate
        elif self.phase not in (_Phase.ADMITTING, _Phase.SERVING):
            self._cancel_timer()
            self._abort()

    def _begin_head(self) -> None:
        self.phase = _Phase.HEAD
        self._in_head = True
        self._head_bytes = 0
        seconds = self.limits.header_timeout
        self._arm(seconds, lambda: self._drop(f"request head not in within {seconds:g} s"))

    def _body_wanted(self) -> None:
        """The app asks for the body: from now on it must keep up the minimum rate."""
        if self._body_started is None and self._body_pending:
            self.phase = _Phase.BODY
            self._body_started = self.loop.time()
            self._check_body_rate()

    def _check_body_rate(self) -> None:
        # One timer at the deadline for the bytes received so far; when it fires, the
        # deadline has either moved on with new bytes (set it again) or passed.
        self._timer = None
        if self.phase is not _Phase.BODY or self._body_started is None:
            return
        deadline = self._body_started + self.limits.body_deadline(self._body_received)
        if self.loop.time() >= deadline:
            self._drop(f"body slower than {self.limits.min_body_rate:g} bytes/s")
            return
        self._timer = self.loop.call_at(deadline, self._check_body_rate)

    # --- bytes in -----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.phase is _Phase.CLOSING:
            return  # lingering: what still comes is dropped, never kept
        if self.phase in (_Phase.IDLE, _Phase.SENDING):
            self._begin_head()
        if self._in_head:
            room = MAX_HEAD_BYTES - self._head_bytes
            if len(data) > room:
                self._head_bytes = MAX_HEAD_BYTES
                super().data_received(data[:room])
                if self.phase is _Phase.CLOSING:
                    return
                if self._in_head:
                    self._refuse_overlong_head()
                    return
                data = data[room:]
            else:
                self._head_bytes += len(data)
        super().data_received(data)

    def _refuse_overlong_head(self) -> None:
        if self.headers:
            status, reason = 431, "request head over 64 KiB"
        else:
            status, reason = 414, "request line over 64 KiB"
        self.answer_and_close(Response(status, {"error": "bad_request", "reason": reason}))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_head:  # a pipelined request: its head is counted from here
            self._in_head = True
            self._head_bytes = 0

    def on_headers_complete(self) -> None:
        if self.phase is _Phase.CLOSING:
            return
        self._in_head = False
        self._body_started = None
        self._body_received = 0
        self._body_pending = _announces_body(self.headers)
        if self._slot is Slot.REFUSE:
            self.answer_and_close(busy_response(self.limits.retry_after))
            return
        busy = self.cycle is not None and not self.cycle.response_complete
        super().on_headers_complete()
        if busy:  # pipelined: queued behind the request being answered
            return
        self.phase = _Phase.ADMITTING
        self._cancel_timer()  # admission is our work, not the client's
        if self._body_pending:
            # Nothing more is read until the app, having admitted the request, asks for
            # the body: a refused body is never buffered beyond the read that brought
            # its head.
            self.flow.pause_reading()
        cycle = self.cycle
        receive = cycle.receive

        async def receive_body() -> Any:
            self._body_wanted()
            return await receive()

        # run_asgi looks the method up when the task first runs, which is after this.
        cycle.receive = receive_body  # type: ignore[method-assign]

    def on_body(self, body: bytes) -> None:
        if self.phase is _Phase.CLOSING:
            return
        self._body_received += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self.phase is _Phase.CLOSING:
            return
        self._body_pending = False
        super().on_message_complete()
        if self.phase in (_Phase.ADMITTING, _Phase.BODY):
            self.phase = _Phase.SERVING
            self._cancel_timer()

    def send_400_response(self, msg: str) -> None:
        # httptools refused the bytes: answer JSON like every other refusal.
        self.answer_and_close(
            Response(400, {"error": "bad_request", "reason": "malformed HTTP request"})
        )

    # --- bytes out ----------------------------------------------------------------------

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._unset_keepalive_if_required()  # our idle deadline, not uvicorn's
        if self.phase is _Phase.CLOSING or self._inner is None or self._inner.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.phase = _Phase.SERVING  # a pipelined request started
            self._cancel_timer()
        elif self._in_head:
            self._begin_head_deadline_only()
        elif self.flow.write_paused:
            # The app has handed the answer over, but the client is still taking it (a
            # snapshot range on a slow link): the send rate is its deadline until the
            # answer is out, then the idle one (resume_writing).
            self.phase = _Phase.SENDING
            self._cancel_timer()
        else:
            self._idle()

    def _begin_head_deadline_only(self) -> None:
        self.phase = _Phase.HEAD
        seconds = self.limits.header_timeout
        self._arm(seconds, lambda: self._drop(f"request head not in within {seconds:g} s"))

    def pause_writing(self) -> None:
        super().pause_writing()
        self._start_send_watch()

    # resume_writing is uvicorn's own: the watch goes on until the answer is out of the
    # kernel too (_check_send_rate), since asyncio's buffer draining says only that the
    # kernel took the bytes, not that the client did.

    def _unsent(self) -> int:
        """Bytes of answers written but not yet taken by the client: in asyncio's buffers
        (plain or TLS) and in the kernel's send queue, sent or not but unacknowledged
        (``TIOCOUTQ``; where that is not available, the kernel's part counts as taken).
        Over TLS the buffers mix plaintext and records: records add about 0.2 %, nothing
        to a minimum rate."""
        unsent = 0
        for transport in {id(t): t for t in (self._inner, self._raw) if t is not None}.values():
            with contextlib.suppress(AttributeError, RuntimeError):
                unsent += transport.get_write_buffer_size()
        sock = self._raw.get_extra_info("socket") if self._raw is not None else None
        if sock is not None and _OUTQ is not None:
            with contextlib.suppress(OSError, ValueError):
                queued = fcntl.ioctl(sock.fileno(), _OUTQ, b"\0\0\0\0")
                unsent += int.from_bytes(queued, sys.byteorder, signed=True)
        return unsent

    def _taken(self) -> int:
        """Bytes of answers the client has taken since the connection began."""
        return self.written - self._unsent()

    def _start_send_watch(self) -> None:
        """The client no longer takes the answer as fast as it is written: from now on it
        must take it at ``min_send_rate`` after ``send_timeout`` (ServeLimits.send_deadline).
        A timer of its own: the phase's deadlines (idle, head) go on beside it."""
        if self._send_started is not None:
            return  # already watched: the grace is not given again
        self._send_started = self.loop.time()
        self._send_base = self._taken()
        self._check_send_rate()

    def _stop_send_watch(self) -> None:
        self._send_started = None
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    def _check_send_rate(self) -> None:
        # As for the body: a timer at the deadline for the bytes taken so far; when it
        # fires, the deadline has either moved on (set it again) or passed. It also looks
        # every SEND_POLL seconds whether the answer is out: the kernel tells no one.
        self._send_timer = None
        if self._send_started is None:
            return
        unsent = self._unsent()
        if unsent <= 0 and self.phase is not _Phase.CLOSING:
            self._send_started = None
            if self.phase is _Phase.SENDING:  # the answer is out: now the client may idle
                self._idle()
            return
        taken = self.written - unsent - self._send_base
        deadline = self._send_started + self.limits.send_deadline(taken)
        now = self.loop.time()
        if now >= deadline:
            log.info(
                "dropping a connection: answer taken slower than %g bytes/s (%d bytes in %.1f s)",
                self.limits.min_send_rate, taken, now - self._send_started,
            )  # fmt: skip
            self._send_started = None
            self._cancel_timer()
            self._reset()
            return
        self._send_timer = self.loop.call_at(min(deadline, now + SEND_POLL), self._check_send_rate)

    def _reset(self) -> None:
        """Drop with a reset: the kernel would otherwise go on holding, and retrying, the
        answer the client does not take, after we closed the socket."""
        sock = self._raw.get_extra_info("socket") if self._raw is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._abort()

    def answer_and_close(self, response: Response) -> None:
        """Answer without going through the app (a refusal of the connection layer), then
        close, lingering over whatever the client still sends."""
        if self._inner is None or self.phase is _Phase.CLOSING:
            return
        self.phase = _Phase.SERVING  # so that close_gracefully lingers
        self._body_pending = True
        payload = response.payload()
        lines = [f"HTTP/1.1 {response.status} {_phrase(response.status)}"]
        lines.append("Content-Type: application/json; charset=utf-8")
        lines.append(f"Content-Length: {len(payload)}")
        lines += [f"{name}: {value}" for name, value in response.headers.items()]
        lines.append("Connection: close")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload
        self.written += len(data)
        self._inner.write(data)
        self.close_gracefully()

    def close_gracefully(self) -> None:
        """uvicorn closes (an answer with ``Connection: close``, shutdown...). With a body
        left unread, half-close and drop what still comes for up to ``linger`` seconds,
        then close: closing on unread bytes would send a reset, and a reset can destroy
        the answer before the client reads it."""
        inner = self._inner
        if inner is None or inner.is_closing():
            return
        unread = self._body_pending or self._in_head
        self.phase = _Phase.CLOSING
        if not unread or not self.limits.linger:
            inner.close()
            self._watch_close()
            return
        if inner.can_write_eof():
            inner.write_eof()
        inner.resume_reading()
        self._arm(self.limits.linger, self._end_linger)

    def _end_linger(self) -> None:
        self._timer = None
        if self._inner is not None:
            self._inner.close()
            self._watch_close()

    def _watch_close(self) -> None:
        """Closed with the answer perhaps still buffered: the transport ends once it is out,
        and the send rate bounds how long that may take (an answer never taken, or a TLS
        close the client never completes, ends after ``send_timeout``)."""
        self._cancel_timer()
        self._start_send_watch()

    def shutdown(self) -> None:
        # The server is stopping: a request being answered is finished first (uvicorn
        # closes after it); anything else ends now.
        if self.phase in (_Phase.ADMITTING, _Phase.SERVING) and self.cycle is not None:
            self.cycle.keep_alive = False
            return
        if self.phase is _Phase.SENDING:
            self.close_gracefully()  # the answer is given: let it out, under the send rate
            return
        self._cancel_timer()
        self._abort()


def _announces_body(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"transfer-encoding":
            return True
        if name == b"content-length" and value.strip() not in (b"0", b""):
            return True
    return False


def _set_read_size(transport: asyncio.BaseTransport) -> None:
    # asyncio's socket transports read max_size bytes at a time (256 KiB by default).
    if hasattr(transport, "max_size"):
        transport.max_size = READ_CHUNK  # type: ignore[attr-defined]


def _host(peer: Any) -> str:
    return str(peer[0]) if isinstance(peer, tuple) and peer else "?"


def _phrase(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
