"""The terminal's one HTTP(S) client to its back office: signed requests over a keep-alive
connection, shared by the uploader, the event sender and the document downloads.

Every request is signed (:func:`terminal.wire.requests.request_headers`) at the moment it
leaves. One connection serves the whole terminal: requests take turns (a lock), so a
terminal holds one socket - and one server thread - at its back office rather than one per
task. Every network failure comes out as a :class:`SyncError` subclass; after one the
connection is dropped and the next request opens a new one. A ``429`` (or a ``503`` with
``Retry-After``) is :class:`SyncThrottledError` with the bounded ``Retry-After``
(:func:`parse_retry_after`); :meth:`BackOfficeClient.get_document` sends ``If-None-Match``
and hands a streamed answer (a hotlist snapshot) to its reader without holding it.
"""

from __future__ import annotations

import email.utils
import http.client
import io
import logging
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO, Generic, TypeVar

from terminal.errors import (
    SyncAnswerError,
    SyncConnectionLostError,
    SyncError,
    SyncRejectedError,
    SyncServerError,
    SyncThrottledError,
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
MAX_STREAM_BYTES = 1 << 30
"""A streamed document (a hotlist snapshot: ~55 MB at 10 million entries) is at most this."""
MAX_RETRY_AFTER = 600.0
"""The longest wait a ``Retry-After`` can impose: a back office (or something posing as
one) must not park a terminal's sync for a day."""

T = TypeVar("T")


@dataclass(frozen=True)
class DocumentAnswer(Generic[T]):
    """An answer of the back office: status, body (empty when streamed or ``304``), its
    ``ETag`` and ``Retry-After`` as sent, the content type without parameters, and what a
    stream's reader returned."""

    status: int
    body: bytes
    etag: str | None = None
    retry_after_text: str | None = None
    content_type: str = ""
    streamed: T | None = None


class AnswerStream(io.RawIOBase):
    """An answer's body as a binary stream whose network failures are :class:`SyncError`s
    (a reader of it then tells a cut connection from a bad document). ``status`` (200, or
    206 for a range), ``etag`` and ``content_range`` are the answer's."""

    def __init__(self, response: http.client.HTTPResponse, timeout: float) -> None:
        super().__init__()
        self._response = response
        self._timeout = timeout
        self.status: int = response.status
        self.etag: str | None = response.getheader("ETag")
        self.content_range: str | None = response.getheader("Content-Range")

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        try:
            data = self._response.read(None if size is None or size < 0 else size)
        except BaseException as exc:
            raise _network_error(exc, self._timeout) from None
        if not data and size != 0 and self._response.length:
            # http.client answers a read cut short by the peer with b"" (as if the body
            # had ended): it is a cut connection, not a short document.
            raise SyncConnectionLostError(
                f"connection cut mid-answer ({self._response.length} bytes still to come)"
            )
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def parse_retry_after(text: str | None, now: float) -> float | None:
    """Seconds a ``Retry-After`` asks for (RFC 9110: delay-seconds or an HTTP-date),
    bounded to [0, :data:`MAX_RETRY_AFTER`]; None for a missing or unreadable one, which
    is ignored rather than guessed at."""
    if text is None:
        return None
    text = text.strip()
    if text.isascii() and text.isdigit():
        return min(float(int(text[:12])), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return min(max(0.0, when.timestamp() - now), MAX_RETRY_AFTER)


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
        """Send a signed request and return the status and body of the answer. A ``429``,
        or a ``503`` that says when to come back, is raised as :class:`SyncThrottledError`
        with its ``Retry-After`` (every caller must back off on it alike)."""
        with self._lock:
            answer = self._exchange(method, self._prefix + path, body, {}, None)
        self._check_throttled(method, path, answer)
        return answer.status, answer.body

    def get_document(
        self,
        path: str,
        etag: str | None = None,
        streams: Mapping[str, Callable[[BinaryIO], T]] | None = None,
        *,
        range_from: int | None = None,
        if_range: str | None = None,
    ) -> DocumentAnswer[T]:
        """A published document: ``GET`` with ``If-None-Match: etag`` (when given), and an
        ``Accept`` naming the content types of ``streams``. A ``200`` whose content type is
        one of them is handed, as a stream, to its reader (under the connection's lock,
        within the answer's ``Content-Length``), whose result is the answer's ``streamed``;
        any other ``200`` is read whole (at most :data:`MAX_ANSWER_BYTES`). Raises the typed
        :class:`SyncError` of anything but a ``200``, ``206`` or ``304``, and whatever the
        stream's reader raises.

        ``range_from``: ask for the body from that byte on (``Range``), only if it is still
        the representation whose ETag is ``if_range`` (``If-Range``); a ``206`` is streamed
        like a ``200`` (its reader sees :attr:`AnswerStream.status` and ``content_range``),
        and a back office that ignores the range, or whose document changed, sends ``200``
        with the whole body."""
        headers = {}
        if etag is not None:
            headers["If-None-Match"] = etag
        if range_from is not None:
            headers["Range"] = f"bytes={range_from}-"
            if if_range is not None:
                headers["If-Range"] = if_range
        if streams:
            headers["Accept"] = ", ".join([*streams, "application/json"])
        with self._lock:
            answer = self._exchange("GET", self._prefix + path, b"", headers, streams)
        self._check_throttled("GET", path, answer)
        if answer.status not in (200, 206, 304):
            cls = SyncServerError if answer.status >= 500 else SyncRejectedError
            raise cls(f"GET {path}: HTTP {answer.status}: {answer.body[:200]!r}", answer.status)
        return answer

    def _check_throttled(self, method: str, path: str, answer: DocumentAnswer[Any]) -> None:
        if answer.status == 429 or (answer.status == 503 and answer.retry_after_text is not None):
            retry_after = parse_retry_after(answer.retry_after_text, self._clock.now())
            raise SyncThrottledError(
                f"{method} {path}: HTTP {answer.status}, Retry-After "
                f"{answer.retry_after_text!r}: {_error_text(answer.body)}",
                answer.status,
                retry_after,
            )

    def _exchange(
        self,
        method: str,
        full_path: str,
        body: bytes,
        extra: Mapping[str, str],
        streams: Mapping[str, Callable[[BinaryIO], Any]] | None,
    ) -> DocumentAnswer[Any]:
        for attempt in (0, 1):
            reused = self._conn is not None and self._conn.sock is not None
            conn = self._connect()
            headers = {
                "Content-Type": "application/json",
                **extra,
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
            content_type = (response.getheader("Content-Type") or "").split(";")[0].strip()
            streamable = streams and response.status in (200, 206)
            reader = streams.get(content_type) if streamable else None
            try:
                if reader is not None:
                    streamed, data = self._stream(response, reader), b""
                else:
                    streamed, data = None, self._read(response)
            except BaseException as exc:
                self._drop()
                raise _network_error(exc, self.timeout) from None
            return DocumentAnswer(
                response.status,
                data,
                response.getheader("ETag"),
                response.getheader("Retry-After"),
                content_type,
                streamed,
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def _stream(self, response: http.client.HTTPResponse, reader: Callable[[BinaryIO], T]) -> T:
        length = response.getheader("Content-Length")
        if length is None or not length.strip().isdigit():
            raise SyncAnswerError("a streamed document without Content-Length")
        if int(length) > MAX_STREAM_BYTES:
            raise SyncAnswerError(f"streamed document of {length} bytes is not a document")
        result = reader(AnswerStream(response, self.timeout))
        if response.will_close:
            self._drop()
        return result

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
