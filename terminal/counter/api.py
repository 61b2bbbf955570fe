"""The hospital hand-off: the counter profile serves the holder record of its current
transaction to the hospital information system on loopback (docs/runtime.md).

After each counter transaction the runtime calls :meth:`CounterApi.publish`; the hospital
system then asks, over HTTP on ``127.0.0.1``, with ``Authorization: Bearer <token>`` (the
token in the operator's token file, :mod:`terminal.counter.token`) on every request:

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

Without the token every request - ``GET`` and ``DELETE``, any path, ``/health`` too - is
401 ``{"status": "error", "error": "unauthorized", ...}`` with ``WWW-Authenticate: Bearer``,
before any route or endpoint runs: the holder record is personal data, and ``DELETE`` would
let any local process make the hospital system miss a card. The token is compared in
constant time and never logged.

A record is forgotten ``ttl`` seconds after it was published even when nobody takes it, so
holder data does not linger. Personal data is handed over here and never logged: requests
are logged by method and path only.

The server is a :class:`~terminal.loopback.LoopbackServer`: it binds loopback addresses
only, answers only requests whose ``Host`` is a loopback name (so a web page cannot reach
it through DNS rebinding), refuses a ``DELETE`` from a browser page of another origin, and
refuses in the loopback servers' one error shape ``{"status": "error", "error": name,
"reason": text}`` (``bad_host``, ``unauthorized``, ``foreign_origin``, ``not_found``,
``method_not_allowed`` with ``Allow``, ``body_too_large``, ``bad_request``, ``seq_mismatch``;
:mod:`terminal.loopback.vocabulary`).
"""

from __future__ import annotations

import datetime
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

from terminal import ldt33
from terminal.counter.token import load_token
from terminal.errors import ConfigError, OneCardError
from terminal.host.clock import Clock, SystemClock
from terminal.loopback.answers import Answer, Request, Routes, json_answer, text_answer
from terminal.loopback.server import LoopbackServer
from terminal.loopback.vocabulary import BAD_REQUEST, ErrorKind, Refused
from terminal.ssc.reading import CardReading

log = logging.getLogger(__name__)

DEFAULT_TTL = 120.0
PURGE_INTERVAL = 0.1
"""Seconds between checks for an expired record while nobody asks; also the longest
:meth:`CounterApi.shutdown` waits for the serving loop to notice."""
SEQ_MISMATCH = ErrorKind("seq_mismatch", 409)
"""``DELETE /v1/card?seq=n`` when a newer record replaced ``n``."""


@dataclass(frozen=True)
class _Record:
    seq: int
    published_at: float  # wall time, for the hospital system
    published_mono: float  # monotonic, for expiry
    reading: CardReading | None
    error: OneCardError | None
    verdict: str | None


class CounterApi:
    """Serves the current counter record on ``host:port`` (0: a free port) from a daemon
    thread; listening before the constructor returns. ``.port``, ``.url``, ``.shutdown()``
    (also a context manager).

    ``token_file`` is the operator's token file (made when missing; a
    :class:`~terminal.errors.ConfigError` when others may read it or it holds no token);
    ``device_number`` is the terminal device number of the ``iReadCardBas`` string; ``ttl``
    how long (seconds) a record is kept; ``clock`` is injected for tests.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token_file: str | os.PathLike[str],
        device_number: str = "",
        ttl: float = DEFAULT_TTL,
        clock: Clock | None = None,
    ) -> None:
        if ttl <= 0:
            raise ConfigError("counter API record ttl must be positive")
        credential = load_token(token_file)
        self.token_file = os.fspath(token_file)
        self.device_number = device_number
        self.ttl = ttl
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._record: _Record | None = None
        self._seq = 0
        routes = Routes()
        routes.add("/health", "GET", self._health)
        routes.add("/v1/card", "GET", self._card)
        routes.add("/v1/card", "DELETE", self._take)
        routes.add("/v1/card/ireadcardbas", "GET", self._ireadcardbas)
        try:
            self._http = LoopbackServer(
                routes,
                title="counter API",
                server_version="onecard-counter/1",
                host=host,
                port=port,
                tick=self.purge_expired,
                # An unclaimed record is forgotten on time even when nobody asks again.
                poll_interval=PURGE_INTERVAL,
                credential=credential,
            )
        except OSError as exc:
            raise ConfigError(f"counter API cannot listen on {host}:{port}: {exc}") from exc
        self.host = self._http.host
        self.port = self._http.port
        self.url = self._http.origin
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
        self._http.close()
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

    # --- endpoints ----------------------------------------------------------------------------

    def _health(self, request: Request) -> Answer:
        return json_answer(200, {"status": "ok", "record": self.has_record})

    def _card(self, request: Request) -> Answer:
        record = self._snapshot()
        if record is None:
            return json_answer(
                404,
                {
                    "status": "empty",
                    "error": "no_card",
                    "reason": "no counter transaction to hand over",
                    "code": ldt33.NO_CARD,
                },
            )
        head: dict[str, Any] = {
            "seq": record.seq,
            "published_at": datetime.datetime.fromtimestamp(record.published_at, datetime.UTC)
            .isoformat(timespec="seconds")
            .replace("+00:00", "Z"),
            "verdict": record.verdict,
        }
        if record.error is not None:
            return json_answer(
                200,
                {
                    "status": "error",
                    **head,
                    "error": record.error.code,
                    "reason": record.error.reason,
                    "code": ldt33.error_code(record.error),
                },
            )
        assert record.reading is not None
        return json_answer(
            200, {"status": "ok", **head, "card": record.reading.to_json(reveal=True)}
        )

    def _ireadcardbas(self, request: Request) -> Answer:
        record = self._snapshot()
        if record is None:
            return text_answer(404, str(ldt33.NO_CARD))
        if record.error is not None:
            return text_answer(200, str(ldt33.error_code(record.error)))
        assert record.reading is not None
        text = record.reading.to_ireadcardbas(reveal=True, device_number=self.device_number)
        return text_answer(200, text)

    def _take(self, request: Request) -> Answer:
        seq: int | None = None
        if "seq" in request.query:
            text = request.query["seq"][-1]
            if not text.isascii() or not text.isdigit() or len(text) > 18:
                raise Refused(BAD_REQUEST, "seq must be a record number")
            seq = int(text)
        if not self.clear(seq):
            raise Refused(SEQ_MISMATCH, "a newer record replaced that one")
        return Answer(204)
