"""Today's (before issue 16) hand-written HTTP server of the back office, kept for the
benchmark only (bench/backoffice_stack.py compares it with the Starlette/uvicorn stack of
:mod:`backoffice.stack` in the same run). Nothing else serves with it.

One thread a connection (``http.server``), with the limits of :mod:`backoffice.limits`
applied by a :class:`~backoffice.watchdog.Watchdog`: the same protections as the new stack,
on the old model.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import logging
import socket
import ssl
import threading
import time
from dataclasses import replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from backoffice.limits import (
    MAX_HEAD_BYTES,
    ByteBudget,
    ConnectionSlots,
    ServeLimits,
    Slot,
    body_length,
)
from backoffice.server import (
    Admission,
    BackOffice,
    Response,
    busy_response,
    failure_response,
    make_ssl_context,
)
from backoffice.watchdog import Watchdog

log = logging.getLogger(__name__)

# --- HTTP (legacy) ------------------------------------------------------------------------

BACKSTOP_TIMEOUT = 120.0
"""Seconds one socket read or write may block: the watchdog's deadlines are much shorter;
this only holds should the watchdog itself be gone."""
_CHUNK = 64 * 1024


class _HeadReader:
    """The connection's reader while a request head is read: the same buffered stream (no
    byte of the body is taken from it), counting what ``readline`` returns so that a head
    over ``MAX_HEAD_BYTES`` stops with :class:`http.client.LineTooLong` - which
    http.server answers 431, like any over-long header. A line cut short by the end of the
    stream (a client gone, or dropped at its deadline) ends the connection: http.server
    would take a part of a head for a whole one."""

    def __init__(self, stream: io.BufferedReader, budget: int) -> None:
        self.stream = stream
        self._left = budget

    def readline(self, size: int = -1) -> bytes:
        cap = self._left + 1 if size < 0 else min(size, self._left + 1)
        line = self.stream.readline(cap)
        self._left -= len(line)
        if self._left < 0:
            raise http.client.LineTooLong("request head")
        if line and not line.endswith(b"\n") and len(line) < cap:
            raise ConnectionAbortedError("the connection ended inside a request head")
        return line


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a terminal's upload burst uses one connection
    server_version = "onecard-backoffice/1"
    sys_version = ""
    timeout = BACKSTOP_TIMEOUT
    server: _HttpServer
    stream: io.BufferedReader  # the connection's reader (rfile is swapped while a head is read)
    expects_continue = False

    def handle_one_request(self) -> None:
        # Each phase of a request has its deadline; the watchdog drops the connection when
        # one passes, whatever trickle of bytes keeps the socket's own timeout from firing.
        limits, watchdog = self.server.limits, self.server.watchdog
        self.stream = self.rfile  # type: ignore[assignment]  # makefile("rb"): buffered
        self.expects_continue = False
        watchdog.watch(self.connection, limits.idle_timeout)  # an idle keep-alive: no log
        try:
            started = self.stream.peek(1)
        except OSError:
            started = b""
        if not started:
            self.close_connection = True
            return
        watchdog.watch(
            self.connection,
            limits.header_timeout,
            f"request head not in within {limits.header_timeout:g} s",
        )
        self.rfile = _HeadReader(self.stream, MAX_HEAD_BYTES)  # type: ignore[assignment]
        try:
            super().handle_one_request()
        except http.client.LineTooLong:  # the request line alone is over the budget
            self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
        finally:
            self.rfile = self.stream

    def handle_expect_100(self) -> bool:
        # "Expect: 100-continue" is answered once the headers are admitted (in _serve), so
        # that a client waiting for it sends no body to be refused.
        self.expects_continue = True
        return True

    def _serve(self) -> None:
        self.rfile = self.stream  # the head is read; the body comes from the stream itself
        admission = self._admit()
        if admission is None:
            return
        budget, length = self.server.body_budget, admission.length
        if not budget.reserve(length):
            log.warning("bodies in flight at their limit: %s answered 503", self.path[:100])
            self._refuse(busy_response(self.server.limits.retry_after))
            return
        try:
            if self.expects_continue and length:
                super().handle_expect_100()
            body = self._read_body(length)
            if body is None:
                self.close_connection = True
                return
            self.server.watchdog.pause(self.connection)  # our own work, not the client's
            response = self.server.backoffice.respond(admission, body)
            del body  # gone before its bytes go back to the budget
        finally:
            budget.release(length)
        self._send(response)

    def _admit(self) -> Admission | None:
        """The request's admission from its head, or None once it is answered (refused)."""
        length = None
        try:
            length = body_length(self.command, self.headers)
            return self.server.backoffice.admit(self.command, self.path, self.headers, length)
        except Exception as error:
            response = failure_response(self.command, self.path, error)
            if length == 0:  # nothing left unread: the connection may go on
                self._send(response)
            else:
                self._refuse(response)
            return None

    def _read_body(self, length: int) -> bytes | None:
        """The body, read as it comes under the minimum-rate deadline; None when the client
        went away or was too slow (the connection is then dropped unanswered)."""
        limits, watchdog = self.server.limits, self.server.watchdog
        why = f"body slower than {limits.min_body_rate:g} bytes/s"
        # Kept as it comes, not allocated up front: memory follows what the client sent,
        # not what it announced (and BytesIO hands its buffer over without a copy).
        body = io.BytesIO()
        received = 0
        start = time.monotonic()
        while received < length:
            elapsed = time.monotonic() - start
            watchdog.watch(self.connection, limits.body_deadline(received) - elapsed, why)
            try:
                # read1: one read of the socket, so the deadline moves with each arrival
                # rather than after a whole chunk.
                chunk = self.stream.read1(min(_CHUNK, length - received))
            except OSError:
                chunk = b""
            if not chunk:
                log.info("connection ended %d bytes into a %d-byte body", received, length)
                return None
            body.write(chunk)
            received += len(chunk)
        return body.getvalue()

    def _refuse(self, response: Response) -> None:
        """Answer without reading the body, and close."""
        with contextlib.suppress(OSError):
            self._send(replace(response, close=True))
            self._linger()

    def _linger(self) -> None:
        # The client may still be sending the body we did not read. Closing on unread
        # bytes sends a TCP reset, and a reset can destroy our answer before the client
        # reads it; so half-close, and read and drop what still comes for a moment (never
        # kept: one fixed buffer), bounded by the watchdog.
        seconds = self.server.limits.linger
        if not seconds:
            return
        self.server.watchdog.watch(self.connection, seconds)
        socket.socket.shutdown(self.connection, socket.SHUT_WR)
        sink = bytearray(_CHUNK)
        while self.connection.recv_into(sink):
            pass

    def _send(self, response: Response) -> None:
        limits = self.server.limits
        self.server.watchdog.watch(
            self.connection, limits.send_timeout, f"answer not taken in {limits.send_timeout:g} s"
        )
        payload = response.payload()
        self.send_response(response.status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server's own errors (bad request line, header overflow) answer HTML; answer
        # JSON like everything else.
        self.close_connection = True
        reason = message or HTTPStatus(code).phrase
        error = "bad_request" if code < 500 else "internal_error"
        self._refuse(Response(code, {"error": error, "reason": reason}, close=True))

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class _BusyHandler(_Handler):
    """A connection over the limit: each request is answered 503 with Retry-After, its
    body unread."""

    def _serve(self) -> None:
        self._refuse(busy_response(self.server.limits.retry_after))

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve


class _HttpServer(HTTPServer):
    """One thread a connection, as many as :class:`ServeLimits` lets in."""

    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        backoffice: BackOffice,
        ssl_context: ssl.SSLContext | None,
        limits: ServeLimits,
    ) -> None:
        self.backoffice = backoffice
        self.ssl_context = ssl_context
        self.limits = limits
        self.slots = ConnectionSlots(limits.max_connections, limits.max_refusing)
        self.body_budget = ByteBudget(max(limits.body_memory, backoffice.max_body))
        self.watchdog = Watchdog()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self.watchdog.start()

    def process_request(self, request: Any, client_address: Any) -> None:
        # In the accept loop: decide at once, never wait for room.
        slot = self.slots.take()
        if slot is Slot.DROP:
            log.warning("connection from %s closed unanswered: at the limit", client_address[0])
            self.shutdown_request(request)
            return
        thread = threading.Thread(
            target=self._connection,
            args=(request, client_address, slot),
            name=f"backoffice-conn-{client_address[1]}",
            daemon=True,
        )
        try:
            thread.start()
        except RuntimeError:  # no thread to be had: as good as over the limit
            self.slots.give_back(slot)
            self.shutdown_request(request)

    def _connection(self, request: socket.socket, client_address: Any, slot: Slot) -> None:
        handler = _Handler if slot is Slot.SERVE else _BusyHandler
        conn = request
        try:
            if self.ssl_context is not None:
                # The TLS handshake happens here, in the connection's own thread and under
                # the head's deadline, so a slow or silent client stalls no one else.
                # Wrapping takes the socket over (the plain one is detached): the deadline
                # is set on the TLS socket, before its handshake.
                request.settimeout(BACKSTOP_TIMEOUT)
                conn = self.ssl_context.wrap_socket(
                    request, server_side=True, do_handshake_on_connect=False
                )
                seconds = self.limits.header_timeout
                self.watchdog.watch(conn, seconds, f"no TLS handshake within {seconds:g} s")
                try:
                    conn.do_handshake()
                except (ssl.SSLError, OSError) as exc:
                    log.info("TLS handshake with %s failed: %s", client_address[0], exc)
                    return
            handler(conn, client_address, self)
        except OSError as exc:  # the client went away, or was dropped
            log.debug("connection from %s ended: %s", client_address[0], exc)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.watchdog.forget(request)
            self.watchdog.forget(conn)
            if conn is not request:
                with contextlib.suppress(OSError):
                    conn.close()
            self.shutdown_request(request)
            self.slots.give_back(slot)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.warning("connection from %s ended with an error", client_address[0], exc_info=True)

    def stop(self) -> None:
        """Stop accepting, drop open connections (they end at once), stop the watchdog."""
        self.shutdown()
        self.watchdog.drop_all()
        self.server_close()
        self.watchdog.stop()


class LegacyRunningServer:
    """A back office serving in a background thread: ``.port``, ``.url``, ``.shutdown()``
    (also a context manager)."""

    def __init__(self, httpd: _HttpServer, thread: threading.Thread, scheme: str) -> None:
        self._httpd = httpd
        self._thread = thread
        self.host = str(httpd.server_address[0])
        self.port = int(httpd.server_address[1])
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"{scheme}://{host}:{self.port}"

    @property
    def limits(self) -> ServeLimits:
        return self._httpd.limits

    def connections(self) -> int:
        """Connections open now (served, or being answered 503)."""
        return self._httpd.slots.in_use()

    def shutdown(self) -> None:
        """Stop accepting, close open connections, and wait for the accept loop to end."""
        self._httpd.stop()
        self._thread.join()

    def __enter__(self) -> LegacyRunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def serve_legacy(
    backoffice: BackOffice,
    host: str = "127.0.0.1",
    port: int = 0,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    limits: ServeLimits | None = None,
) -> LegacyRunningServer:
    """Bind ``host:port`` (0: a free port), serve in a daemon thread, and return at once:
    the socket listens before this returns, so a client may connect straight away. With
    ``tls_cert`` and ``tls_key`` (PEM files) the server speaks HTTPS only. ``limits``: the
    deadlines and connection limit (:class:`ServeLimits` defaults)."""
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("tls_cert and tls_key go together")
    context = make_ssl_context(tls_cert, tls_key) if tls_cert and tls_key else None
    httpd = _HttpServer((host, port), backoffice, context, limits or ServeLimits())
    thread = threading.Thread(
        target=httpd.serve_forever, name=f"backoffice-{httpd.server_address[1]}", daemon=True
    )
    thread.start()
    return LegacyRunningServer(httpd, thread, "https" if context else "http")
