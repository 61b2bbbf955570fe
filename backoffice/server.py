"""The back office over HTTP(S) (docs/sync.md):

* ``POST /v1/ingest`` - a terminal's journal entries;
* ``POST /v1/events`` - a terminal's events (a holder's "call staff" request...);
* ``GET /v1/hotlist?since=V``, ``GET /v1/trustlist``, ``GET /v1/applist`` - the signed
  documents;
* ``GET /health`` - unauthenticated liveness.

Every ``/v1/`` request is authenticated by the same code path (the terminal's HMAC
signature; 401 unknown/bad/stale, 403 revoked).

Two layers: :class:`BackOffice` answers a request given as (method, path, headers, body) -
routing, authentication, the ingest, event and publication endpoints - and knows nothing of
sockets; :func:`serve` puts it behind a ``ThreadingHTTPServer`` on a socket, optionally TLS.
Every failure becomes a JSON ``{"error", "reason"}`` answer with its status; an unexpected
exception is logged here and answered 500 without details, and never stops the server.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from backoffice import publish
from backoffice.auth import MAX_SKEW_SECONDS, authenticate
from backoffice.errors import (
    BackOfficeError,
    BadRequestError,
    ForbiddenError,
    LengthRequiredError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
)
from backoffice.ingest import parse_ingest_body
from backoffice.storage import EventsResult, IngestResult, Storage
from terminal.errors import ParseError
from terminal.host.clock import Clock, SystemClock
from terminal.wire.canonical import canonical_json
from terminal.wire.events import MAX_EVENTS_PER_REQUEST as MAX_EVENTS
from terminal.wire.events import parse_events_body
from terminal.wire.journal import MAX_ENTRIES, MAX_SEQ

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024 * 1024
CONNECTION_TIMEOUT = 30.0
"""Seconds an idle keep-alive connection or a stalled TLS handshake may hold a thread."""
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
        self._routes = {
            "/v1/ingest": ("POST", self._ingest),
            "/v1/events": ("POST", self._events),
            "/v1/hotlist": ("GET", self._hotlist),
            "/v1/trustlist": ("GET", self._trustlist),
            "/v1/applist": ("GET", self._applist),
        }

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Response:
        """Answer one request. ``path`` is the request target as sent (with the query: it is
        what the signature covers). Never raises."""
        try:
            return self._handle(method, path, headers, body)
        except BackOfficeError as error:
            if error.http_status >= 500:
                log.error("%s %s failed: %s", method, path[:200], error.reason)
            return error_response(error)
        except ParseError as error:
            # Bytes a parser of the wire contract refused (an event, a JSON value...): the
            # request's fault, a typed 400 - never a 500.
            return error_response(BadRequestError(error.reason))
        except Exception:  # the server outlives any bug in one request
            log.exception("%s %s failed", method, path[:200])
            return Response(500, {"error": "internal_error", "reason": "internal error"})

    def _handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Response:
        parts = urlsplit(path)
        if parts.path == "/health":
            if method not in ("GET", "HEAD"):
                raise MethodNotAllowedError("/health answers GET")
            return Response(200, {"status": "ok"})
        route = self._routes.get(parts.path)
        if route is None:
            raise NotFoundError(f"no endpoint {parts.path[:100]!r}")
        expected, endpoint = route
        if method != expected:
            raise MethodNotAllowedError(f"{parts.path} answers {expected}")
        terminal_id = authenticate(
            method,
            path,
            headers,
            body,
            self.storage.terminal_key,
            self.clock.now(),
            self.max_skew,
        )
        return endpoint(terminal_id, parts.query, body)

    # --- endpoints --------------------------------------------------------------------------

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
    ) -> RunningServer:
        """Start serving in a background thread (see :func:`serve`)."""
        return serve(self, host, port, tls_cert, tls_key)


# --- HTTP -----------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a terminal's upload burst uses one connection
    server_version = "onecard-backoffice/1"
    sys_version = ""
    timeout = CONNECTION_TIMEOUT
    server: _HttpServer

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding"):
            raise LengthRequiredError("chunked bodies are not accepted; send Content-Length")
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            if self.command == "POST":
                raise LengthRequiredError("Content-Length is required")
            return b""
        length_text = length_text.strip()
        if not length_text.isascii() or not length_text.isdigit() or len(length_text) > 18:
            raise BadRequestError("bad Content-Length")
        length = int(length_text)
        if length > self.server.backoffice.max_body:
            raise PayloadTooLargeError(f"body over {self.server.backoffice.max_body} bytes")
        body = self.rfile.read(length)
        if len(body) != length:
            raise BadRequestError("body shorter than Content-Length")
        return body

    def _serve(self) -> None:
        try:
            body = self._read_body()
        except BackOfficeError as error:
            # The body was not (fully) read: the connection cannot carry another request.
            self._send(error_response(error, close=True))
            return
        response = self.server.backoffice.handle(self.command, self.path, self.headers, body)
        self._send(response)

    def _send(self, response: Response) -> None:
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
        body = {"error": "bad_request" if code < 500 else "internal_error", "reason": message}
        with contextlib.suppress(OSError):
            self._send(Response(code, body, close=True))

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        backoffice: BackOffice,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self.backoffice = backoffice
        self.ssl_context = ssl_context
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Runs in the connection's own thread: the TLS handshake happens here, not in the
        # accept loop, so a slow or silent client cannot stall other terminals.
        conn = request
        try:
            if self.ssl_context is not None:
                request.settimeout(CONNECTION_TIMEOUT)
                try:
                    conn = self.ssl_context.wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError) as exc:
                    log.info("TLS handshake with %s failed: %s", client_address[0], exc)
                    return
            with self._open_lock:
                self._open.add(conn)
            super().finish_request(conn, client_address)
        finally:
            with self._open_lock:
                self._open.discard(conn)
            if conn is not request:
                with contextlib.suppress(OSError):
                    conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.warning("connection from %s ended with an error", client_address[0], exc_info=True)

    def close_connections(self) -> None:
        with self._open_lock:
            conns = list(self._open)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


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

    def shutdown(self) -> None:
        """Stop accepting, close open connections, and wait for the accept loop to end."""
        self._httpd.shutdown()
        self._httpd.close_connections()
        self._httpd.server_close()
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
) -> RunningServer:
    """Bind ``host:port`` (0: a free port), serve in a daemon thread, and return at once:
    the socket listens before this returns, so a client may connect straight away. With
    ``tls_cert`` and ``tls_key`` (PEM files) the server speaks HTTPS only."""
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("tls_cert and tls_key go together")
    context = make_ssl_context(tls_cert, tls_key) if tls_cert and tls_key else None
    httpd = _HttpServer((host, port), backoffice, context)
    thread = threading.Thread(
        target=httpd.serve_forever, name=f"backoffice-{httpd.server_address[1]}", daemon=True
    )
    thread.start()
    return RunningServer(httpd, thread, "https" if context else "http")
