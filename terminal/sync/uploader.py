"""The background uploader: journal entries to the back office, ``POST /v1/ingest``.

Exactly-once at the back office comes from two halves (docs/sync.md, "Upload"): the back
office skips an entry it already holds with the same hash, and the terminal resends every
entry it has not seen acknowledged. Acknowledgements live in the journal, so a restart
resumes where the last acknowledged batch ended; an answer lost on the way (a cut
connection, a time-out) only means the batch is sent again.

The backlog is streamed: one batch (``batch_size`` entries) is read, sent and acknowledged
at a time, so a terminal that was offline for a million transactions uploads them in
bounded memory. Any failure - refused connection, time-out, 5xx, a cut connection, an
answer that is not the contract - is a typed :class:`SyncError`; the background thread logs
it and backs off exponentially with full jitter (:func:`backoff_delays`), and starts again
from the first delay after a success.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from terminal.errors import (
    JournalError,
    OneCardError,
    SyncAnswerError,
    SyncConnectionLostError,
    SyncError,
    SyncRejectedError,
    SyncServerError,
    SyncTimeoutError,
    SyncUnreachableError,
)
from terminal.host.clock import Clock
from terminal.journal.entry import JournalEntry
from terminal.journal.store import Journal
from terminal.sync.auth import TerminalCredentials

log = logging.getLogger(__name__)

INGEST_PATH = "/v1/ingest"
MAX_BATCH = 5000
"""The back office takes at most this many entries per request (docs/sync.md)."""
MAX_ANSWER_BYTES = 1 << 20
"""An ingest answer is a few bytes of JSON; more than this is not the contract."""
DEFAULT_TIMEOUT = 15.0
DEFAULT_BASE_BACKOFF = 0.5
DEFAULT_IDLE_INTERVAL = 5.0


# --- back-off (pure) ----------------------------------------------------------------------


def backoff_ceiling(attempt: int, base: float, cap: float, factor: float = 2.0) -> float:
    """The largest delay of failure ``attempt`` (0 for the first): ``min(cap, base *
    factor**attempt)``, computed without overflow for any attempt."""
    ceiling = base
    for _ in range(attempt):
        ceiling *= factor
        if ceiling >= cap:
            return cap
    return min(cap, ceiling)


def backoff_delays(
    base: float = DEFAULT_BASE_BACKOFF,
    cap: float = 60.0,
    rng: random.Random | None = None,
    factor: float = 2.0,
) -> Iterator[float]:
    """Delays before successive retries: exponential back-off with full jitter, each drawn
    uniformly from ``[0, min(cap, base * factor**attempt)]``.

    Full jitter spreads a fleet of terminals that lost the back office at the same moment,
    so they do not all come back at the same moment. Endless; start a new one after success.
    """
    if base <= 0 or cap <= 0 or factor < 1:
        raise ValueError("back-off needs base > 0, cap > 0 and factor >= 1")
    rng = rng or random.Random()
    attempt = 0
    while True:
        ceiling = backoff_ceiling(attempt, base, cap, factor)
        yield rng.uniform(0.0, ceiling)
        if ceiling < cap:
            attempt += 1


# --- the ingest request (pure parts) ------------------------------------------------------


def ingest_body(terminal_id: str, entries: Sequence[JournalEntry | str]) -> bytes:
    """The JSON body of ``POST /v1/ingest``: the terminal and its entries in ``seq`` order
    (each a :class:`JournalEntry`, or already the JSON text of one)."""
    texts = [
        e
        if isinstance(e, str)
        else json.dumps(e.to_json_dict(), separators=(",", ":"), ensure_ascii=False)
        for e in entries
    ]
    head = json.dumps({"terminal_id": terminal_id}, separators=(",", ":"))[:-1]
    return f'{head},"entries":[{",".join(texts)}]}}'.encode()


def parse_ingest_answer(status: int, body: bytes) -> int:
    """``acked_up_to`` of a 200 answer, or the typed :class:`SyncError` of any other."""
    if 500 <= status <= 599:
        raise SyncServerError(f"back office error {status}: {_error_text(body)}", status)
    if 400 <= status <= 499:
        code, reason = _error_fields(body)
        raise SyncRejectedError(
            f"back office refused the upload ({status} {code}): {reason}", status, code
        )
    if status != 200:
        raise SyncAnswerError(f"unexpected HTTP status {status}", status)
    try:
        answer = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise SyncAnswerError("the ingest answer is not JSON", status) from None
    acked = answer.get("acked_up_to") if isinstance(answer, dict) else None
    if isinstance(acked, bool) or not isinstance(acked, int) or acked < 0:
        raise SyncAnswerError("the ingest answer has no acked_up_to", status)
    return acked


def _error_fields(body: bytes) -> tuple[str, str]:
    try:
        answer = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return "", _error_text(body)
    if not isinstance(answer, dict):
        return "", _error_text(body)
    return str(answer.get("error", ""))[:64], str(answer.get("reason", ""))[:200]


def _error_text(body: bytes) -> str:
    return body[:200].decode("utf-8", "replace")


# --- HTTP ---------------------------------------------------------------------------------


_STALE_CONNECTION = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class IngestClient:
    """A keep-alive HTTP(S) connection to the back office that signs each request.

    Every network failure comes out as a :class:`SyncError` subclass; after one the
    connection is dropped and the next request opens a new one.
    """

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

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connect(self) -> http.client.HTTPConnection:
        if self._conn is not None and self._conn.sock is not None:
            return self._conn
        self.close()
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
        full_path = self._prefix + path
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
                self.close()
                if reused and attempt == 0:
                    # The back office closed an idle keep-alive connection; that says
                    # nothing about its health, so try once on a fresh one.
                    log.debug("keep-alive connection was closed; reconnecting")
                    continue
                raise SyncConnectionLostError(
                    f"connection cut before the answer: {exc!r}"
                ) from None
            except BaseException as exc:
                self.close()
                raise _network_error(exc, self.timeout) from None
            try:
                return response.status, self._read(response)
            except BaseException as exc:
                self.close()
                raise _network_error(exc, self.timeout) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _read(self, response: http.client.HTTPResponse) -> bytes:
        length = response.getheader("Content-Length")
        if length is not None and length.strip().isdigit():
            if int(length) > MAX_ANSWER_BYTES:
                raise SyncAnswerError(f"answer of {length} bytes is not an ingest answer")
            # A full read raises IncompleteRead when the connection is cut mid-answer.
            data = response.read()
        else:
            data = response.read(MAX_ANSWER_BYTES + 1)
            if len(data) > MAX_ANSWER_BYTES:
                raise SyncAnswerError("answer too long to be an ingest answer")
        if response.will_close:
            self.close()
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


# --- the uploader -------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadResult:
    """One :meth:`Uploader.run_once`: requests sent, entries sent (resends included), the
    journal's ``acked_up_to`` after it, and entries still waiting."""

    batches: int
    sent: int
    acked_up_to: int
    pending: int


@dataclass(frozen=True)
class UploaderStatus:
    """The background uploader at a glance, for the terminal's status page."""

    running: bool
    consecutive_failures: int
    last_error: str | None
    """``code: reason`` of the last failure, None after a success."""
    last_success_time: float | None
    acked_up_to: int
    pending: int


class Uploader:
    """Uploads a journal's unacknowledged entries to the back office.

    :meth:`run_once` uploads everything pending and returns (or raises a
    :class:`SyncError`); :meth:`start` runs it in a background thread that retries with
    back-off until :meth:`stop`. ``backoff_sleep`` replaces the interruptible wait between
    retries (tests pass a function that records the delays and returns at once).
    """

    def __init__(
        self,
        journal: Journal,
        credentials: TerminalCredentials,
        clock: Clock,
        batch_size: int = 1000,
        max_backoff: float = 60.0,
        rng: random.Random | None = None,
        *,
        base_backoff: float = DEFAULT_BASE_BACKOFF,
        timeout: float = DEFAULT_TIMEOUT,
        idle_interval: float = DEFAULT_IDLE_INTERVAL,
        backoff_sleep: Callable[[float], None] | None = None,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be 1..{MAX_BATCH}")
        if credentials.terminal_id != journal.terminal_id:
            raise JournalError(
                f"credentials of terminal {credentials.terminal_id!r} "
                f"for the journal of {journal.terminal_id!r}"
            )
        self._journal = journal
        self._credentials = credentials
        self._clock = clock
        self.batch_size = batch_size
        self.max_backoff = max_backoff
        self.base_backoff = base_backoff
        self.idle_interval = idle_interval
        self._rng = rng if rng is not None else random.Random()
        self._client = IngestClient(credentials, clock, timeout)
        self._backoff_sleep = backoff_sleep
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._state = threading.Condition()
        self._failures = 0
        self._last_error: str | None = None
        self._last_success: float | None = None
        self._caught_up_runs = 0

    # --- one pass --------------------------------------------------------------------------

    def run_once(self) -> UploadResult:
        """Upload every pending entry, a batch at a time, marking each acknowledged batch in
        the journal before reading the next. Raises :class:`SyncError` on the first failure;
        what was acknowledged before it stays acknowledged."""
        return self._upload(stoppable=False)

    def _upload(self, stoppable: bool) -> UploadResult:
        # stoppable: the background pass ends early (between batches) when stop() is called.
        cursor = self._journal.acked_up_to
        batches = sent = 0
        regressed = False
        while not (stoppable and self._stop.is_set()):
            batch = self._journal.wire_page(cursor, self.batch_size)
            if not batch:
                break
            first, last = batch[0][0], batch[-1][0]
            if first != cursor + 1:
                raise SyncError(
                    f"the back office holds entries up to {cursor} but this journal has "
                    f"purged up to {first - 1}: they cannot be sent again"
                )
            status, answer = self._client.post(
                INGEST_PATH, ingest_body(self._credentials.terminal_id, [e for _, e in batch])
            )
            try:
                acked = parse_ingest_answer(status, answer)
            except SyncError:
                # A back office that answers out of contract gets a fresh connection next time.
                self._client.close()
                raise
            batches += 1
            sent += len(batch)
            try:
                self._journal.ack(acked)
            except JournalError as exc:
                raise SyncAnswerError(f"acked_up_to {acked} is not ours: {exc.reason}") from None
            if acked < first - 1:
                # The back office holds less than it acknowledged before (restored from a
                # backup?): send again from what it holds, once per pass.
                if regressed:
                    raise SyncAnswerError(f"back office keeps going back (acked_up_to {acked})")
                regressed = True
                log.warning("back office holds only up to %d; sending again from there", acked)
            elif acked <= cursor:
                raise SyncAnswerError(
                    f"back office stored none of entries {first}..{last} (acked_up_to {acked})"
                )
            cursor = acked
        stats = self._journal.stats()
        return UploadResult(batches, sent, stats.acked_up_to, stats.unacked)

    # --- the background thread -------------------------------------------------------------

    def start(self) -> None:
        """Upload continuously in a background thread until :meth:`stop`."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="onecard-uploader", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the thread (after its current request at most) and close the connection."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if not self._thread.is_alive():
                self._thread = None
        self._client.close()

    def notify(self) -> None:
        """New entries were journalled: upload now rather than at the next idle poll."""
        self._wake.set()

    def wait_caught_up(self, timeout: float) -> bool:
        """Block until a pass of the background thread ends with nothing pending (True), or
        ``timeout`` seconds pass (False). For an orderly shutdown, and for tests."""
        with self._state:
            seen = self._caught_up_runs
            self._wake.set()
            return self._state.wait_for(lambda: self._caught_up_runs > seen, timeout)

    def status(self) -> UploaderStatus:
        stats = self._journal.stats()
        with self._state:
            return UploaderStatus(
                running=self._thread is not None and self._thread.is_alive(),
                consecutive_failures=self._failures,
                last_error=self._last_error,
                last_success_time=self._last_success,
                acked_up_to=stats.acked_up_to,
                pending=stats.unacked,
            )

    def _acked_or_none(self) -> int | None:
        try:
            return self._journal.acked_up_to
        except OneCardError:
            return None

    def _loop(self) -> None:
        delays: Iterator[float] | None = None
        while not self._stop.is_set():
            self._wake.clear()  # a notify() from here on triggers another pass
            acked_before = self._acked_or_none()
            try:
                result = self._upload(stoppable=True)
            except Exception as exc:
                # Never let the thread die: a dead uploader silently stops all syncing.
                if isinstance(exc, OneCardError):
                    log.warning("upload failed: %s: %s", exc.code, exc.reason)
                    error = f"{exc.code}: {exc.reason}"
                else:
                    log.exception("upload failed unexpectedly")
                    error = f"internal: {exc!r}"
                with self._state:
                    self._failures += 1
                    self._last_error = error
                acked_after = self._acked_or_none()
                if acked_before is not None and (acked_after or 0) > acked_before:
                    delays = None  # batches got through before this failure: a success
                if delays is None:
                    delays = backoff_delays(self.base_backoff, self.max_backoff, self._rng)
                delay = next(delays)
                log.info("next upload attempt in %.1fs", delay)
                if self._backoff_sleep is not None:
                    self._backoff_sleep(delay)
                else:
                    self._stop.wait(delay)  # back off even if new entries arrive
                continue
            delays = None  # success: the next failure starts from the first delay
            with self._state:
                self._failures = 0
                self._last_error = None
                self._last_success = self._clock.now()
                if result.pending == 0:
                    self._caught_up_runs += 1
                    self._state.notify_all()
            if result.batches:
                log.info("uploaded %d entries, acked up to %d", result.sent, result.acked_up_to)
            if result.pending == 0:
                self._wake.wait(self.idle_interval)
        self._client.close()
