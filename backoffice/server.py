"""The back office over HTTP(S) (docs/sync.md):

* ``POST /v1/ingest`` - a terminal's journal entries;
* ``POST /v1/events`` - a terminal's events (a holder's "call staff" request...);
* ``GET /v1/hotlist?since=V``, ``GET /v1/trustlist``, ``GET /v1/applist`` - the signed
  documents;
* ``GET /health`` - unauthenticated liveness.

Every ``/v1/`` request is authenticated by the same code path (the terminal's HMAC
signature; 401 unknown/bad/stale, 403 revoked).

Two layers. :class:`BackOffice` answers a request and knows nothing of sockets, in two
steps so that no body is read for a request that would be refused anyway:
:meth:`BackOffice.admit` looks at the method, path and headers alone - the endpoint, its
body limit, the terminal's headers (:func:`backoffice.auth.check_headers`) - and
:meth:`BackOffice.respond` checks the signature over the body once it is read and runs the
endpoint; :meth:`BackOffice.handle` is both, for a request already read whole.
:func:`serve` puts it behind an HTTP server on a socket, optionally TLS, with the time and
connection limits of :mod:`backoffice.limits` (a :class:`~backoffice.watchdog.Watchdog`
drops a connection past its deadline). Every failure becomes a JSON ``{"error", "reason"}``
answer with its status; an unexpected exception is logged here and answered 500 without
details, and never stops the server.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import logging
import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from backoffice import publish
from backoffice.auth import MAX_SKEW_SECONDS, Claim, check_body, check_headers
from backoffice.errors import (
    BackOfficeError,
    BadRequestError,
    ForbiddenError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
)
from backoffice.ingest import parse_ingest_body
from backoffice.limits import (
    MAX_HEAD_BYTES,
    ByteBudget,
    ConnectionSlots,
    ServeLimits,
    Slot,
    body_length,
)
from backoffice.storage import EventsResult, IngestResult, Storage
from backoffice.watchdog import Watchdog
from terminal.errors import ParseError
from terminal.host.clock import Clock, SystemClock
from terminal.wire.canonical import canonical_json
from terminal.wire.events import MAX_EVENTS_PER_REQUEST as MAX_EVENTS
from terminal.wire.events import parse_events_body
from terminal.wire.journal import MAX_ENTRIES, MAX_SEQ

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024 * 1024
"""The largest upload body (``POST /v1/ingest``)."""
MAX_EVENTS_BODY_BYTES = 1024 * 1024
"""The largest ``POST /v1/events`` body: 1,000 events of at most ~600 bytes of canonical
JSON each (512 of them ``detail``), with room to spare."""
_SIGNED_CACHE_SIZE = 64


@dataclass(frozen=True)
class Response:
    """An answer: status, JSON body, and whether the connection must close after it (a body
    left unread would be taken for the next request). ``raw``, when given, is the body as
    stored - a published document goes out byte for byte as it was signed and stored."""

    status: int
    body: Mapping[str, Any]
    close: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)
    raw: bytes | None = None

    def payload(self) -> bytes:
        if self.raw is not None:
            return self.raw
        return json.dumps(self.body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def error_response(error: BackOfficeError, close: bool = False) -> Response:
    """The JSON answer for a typed error; 5xx reasons stay in the log, not on the wire."""
    body = error.to_json()
    if error.http_status >= 500:
        body = {"error": error.code, "reason": "internal error; try again later"}
    return Response(error.http_status, body, close=close)


def failure_response(method: str, target: str, error: Exception) -> Response:
    """The answer to a request that raised ``error``: its typed answer, a 400 for bytes a
    parser of the wire contract refused, or a bare 500 (logged) for anything else."""
    if isinstance(error, BackOfficeError):
        if error.http_status >= 500:
            log.error("%s %s failed: %s", method, target[:200], error.reason)
        return error_response(error)
    if isinstance(error, ParseError):
        # Bytes a parser of the wire contract refused (an event, a JSON value...): the
        # request's fault, a typed 400 - never a 500.
        return error_response(BadRequestError(error.reason))
    log.error("%s %s failed", method, target[:200], exc_info=error)
    return Response(500, {"error": "internal_error", "reason": "internal error"})


def busy_response(retry_after: int) -> Response:
    """The answer of a server at its connection limit: come back in ``retry_after`` s."""
    return Response(
        503,
        {"error": "busy", "reason": "too many connections; try again later"},
        close=True,
        headers={"Retry-After": str(retry_after)},
    )


def _stored(what: str, terminal_id: str, result: IngestResult | EventsResult) -> Response:
    """The answer to a stored upload or events batch, ``{"acked_up_to": N}``, logged."""
    log.info(
        "%s %s: %d stored, %d already there, acked_up_to %d",
        what,
        terminal_id,
        result.stored,
        result.skipped,
        result.acked_up_to,
    )
    return Response(200, {"acked_up_to": result.acked_up_to})


def parse_since(query: str) -> int:
    """The ``since`` of ``/v1/hotlist?since=V`` (absent: 0). Raises BadRequestError."""
    try:
        params = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise BadRequestError("malformed query string") from None
    values = [v for k, v in params if k == "since"]
    if len(values) > 1 or any(k != "since" for k, _ in params):
        raise BadRequestError("the only query parameter is one 'since'")
    if not values:
        return 0
    text = values[0]
    if not text.isascii() or not text.isdigit() or len(text) > 19 or int(text) > MAX_SEQ:
        raise BadRequestError("since must be a non-negative integer")
    return int(text)


Endpoint = Callable[[str, str, bytes], Response]
"""An endpoint: (authenticated terminal id, query, body) -> answer."""


@dataclass(frozen=True)
class Route:
    """An endpoint, the methods it answers and the largest body it takes."""

    methods: tuple[str, ...]
    endpoint: Endpoint
    max_body: int
    signed: bool = True


@dataclass(frozen=True)
class Admission:
    """A request whose method, path and headers :meth:`BackOffice.admit` let in: its body
    (``length`` bytes) may now be read and given to :meth:`BackOffice.respond`. ``claim``
    is the terminal it says it is (None for an unsigned endpoint)."""

    method: str
    target: str
    length: int
    route: Route
    claim: Claim | None


class BackOffice:
    """The back office's request handling over a :class:`Storage`.

    ``publication_key`` signs hotlist deltas as they are asked for (trust and application
    lists are signed once, when published); ``clock`` is the time requests are checked
    against (±``max_skew`` seconds).
    """

    def __init__(
        self,
        storage: Storage,
        publication_key: publish.PublicationKey,
        clock: Clock | None = None,
        *,
        max_body: int = MAX_BODY_BYTES,
        max_skew: float = MAX_SKEW_SECONDS,
        max_entries: int = MAX_ENTRIES,
        max_events: int = MAX_EVENTS,
    ) -> None:
        self.storage = storage
        self.publication_key = publication_key
        self.clock = clock or SystemClock()
        self.max_body = max_body
        self.max_skew = max_skew
        self.max_entries = max_entries
        self.max_events = max_events
        self._signed: OrderedDict[bytes, dict[str, Any]] = OrderedDict()
        self._signed_lock = threading.Lock()
        events_body = min(max_body, MAX_EVENTS_BODY_BYTES)
        self._routes = {
            "/health": Route(("GET", "HEAD"), self._health, 0, signed=False),
            "/v1/ingest": Route(("POST",), self._ingest, max_body),
            "/v1/events": Route(("POST",), self._events, events_body),
            "/v1/hotlist": Route(("GET",), self._hotlist, 0),
            "/v1/trustlist": Route(("GET",), self._trustlist, 0),
            "/v1/applist": Route(("GET",), self._applist, 0),
        }

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Response:
        """Answer one request read whole. ``path`` is the request target as sent (with the
        query: it is what the signature covers). Never raises."""
        try:
            admission = self.admit(method, path, headers, len(body))
        except Exception as error:  # the server outlives any bug in one request
            return failure_response(method, path, error)
        return self.respond(admission, body)

    def admit(self, method: str, target: str, headers: Mapping[str, str], length: int) -> Admission:
        """Decide from the request line and headers alone whether a request's body of
        ``length`` bytes is worth reading: the endpoint exists and answers ``method``, the
        body is within that endpoint's limit, and a signed endpoint's headers name an
        enrolled, unrevoked terminal at a time within the allowed skew. Raises the typed
        :class:`BackOfficeError` to answer with (404, 405, 413, 401, 403)."""
        path = urlsplit(target).path
        route = self._routes.get(path)
        if route is None:
            raise NotFoundError(f"no endpoint {path[:100]!r}")
        if method not in route.methods:
            raise MethodNotAllowedError(f"{path} answers {' or '.join(route.methods)}")
        if length > route.max_body:
            if route.max_body == 0:
                raise PayloadTooLargeError(f"{method} {path} takes no body")
            raise PayloadTooLargeError(f"{path} takes at most {route.max_body} bytes")
        claim = None
        if route.signed:
            lookup, now = self.storage.terminal_key, self.clock.now()
            claim = check_headers(headers, lookup, now, self.max_skew)
        return Admission(method, target, length, route, claim)

    def respond(self, admission: Admission, body: bytes) -> Response:
        """Answer an admitted request now that its body is read: the signature over the
        body, then the endpoint. Never raises."""
        method, target = admission.method, admission.target
        try:
            if len(body) != admission.length:
                raise BadRequestError("body length is not the one announced")
            terminal_id = ""
            if admission.claim is not None:
                terminal_id = check_body(admission.claim, method, target, body)
            return admission.route.endpoint(terminal_id, urlsplit(target).query, body)
        except Exception as error:  # the server outlives any bug in one request
            return failure_response(method, target, error)

    # --- endpoints --------------------------------------------------------------------------

    def _health(self, terminal_id: str, query: str, body: bytes) -> Response:
        return Response(200, {"status": "ok"})

    def _ingest(self, terminal_id: str, query: str, body: bytes) -> Response:
        if query:
            raise BadRequestError("/v1/ingest takes no query")
        batch = parse_ingest_body(body, self.max_entries)
        if batch.terminal_id != terminal_id:
            raise ForbiddenError("a terminal uploads its own journal only")
        return _stored("ingest", terminal_id, self.storage.ingest(terminal_id, batch.entries))

    def _events(self, terminal_id: str, query: str, body: bytes) -> Response:
        if query:
            raise BadRequestError("/v1/events takes no query")
        sender, events = parse_events_body(body, self.max_events)
        if sender != terminal_id:
            raise ForbiddenError("a terminal sends its own events only")
        result = self.storage.store_events(terminal_id, events, self.clock.now())
        return _stored("events", terminal_id, result)

    def _hotlist(self, terminal_id: str, query: str, body: bytes) -> Response:
        since = parse_since(query)
        snapshot = self.storage.hotlist_snapshot(since)
        return Response(200, self._sign_cached(publish.hotlist_document(since, snapshot)))

    def _sign_cached(self, document: dict[str, Any]) -> dict[str, Any]:
        # Many terminals ask for the same delta; an SM2 signature each time is wasted work.
        key = canonical_json(document)
        with self._signed_lock:
            signed = self._signed.get(key)
            if signed is not None:
                self._signed.move_to_end(key)
                return signed
        signed = publish.sign_document(document, self.publication_key)
        with self._signed_lock:
            self._signed[key] = signed
            while len(self._signed) > _SIGNED_CACHE_SIZE:
                self._signed.popitem(last=False)
        return signed

    def _stored_document(self, kind: str, query: str) -> Response:
        if query:
            raise BadRequestError("this endpoint takes no query")
        document = self.storage.document_text(kind)
        if document is None:
            raise NotFoundError(f"no {kind} published yet")
        # As stored: the back office does not read its signed documents again, and a
        # terminal checks what arrives anyway (a document altered in storage is refused).
        return Response(200, {}, raw=document.encode("utf-8", "surrogatepass"))

    def _trustlist(self, terminal_id: str, query: str, body: bytes) -> Response:
        return self._stored_document(publish.KIND_TRUSTLIST, query)

    def _applist(self, terminal_id: str, query: str, body: bytes) -> Response:
        return self._stored_document(publish.KIND_APPLIST, query)

    # --- operator actions (the CLI's) -------------------------------------------------------

    def publish(self, kind: str, body: object) -> dict[str, Any]:
        """Sign and store a new version of the trust list or application list."""
        return self.storage.publish_document(
            kind,
            lambda version: publish.sign_document(
                publish.prepare_document(kind, body, version), self.publication_key
            ),
        )

    def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        limits: ServeLimits | None = None,
    ) -> RunningServer:
        """Start serving in a background thread (see :func:`serve`)."""
        return serve(self, host, port, tls_cert, tls_key, limits)


# --- HTTP ---------------------------------------------------------------------------------

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


class RunningServer:
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

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def make_ssl_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A TLS server context (TLS 1.2 at least) with the certificate chain and key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


def serve(
    backoffice: BackOffice,
    host: str = "127.0.0.1",
    port: int = 0,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    limits: ServeLimits | None = None,
) -> RunningServer:
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
    return RunningServer(httpd, thread, "https" if context else "http")
