"""The hospital hand-off: the counter profile serves the holder record of its current
transaction to the hospital information system on loopback (docs/runtime.md).

After each counter transaction the runtime calls :meth:`CounterApi.publish`; the hospital
system then asks, over HTTP on ``127.0.0.1``:

``GET /v1/card``
    200 ``{"status": "ok", "seq": n, "published_at": ISO time, "verdict": ..., "card":
    {... the ``onecard read --reveal`` fields ...}}``, or 200 ``{"status": "error", "seq":
    n, "published_at": ..., "error": code, "reason": text, "code": LD/T 33 code}`` when the
    transaction failed; 404 ``{"status": "empty", "error": "no_card", "code": -2}`` when
    there is nothing (never published, taken, or expired).
``GET /v1/card/ireadcardbas``
    200 ``text/plain``: the LD/T 33 ``iReadCardBas`` pipe string, or the negative error
    code as text (``-2`` when there is nothing, 404).
``DELETE /v1/card`` (optional ``?seq=n``)
    204: the hospital system took the record and it is forgotten. With ``seq``, only
    that record is (409 when a newer card replaced it meanwhile, so it is not lost).
``GET /health``
    200 ``{"status": "ok", "record": true|false}``.

A record is forgotten ``ttl`` seconds after it was published even when nobody takes it, so
holder data does not linger. Personal data is handed over here and never logged: requests
are logged by method and path only. The server binds loopback addresses only, and answers
only requests whose ``Host`` is a loopback name, so a web page cannot reach it through DNS
rebinding.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import logging
import socket
import threading
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from terminal import ldt33
from terminal.errors import ConfigError, OneCardError
from terminal.host.clock import Clock, SystemClock
from terminal.ssc.reading import CardReading

log = logging.getLogger(__name__)

DEFAULT_TTL = 120.0
CONNECTION_TIMEOUT = 10.0
PURGE_INTERVAL = 0.1
"""Seconds between checks for an expired record while nobody asks; also the longest
:meth:`CounterApi.shutdown` waits for the serving loop to notice."""
MAX_DISCARDED_BODY = 64 * 1024


@dataclass(frozen=True)
class _Record:
    seq: int
    published_at: float  # wall time, for the hospital system
    published_mono: float  # monotonic, for expiry
    reading: CardReading | None
    error: OneCardError | None
    verdict: str | None


def loopback_host(host: str) -> str:
    """``host`` if it is a loopback address (``localhost`` becomes ``127.0.0.1``); else
    :class:`ConfigError`: the record carries personal data and must not leave the machine."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise ConfigError(f"counter API host must be a loopback address, not {host!r}") from None
    if not address.is_loopback:
        raise ConfigError(f"counter API host must be a loopback address, not {host!r}")
    return str(address)


def _loopback_name(host_header: str) -> bool:
    name = host_header.strip()
    if name.startswith("["):
        name = name[1 : name.find("]")] if "]" in name else name
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    try:
        loopback_host(name)
    except ConfigError:
        return False
    return True


class CounterApi:
    """Serves the current counter record on ``host:port`` (0: a free port) from a daemon
    thread; listening before the constructor returns. ``.port``, ``.url``, ``.shutdown()``
    (also a context manager).

    ``device_number`` is the terminal device number of the ``iReadCardBas`` string; ``ttl``
    how long (seconds) a record is kept; ``clock`` is injected for tests.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        device_number: str = "",
        ttl: float = DEFAULT_TTL,
        clock: Clock | None = None,
    ) -> None:
        if ttl <= 0:
            raise ConfigError("counter API record ttl must be positive")
        bind = loopback_host(host)
        self.device_number = device_number
        self.ttl = ttl
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._record: _Record | None = None
        self._seq = 0
        try:
            self._httpd = _HttpServer((bind, port), self)
        except OSError as exc:
            raise ConfigError(f"counter API cannot listen on {bind}:{port}: {exc}") from exc
        self.host = str(self._httpd.server_address[0])
        self.port = int(self._httpd.server_address[1])
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{shown}:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": PURGE_INTERVAL},
            name=f"counter-api-{self.port}",
            daemon=True,
        )
        self._thread.start()
        log.info("counter API listening on %s", self.url)

    # --- the runtime's side -----------------------------------------------------------------

    def publish(
        self,
        reading: CardReading | None,
        error: OneCardError | None,
        verdict: str | None,
    ) -> int:
        """Make this transaction the current record, replacing any other; returns its
        ``seq``. ``error`` set: the transaction failed and the record is the error (its
        LD/T 33 code), whatever ``reading`` is. ``verdict`` is the decision's reason code."""
        if reading is None and error is None:
            raise ValueError("publish needs a reading or an error")
        with self._lock:
            self._seq += 1
            self._record = _Record(
                seq=self._seq,
                published_at=self._clock.now(),
                published_mono=self._clock.monotonic(),
                reading=reading if error is None else None,
                error=error,
                verdict=verdict,
            )
            return self._seq

    def clear(self, seq: int | None = None) -> bool:
        """Forget the record (only if it is ``seq``, when given); False when a different
        record is current."""
        with self._lock:
            record = self._current()
            if record is not None and seq is not None and record.seq != seq:
                return False
            self._record = None
            return True

    @property
    def has_record(self) -> bool:
        with self._lock:
            return self._current() is not None

    def shutdown(self) -> None:
        """Stop serving, wait for the accept loop to end, and forget the record."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()
        with self._lock:
            self._record = None

    def __enter__(self) -> CounterApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # --- records ----------------------------------------------------------------------------

    def _current(self) -> _Record | None:
        """The record, dropped first when it is older than ``ttl`` (lock held)."""
        record = self._record
        if record is not None and self._clock.monotonic() - record.published_mono >= self.ttl:
            self._record = record = None
        return record

    def purge_expired(self) -> None:
        with self._lock:
            self._current()

    def _snapshot(self) -> _Record | None:
        with self._lock:
            return self._current()

    # --- answers (status, content type, body) ----------------------------------------------

    def _card_json(self) -> tuple[int, dict[str, Any]]:
        record = self._snapshot()
        if record is None:
            return 404, {
                "status": "empty",
                "error": "no_card",
                "reason": "no counter transaction to hand over",
                "code": ldt33.NO_CARD,
            }
        head: dict[str, Any] = {
            "seq": record.seq,
            "published_at": datetime.datetime.fromtimestamp(record.published_at, datetime.UTC)
            .isoformat(timespec="seconds")
            .replace("+00:00", "Z"),
            "verdict": record.verdict,
        }
        if record.error is not None:
            return 200, {
                "status": "error",
                **head,
                "error": record.error.code,
                "reason": record.error.reason,
                "code": ldt33.error_code(record.error),
            }
        assert record.reading is not None
        return 200, {"status": "ok", **head, "card": record.reading.to_json(reveal=True)}

    def _ireadcardbas(self) -> tuple[int, str]:
        record = self._snapshot()
        if record is None:
            return 404, str(ldt33.NO_CARD)
        if record.error is not None:
            return 200, str(ldt33.error_code(record.error))
        assert record.reading is not None
        return 200, record.reading.to_ireadcardbas(reveal=True, device_number=self.device_number)


# --- HTTP -----------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so shutdown() leaves no connection serving.
    protocol_version = "HTTP/1.0"
    server_version = "onecard-counter/1"
    sys_version = ""
    timeout = CONNECTION_TIMEOUT
    server: _HttpServer

    def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str]) -> None:
        self.send_response(status)
        if body or status != 204:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        # Holder data: no cache anywhere may keep a copy.
        self.send_header("Cache-Control", "no-store")
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, status: int, body: dict[str, Any], **extra: str) -> None:
        payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self._send(status, payload, "application/json; charset=utf-8", extra)

    def _text(self, status: int, text: str) -> None:
        self._send(status, text.encode("utf-8"), "text/plain; charset=utf-8", {})

    def _error(self, status: int, error: str, reason: str, **extra: str) -> None:
        self._json(status, {"status": "error", "error": error, "reason": reason}, **extra)

    def _route(self) -> tuple[str, dict[str, list[str]]] | None:
        host = self.headers.get("Host")
        if host is not None and not _loopback_name(host):
            self._error(403, "bad_host", "only loopback host names are served")
            return None
        parts = urllib.parse.urlsplit(self.path)
        return parts.path, urllib.parse.parse_qs(parts.query)

    def do_GET(self) -> None:
        routed = self._route()
        if routed is None:
            return
        path, _query = routed
        api = self.server.api
        if path == "/health":
            self._json(200, {"status": "ok", "record": api.has_record})
        elif path == "/v1/card":
            status, body = api._card_json()
            self._json(status, body)
        elif path == "/v1/card/ireadcardbas":
            status, text = api._ireadcardbas()
            self._text(status, text)
        else:
            self._error(404, "not_found", "no such resource")

    def do_DELETE(self) -> None:
        self._discard_body()
        routed = self._route()
        if routed is None:
            return
        path, query = routed
        if path in ("/health", "/v1/card/ireadcardbas"):
            self._not_allowed(path)
            return
        if path != "/v1/card":
            self._error(404, "not_found", "no such resource")
            return
        seq: int | None = None
        if "seq" in query:
            text = query["seq"][-1]
            if not text.isascii() or not text.isdigit() or len(text) > 18:
                self._error(400, "bad_request", "seq must be a record number")
                return
            seq = int(text)
        if not self.server.api.clear(seq):
            self._error(409, "seq_mismatch", "a newer record replaced that one")
            return
        self._send(204, b"", "", {})

    def _not_allowed(self, path: str) -> None:
        allow = "GET, DELETE" if path == "/v1/card" else "GET"
        self._error(405, "method_not_allowed", f"{self.command} is not served", Allow=allow)

    def _other(self) -> None:
        self._discard_body()
        routed = self._route()
        if routed is None:
            return
        path, _ = routed
        if path in ("/health", "/v1/card", "/v1/card/ireadcardbas"):
            self._not_allowed(path)
        else:
            self._error(404, "not_found", "no such resource")

    do_POST = do_PUT = do_PATCH = do_HEAD = do_OPTIONS = _other

    def _discard_body(self) -> None:
        length = self.headers.get("Content-Length", "").strip()
        if length.isascii() and length.isdigit() and 0 < int(length) <= MAX_DISCARDED_BODY:
            self.rfile.read(int(length))

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server's own errors (bad request line, unknown method) answer HTML; answer
        # JSON like everything else.
        self.close_connection = True
        self._error(code, "bad_request" if code < 500 else "internal_error", message or "")

    def log_message(self, format: str, *args: Any) -> None:
        # The request line has a method and a path only; bodies are never logged.
        log.debug("%s %s", self.address_string(), format % args)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], api: CounterApi) -> None:
        self.api = api
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def service_actions(self) -> None:
        # Runs every poll interval of serve_forever: an unclaimed record is forgotten on
        # time even when nobody asks for it again.
        super().service_actions()
        self.api.purge_expired()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.warning("counter API connection from %s ended with an error", client_address[0])
