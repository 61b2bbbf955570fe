"""The loopback HTTP server the status page, the holder screen and the counter API share.

:class:`LoopbackServer` binds a loopback address only, serves from a daemon thread (one
thread per connection, HTTP/1.0: one request per connection, so closing the server leaves
no connection behind) and answers every request in the same steps:

1. the guard (:mod:`terminal.loopback.guard`): a ``Host`` that is not a loopback name is
   ``bad_host`` before anything else runs;
2. a server with a ``credential`` (:mod:`terminal.loopback.credential`): a request without
   ``Authorization: Bearer`` and that token is ``unauthorized`` (401, ``WWW-Authenticate``),
   whatever its path or method, before any route is looked up;
3. the route: ``not_found``, or ``method_not_allowed`` with ``Allow``;
4. for a state-changing method (not ``GET``, ``HEAD``, ``OPTIONS``): the ``Origin``
   rule, ``foreign_origin``;
5. for a JSON endpoint: ``json_required``; for every request: ``bad_length`` or
   ``body_too_large`` (``max_body``, 4 KiB by default); then ``not_json`` /
   ``not_an_object`` for a JSON endpoint;
6. the endpoint; a failure in it is logged and answered ``internal_error``.

Refusals are JSON in the one shape (:mod:`terminal.loopback.vocabulary`), also the ones
``http.server`` makes by itself (431 for oversized headers, 501 for an unknown method). A
refused body of up to 64 KiB is read first, so the client gets the answer rather than a
connection reset. Every answer carries the server's Content-Security-Policy,
``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer`` and a
``Cache-Control`` (``no-store`` unless the endpoint says otherwise). TCP_NODELAY is set on
every connection; a connection that stalls ends after ``CONNECTION_TIMEOUT``. A stream
(:mod:`terminal.loopback.streams`) ends at once when its peer goes, after
``STREAM_WRITE_TIMEOUT`` when its peer stops reading, and when the server ends it
(:meth:`LoopbackServer.end_oldest_stream`, :meth:`LoopbackServer.close`).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from terminal.loopback import guard
from terminal.loopback.answers import Answer, Request, Routes, Stream, json_answer
from terminal.loopback.credential import BearerToken, challenge
from terminal.loopback.streams import SEND_BUFFER, OpenStreams
from terminal.loopback.vocabulary import (
    BAD_HOST,
    FOREIGN_ORIGIN,
    INTERNAL_ERROR,
    JSON_REQUIRED,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    UNAUTHORIZED,
    Refused,
    error_body,
    kind_for_status,
)

log = logging.getLogger(__name__)

MAX_BODY = 4 * 1024
MAX_DISCARDED_BODY = 64 * 1024
"""A refused body up to this size is read before answering; a larger one is not read."""
CONNECTION_TIMEOUT = 10.0
"""A client that sends less than it announced, or stops reading an answer, does not hold a
thread for ever."""
STREAM_WRITE_TIMEOUT = 5.0
"""A stream whose peer takes none of a write for this long ends (the page stalled)."""
POLL_INTERVAL = 0.05
"""How often the accept loop looks up: :meth:`LoopbackServer.close` (at every runtime
shutdown) waits up to one interval."""
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods that change nothing: the Origin rule does not apply to them."""
DEFAULT_POLICY = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
"""The Content-Security-Policy of a server without pages: nothing may load or run."""


class LoopbackServer:
    """Serves ``routes`` on ``host:port`` (``port`` 0: a free one, see :attr:`port`) from a
    daemon thread, listening before the constructor returns, until :meth:`close`.

    ``title`` names the server in log lines and errors, ``server_version`` is its
    ``Server`` header, ``policy`` its Content-Security-Policy, ``max_body`` the largest
    request body it reads, ``connection_timeout`` how long (seconds) a connection may stall
    in a read or a write, ``stream_write_timeout`` the same for a write of a stream.
    ``credential`` (optional) is the bearer token every request must carry. ``tick``
    (optional) runs every ``poll_interval`` seconds in the serving thread;
    ``poll_interval`` is also the longest :meth:`close` waits for it.
    A host that is not a loopback address is a :class:`~terminal.errors.ConfigError`; a
    port that cannot be bound an :class:`OSError`.
    """

    def __init__(
        self,
        routes: Routes,
        *,
        title: str,
        server_version: str,
        host: str = "127.0.0.1",
        port: int = 0,
        policy: str = DEFAULT_POLICY,
        max_body: int = MAX_BODY,
        tick: Callable[[], None] | None = None,
        poll_interval: float = POLL_INTERVAL,
        connection_timeout: float = CONNECTION_TIMEOUT,
        stream_write_timeout: float = STREAM_WRITE_TIMEOUT,
        credential: BearerToken | None = None,
    ) -> None:
        self.routes = routes
        self.title = title
        self.server_version = server_version
        self.policy = policy
        self.max_body = max_body
        self.tick = tick
        self.connection_timeout = connection_timeout
        self.stream_write_timeout = stream_write_timeout
        self.credential = credential
        self.stopping = threading.Event()
        """Set by :meth:`close`."""
        self.streams = OpenStreams(server_version)
        self.refusals = _RefusalLog(title)
        """Requests refused for want of the credential, logged sparingly."""
        bind = guard.loopback_host(host, title)
        self._httpd = _SocketServer((bind, port), self)
        self.host = str(self._httpd.server_address[0])
        self.port = int(self._httpd.server_address[1])
        self.origin = f"http://{guard.authority_name(self.host)}:{self.port}"
        """The server's own origin (``http://127.0.0.1:PORT``)."""
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": poll_interval},
            name=f"{server_version}-{self.port}",
            daemon=True,
        )
        self._thread.start()
        log.debug("%s listening on %s", title, self.origin)

    def end_oldest_stream(self) -> bool:
        """End the stream that has been open the longest (its ``close`` has run when this
        returns); False when no stream is open."""
        return self.streams.end_oldest()

    def close(self) -> None:
        """Stop serving: open streams end at once, the accept loop within
        ``poll_interval``."""
        self.stopping.set()
        self.streams.close()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


class _SocketServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: LoopbackServer) -> None:
        self.app = app
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def service_actions(self) -> None:
        # Runs every poll interval of serve_forever.
        super().service_actions()
        if self.app.tick is not None:
            self.app.tick()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # No traceback above DEBUG: it could quote a request's data.
        log.warning("%s: a connection ended with an error", self.app.title)
        log.debug("%s: connection error", self.app.title, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    sys_version = ""
    server: _SocketServer

    def setup(self) -> None:
        self.app = self.server.app
        self.timeout = self.app.connection_timeout  # the socket's, set by super().setup()
        super().setup()
        self.server_version = self.app.server_version
        self._body_read = False
        # Each answer (and each event of a stream) is one small write; without this a
        # second one within the peer's delayed-ACK window waits ~40 ms behind Nagle.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle(self) -> None:
        # The browser may give up on an answer (a clip replaced by the next one).
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            super().handle()

    # --- one request -----------------------------------------------------------------------

    def _serve(self) -> None:
        try:
            answer = self._answer()
        except TimeoutError:
            # The client announced more than it sent: nobody to answer.
            self.close_connection = True
            return
        except Refused as refused:
            self._discard_body()
            self.close_connection = True
            answer = json_answer(refused.kind.status, refused.body(), **refused.headers)
        except Exception:
            log.exception("%s: %s %s failed", self.app.title, self.command, self._path())
            self._discard_body()
            answer = json_answer(
                INTERNAL_ERROR.status, error_body(INTERNAL_ERROR, "the server failed")
            )
        if isinstance(answer, Stream):
            self._stream(answer)
        else:
            self._send(answer)

    # These go through the routes (``method_not_allowed`` where a path does not take them);
    # http.server answers any other method 501 itself (send_error: ``not_implemented``).
    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _serve

    def _path(self) -> str:
        return self.path.partition("?")[0]

    def _answer(self) -> Answer | Stream:
        hosts = self.headers.get_all("Host") or []
        if len(hosts) > 1 or not guard.host_allowed(
            hosts[0] if hosts else None, self.app.port, self.app.host
        ):
            raise Refused(BAD_HOST, "only loopback host names are served")
        if self.app.credential is not None:
            self._check_credential(self.app.credential)
        path, _, query = self.path.partition("?")
        found = self.app.routes.find(path)
        if found is None:
            raise Refused(NOT_FOUND, "no such resource")
        endpoints, params = found
        endpoint = endpoints.get(self.command)
        if endpoint is None:
            raise Refused(
                METHOD_NOT_ALLOWED,
                f"{self.command} is not served here",
                headers={"Allow": ", ".join(endpoints)},
            )
        if self.command not in SAFE_METHODS:
            origins = self.headers.get_all("Origin") or [None]
            if not all(guard.origin_allowed(o, self.app.port, self.app.host) for o in origins):
                raise Refused(FOREIGN_ORIGIN, "only this server's own pages may do that")
        if endpoint.json and not guard.json_content_type(self.headers.get("Content-Type")):
            raise Refused(JSON_REQUIRED, "the body must be application/json")
        length = guard.body_length(self.headers.get("Content-Length"), self.app.max_body)
        body = self.rfile.read(length) if length else b""
        self._body_read = True
        request = Request(
            method=self.command,
            path=path,
            query=urllib.parse.parse_qs(query),
            params=params,
            body=guard.json_object(body) if endpoint.json else None,
        )
        return endpoint.handle(request)

    def _check_credential(self, credential: BearerToken) -> None:
        """:class:`Refused` ``unauthorized`` unless the one ``Authorization`` header is the
        server's bearer token. Neither the header nor the token is ever logged."""
        given = self.headers.get_all("Authorization") or []
        if len(given) == 1 and credential.allows(given[0]):
            return
        self.app.refusals.note(self.command, self._path())
        raise Refused(
            UNAUTHORIZED,
            "this server needs its bearer token (Authorization: Bearer)",
            headers={"WWW-Authenticate": challenge(bool(given))},
        )

    def _discard_body(self) -> None:
        """Read a refused body (up to ``MAX_DISCARDED_BODY``) so that the client, still
        sending, gets the answer instead of a reset."""
        if self._body_read:
            return
        self._body_read = True
        text = (self.headers.get("Content-Length") or "").strip()
        if text.isascii() and text.isdigit() and 0 < int(text) <= MAX_DISCARDED_BODY:
            with contextlib.suppress(OSError):
                self.rfile.read(int(text))

    # --- answers ---------------------------------------------------------------------------

    def end_headers(self) -> None:
        # Here rather than in _send, so that every answer has them, also the base class's
        # own (431 for oversized headers) and a stream's.
        self.send_header("Content-Security-Policy", self.app.policy)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        super().end_headers()

    def _send(self, answer: Answer) -> None:
        self.send_response(answer.status)
        if answer.status != 204:
            self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        self.send_header("Cache-Control", answer.cache)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD" and answer.body:
            self.wfile.write(answer.body)

    def _stream(self, stream: Stream) -> None:
        def write(data: bytes) -> None:
            self.wfile.write(data)
            self.wfile.flush()

        # A page that stops reading is found after a small buffer and a short wait.
        self.connection.settimeout(self.app.stream_write_timeout)
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        channel = self.app.streams.start(self.connection, write, stream.close)
        try:
            self.send_response(200)
            self.send_header("Content-Type", stream.content_type)
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            stream.pump(channel)
        except OSError:
            # The page went, stalled past the write time-out, or the stream was ended for
            # a newer page or the server's close; the page reconnects if it is still there.
            pass
        finally:
            channel.finish()
            self.close_connection = True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server's own refusals (bad request line, 414, 431, unknown method) would be
        # HTML; answer them in the one JSON shape like every other.
        self.close_connection = True
        kind = kind_for_status(code)
        reason = message or self.responses.get(code, ("error",))[0]
        self._send(json_answer(code, error_body(kind, reason)))

    def log_message(self, format: str, *args: Any) -> None:
        # The request line has a method and a path only; bodies are never logged.
        log.debug("%s %s %s", self.app.title, self.address_string(), format % args)


class _RefusalLog:
    """Says that requests without the credential are being refused: the first at once, then
    at most one line a minute with the count, so that a misconfigured client is seen and a
    client that insists cannot fill the log."""

    INTERVAL = 60.0

    def __init__(self, title: str) -> None:
        self._title = title
        self._lock = threading.Lock()
        self._count = 0
        self._last = -self.INTERVAL

    def note(self, method: str, path: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._count += 1
            if now - self._last < self.INTERVAL:
                return
            count, self._count, self._last = self._count, 0, now
        log.warning(
            "%s: %d request(s) without its bearer token refused (the last: %s %s)",
            self._title,
            count,
            method,
            path,
        )
