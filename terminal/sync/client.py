"""The terminal's one HTTP(S) client to its back office: signed requests over a keep-alive
connection, shared by the uploader, the event sender and the document downloads.

Every request is signed (:func:`terminal.wire.requests.request_headers`) at the moment it
leaves. One connection serves the whole terminal: requests take turns (a lock), so a
terminal holds one socket - and one server thread - at its back office rather than one per
task. Every network failure comes out as a :class:`SyncError` subclass; after one the
connection is dropped and the next request opens a new one.
"""

from __future__ import annotations

import http.client
import logging
import socket
import ssl
import threading
import urllib.parse

from terminal.errors import (
    SyncAnswerError,
    SyncConnectionLostError,
    SyncError,
    SyncRejectedError,
    SyncServerError,
    SyncTimeoutError,
    SyncUnreachableError,
)
from terminal.host.clock import Clock
from terminal.sync.auth import TerminalCredentials
from terminal.wire.canonical import JsonError, parse_json

log = logging.getLogger(__name__)

MAX_ANSWER_BYTES = 1 << 20
"""An answer of the back office is small JSON or a published document; more than this is
not the contract."""
DEFAULT_TIMEOUT = 15.0

_STALE_CONNECTION = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class BackOfficeClient:
    """Signed requests to the back office of ``credentials`` over one keep-alive
    connection. Thread-safe: requests from several threads take turns."""

    def __init__(
        self, credentials: TerminalCredentials, clock: Clock, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self._credentials = credentials
        self._clock = clock
        self.timeout = timeout
        url = urllib.parse.urlsplit(credentials.backoffice_url)
        self._https = url.scheme == "https"
        self._host = url.hostname or ""
        self._port = url.port
        self._prefix = url.path.rstrip("/")
        self._tls: ssl.SSLContext | None = None
        if self._https:
            cafile = str(credentials.ca_file) if credentials.ca_file else None
            self._tls = ssl.create_default_context(cafile=cafile)
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    @property
    def terminal_id(self) -> str:
        return self._credentials.terminal_id

    def close(self) -> None:
        """Drop the connection (after the request in flight, if any); the next request
        opens a new one."""
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connect(self) -> http.client.HTTPConnection:
        if self._conn is not None and self._conn.sock is not None:
            return self._conn
        self._drop()
        conn: http.client.HTTPConnection
        if self._https:
            conn = http.client.HTTPSConnection(
                self._host, self._port, timeout=self.timeout, context=self._tls
            )
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
        where = f"{self._host}:{conn.port}"
        try:
            conn.connect()
        except TimeoutError:
            conn.close()
            raise SyncTimeoutError(f"no connection to {where} within {self.timeout}s") from None
        except ssl.SSLError as exc:
            conn.close()
            raise SyncUnreachableError(f"TLS with {where} failed: {exc.reason or exc}") from None
        except OSError as exc:
            conn.close()
            raise SyncUnreachableError(f"cannot connect to {where}: {exc}") from None
        self._conn = conn
        return conn

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """Send a signed ``POST`` and return the status and body of the answer."""
        return self.request("POST", path, body)

    def get(self, path: str) -> tuple[int, bytes]:
        """Send a signed ``GET`` (published documents) and return the status and body."""
        return self.request("GET", path, b"")

    def fetch(self, path: str) -> bytes:
        """The body of a signed ``GET`` that must succeed; a typed :class:`SyncError` else."""
        status, body = self.get(path)
        if status != 200:
            cls = SyncServerError if status >= 500 else SyncRejectedError
            raise cls(f"GET {path}: HTTP {status}: {body[:200]!r}")
        return body

    def request(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        """Send a signed request and return the status and body of the answer."""
        with self._lock:
            return self._request(method, self._prefix + path, body)

    def _request(self, method: str, full_path: str, body: bytes) -> tuple[int, bytes]:
        for attempt in (0, 1):
            reused = self._conn is not None and self._conn.sock is not None
            conn = self._connect()
            headers = {
                "Content-Type": "application/json",
                **self._credentials.headers(method, full_path, body, self._clock.now()),
            }
            try:
                conn.request(method, full_path, body=body, headers=headers)
                response = conn.getresponse()
            except _STALE_CONNECTION as exc:
                self._drop()
                if reused and attempt == 0:
                    # The back office closed an idle keep-alive connection; that says
                    # nothing about its health, so try once on a fresh one.
                    log.debug("keep-alive connection was closed; reconnecting")
                    continue
                raise SyncConnectionLostError(
                    f"connection cut before the answer: {exc!r}"
                ) from None
            except BaseException as exc:
                self._drop()
                raise _network_error(exc, self.timeout) from None
            try:
                return response.status, self._read(response)
            except BaseException as exc:
                self._drop()
                raise _network_error(exc, self.timeout) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _read(self, response: http.client.HTTPResponse) -> bytes:
        length = response.getheader("Content-Length")
        if length is not None and length.strip().isdigit():
            if int(length) > MAX_ANSWER_BYTES:
                raise SyncAnswerError(f"answer of {length} bytes is not a back office answer")
            # A full read raises IncompleteRead when the connection is cut mid-answer.
            data = response.read()
        else:
            data = response.read(MAX_ANSWER_BYTES + 1)
            if len(data) > MAX_ANSWER_BYTES:
                raise SyncAnswerError("answer too long to be a back office answer")
        if response.will_close:
            self._drop()
        return data


def _network_error(exc: BaseException, timeout: float) -> BaseException:
    """The SyncError of a failure while talking to the back office."""
    if isinstance(exc, SyncError):
        return exc
    if isinstance(exc, TimeoutError | socket.timeout):
        return SyncTimeoutError(f"no answer within {timeout}s")
    if isinstance(exc, http.client.IncompleteRead):
        return SyncConnectionLostError(
            f"connection cut mid-answer ({len(exc.partial)} bytes received)"
        )
    if isinstance(exc, ConnectionError):  # RemoteDisconnected, reset, broken pipe
        return SyncConnectionLostError(f"connection cut: {exc!r}")
    if isinstance(exc, http.client.HTTPException):
        return SyncAnswerError(f"not an HTTP answer: {exc!r}")
    if isinstance(exc, OSError):
        return SyncConnectionLostError(f"network error: {exc}")
    return exc  # a programming error: let it surface


# --- answers ------------------------------------------------------------------------------


def parse_acked_answer(status: int, body: bytes) -> int:
    """``acked_up_to`` of a 200 answer to an upload or a batch of events
    (``{"acked_up_to": N}``), or the typed :class:`SyncError` of any other answer."""
    if 500 <= status <= 599:
        raise SyncServerError(f"back office error {status}: {_error_text(body)}", status)
    if 400 <= status <= 499:
        code, reason = _error_fields(body)
        raise SyncRejectedError(
            f"back office refused the request ({status} {code}): {reason}", status, code
        )
    if status != 200:
        raise SyncAnswerError(f"unexpected HTTP status {status}", status)
    try:
        answer = parse_json(body)
    except JsonError:
        raise SyncAnswerError("the answer is not JSON", status) from None
    acked = answer.get("acked_up_to") if isinstance(answer, dict) else None
    if isinstance(acked, bool) or not isinstance(acked, int) or acked < 0:
        raise SyncAnswerError("the answer has no acked_up_to", status)
    return acked


def _error_fields(body: bytes) -> tuple[str, str]:
    try:
        answer = parse_json(body)
    except JsonError:
        return "", _error_text(body)
    if not isinstance(answer, dict):
        return "", _error_text(body)
    return str(answer.get("error", ""))[:64], str(answer.get("reason", ""))[:200]


def _error_text(body: bytes) -> str:
    return body[:200].decode("utf-8", "replace")
