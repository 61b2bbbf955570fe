"""The back office over HTTP(S) (docs/sync.md):

* ``POST /v1/ingest`` - a terminal's journal entries;
* ``POST /v1/events`` - a terminal's events (a holder's "call staff" request...);
* ``GET /v1/hotlist?since=V``, ``GET /v1/trustlist``, ``GET /v1/applist`` - the signed
  documents; ``GET /v1/fares``, ``/v1/reservations``, ``/v1/passes`` - those some
  terminals use (the rail fare table, a venue's reservations, a scenic area's passes);
* ``POST /v1/heartbeat`` - a terminal's heartbeat (docs/fleet.md);
* ``GET /health`` - unauthenticated liveness; ``GET /metrics`` - Prometheus metrics.

Every ``/v1/`` request is authenticated by the same code path (the terminal's HMAC
signature; 401 unknown/bad/stale, 403 revoked).

Two layers. :class:`BackOffice` answers a request and knows nothing of sockets, in two
steps so that no body is read for a request that would be refused anyway:
:meth:`BackOffice.admit` looks at the method, path and headers alone - the endpoint, its
body limit, the terminal's headers (:func:`backoffice.auth.check_headers`) - and
:meth:`BackOffice.respond` checks the signature over the body once it is read and runs the
endpoint; :meth:`BackOffice.handle` is both, for a request already read whole.
:func:`serve` puts it behind Starlette on uvicorn (:mod:`backoffice.stack`: the ASGI app of
:mod:`backoffice.asgi` is a thin adapter over these two steps; the connection limits and
deadlines of :mod:`backoffice.limits` are applied by the uvicorn protocol of
:mod:`backoffice.http_protocol`). Every failure becomes a JSON ``{"error", "reason"}``
answer with its status; an unexpected exception is logged here and answered 500 without
details, and never stops the server.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from backoffice import documents, fleet, publish
from backoffice.answers import Response as Response
from backoffice.answers import busy_response as busy_response
from backoffice.answers import error_response as error_response
from backoffice.answers import failure_response as failure_response
from backoffice.auth import MAX_SKEW_SECONDS, Claim, TerminalKeys, check_body, check_headers
from backoffice.errors import (
    BadRequestError,
    ForbiddenError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitedError,
)
from backoffice.ingest import parse_ingest_body
from backoffice.limits import RateLimits, ServeLimits, retry_after_seconds
from backoffice.loopsafe import StorageNeeded, storage_barred
from backoffice.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from backoffice.metrics import BackOfficeMetrics, DatabaseCollector, render
from backoffice.stack import RunningServer as RunningServer
from backoffice.stack import make_ssl_context as make_ssl_context
from backoffice.stack import serve_in_thread
from backoffice.storage import EventsResult, IngestResult, Storage
from terminal.host.clock import Clock, SystemClock
from terminal.hotlist_snapshot import SNAPSHOT_CONTENT_TYPE
from terminal.wire.events import MAX_EVENTS_PER_REQUEST as MAX_EVENTS
from terminal.wire.events import parse_events_body
from terminal.wire.heartbeat import MAX_HEARTBEAT_BYTES
from terminal.wire.journal import MAX_ENTRIES, MAX_SEQ

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024 * 1024
"""The largest upload body (``POST /v1/ingest``)."""
MAX_EVENTS_BODY_BYTES = 1024 * 1024
"""The largest ``POST /v1/events`` body: 1,000 events of at most ~600 bytes of canonical
JSON each (512 of them ``detail``), with room to spare."""


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
DocumentEndpoint = Callable[[str, Mapping[str, str]], Response]
"""A published document: (query, the request's ``if-none-match`` and ``accept``) -> answer."""
DOCUMENT_HEADERS = ("if-none-match", "accept", "range", "if-range")


@dataclass(frozen=True)
class Route:
    """An endpoint, the methods it answers and the largest body it takes. ``document``:
    a published document's endpoint, which also reads the conditional headers."""

    methods: tuple[str, ...]
    endpoint: Endpoint
    max_body: int
    signed: bool = True
    document: DocumentEndpoint | None = None


def document_route(answer: DocumentEndpoint) -> Route:
    """The route of a published document (``GET``, no body, signed)."""
    return Route(("GET",), lambda terminal_id, query, body: answer(query, {}), 0, document=answer)


def _document_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers a document answer depends on, by lower-case name (``headers`` may be a
    plain dict in any case, or Starlette's case-insensitive one)."""
    found: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower in DOCUMENT_HEADERS:
            found[lower] = f"{found[lower]}, {value}" if lower in found else value
    return found


def _not_modified(etag: str) -> Response:
    return Response(304, {}, headers={"ETag": etag}, raw=b"")


def _document_response(item: documents.Rendered) -> Response:
    headers = {"ETag": item.etag, "Content-Type": item.content_type}
    return Response(200, {}, headers=headers, raw=item.body)


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
    headers: Mapping[str, str] = field(default_factory=dict)
    """A document route's conditional headers (:data:`DOCUMENT_HEADERS`)."""


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
        silent_after: float = fleet.DEFAULT_SILENT_AFTER,
        rate_limits: RateLimits | None = None,
        document_ttl: float = 0.0,
        key_ttl: float = 0.0,
    ) -> None:
        self.storage = storage
        self.publication_key = publication_key
        self.clock = clock or SystemClock()
        self.max_body = max_body
        self.max_skew = max_skew
        self.max_entries = max_entries
        self.max_events = max_events
        # Documents rendered once per version, polls answered 304 (backoffice.documents);
        # back-pressure, when given (backoffice.limits.RateLimits; `serve` always gives it).
        self.documents = documents.DocumentCache(storage, publication_key, ttl=document_ttl)
        self.rate_limits = rate_limits
        # Terminal keys kept key_ttl seconds per process (backoffice.auth.TerminalKeys); an
        # enrolment or revocation through this storage object is seen at once.
        self.terminal_keys = TerminalKeys(
            storage.terminal_key, key_ttl, changes=lambda: getattr(storage, "key_changes", 0)
        )
        events_body = min(max_body, MAX_EVENTS_BODY_BYTES)
        # The fleet's heartbeats and /metrics (docs/fleet.md): backoffice.fleet, .metrics.
        self.metrics = BackOfficeMetrics()
        self.database_metrics = DatabaseCollector(storage, self.clock.now, silent_after)
        self._routes = {
            "/health": Route(("GET", "HEAD"), self._health, 0, signed=False),
            "/v1/ingest": Route(("POST",), self._ingest, max_body),
            "/v1/events": Route(("POST",), self._events, events_body),
            "/v1/hotlist": document_route(self._hotlist),
            "/v1/trustlist": document_route(self._trustlist),
            "/v1/applist": document_route(self._applist),
            # Fetched only by the terminals that use them (a rail gate, a venue's gates).
            "/v1/fares": document_route(partial(self._stored_document, publish.KIND_FARES)),
            "/v1/reservations": document_route(
                partial(self._stored_document, publish.KIND_RESERVATIONS)
            ),
            "/v1/passes": document_route(partial(self._stored_document, publish.KIND_PASSES)),
            "/v1/heartbeat": Route(("POST",), self._heartbeat, MAX_HEARTBEAT_BYTES),
            "/v1/occupancy": Route(("GET",), self._occupancy, 0),
            "/metrics": Route(("GET",), self._metrics, 0, signed=False),
        }

    @classmethod
    def serving(
        cls,
        storage: Storage,
        publication_key: publish.PublicationKey,
        limits: ServeLimits,
        silent_after: float = fleet.DEFAULT_SILENT_AFTER,
    ) -> BackOffice:
        """The back office as ``onecard backoffice serve`` runs it (in one process or in
        each worker): rate limits, document and key caches as ``limits`` sets them."""
        return cls(
            storage,
            publication_key,
            SystemClock(),
            rate_limits=RateLimits(limits),
            document_ttl=limits.document_ttl,
            key_ttl=limits.key_ttl,
            silent_after=silent_after,
        )

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
            lookup, now = self.terminal_keys, self.clock.now()
            claim = check_headers(headers, lookup, now, self.max_skew)
            if self.rate_limits is not None:
                wait = self.rate_limits.terminal_wait(claim.key.terminal_id)
                if wait:
                    raise RateLimitedError(
                        "too many requests from this terminal", retry_after_seconds(wait)
                    )
        conditions = _document_headers(headers) if route.document is not None else {}
        return Admission(method, target, length, route, claim, conditions)

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
            if admission.route.document is not None:
                return admission.route.document(urlsplit(target).query, admission.headers)
            return admission.route.endpoint(terminal_id, urlsplit(target).query, body)
        except StorageNeeded:
            raise  # respond_cached: answered on a thread instead
        except Exception as error:  # the server outlives any bug in one request
            return failure_response(method, target, error)

    def admit_cached(
        self, method: str, target: str, headers: Mapping[str, str], length: int
    ) -> Admission | None:
        """:meth:`admit` from what this process holds (the event loop may call it): None
        when it needs the storage (the terminal's key not kept), and :meth:`admit` is then
        called on a thread. Raises what :meth:`admit` raises."""
        with storage_barred():
            try:
                return self.admit(method, target, headers, length)
            except StorageNeeded:
                return None

    def respond_cached(self, admission: Admission, body: bytes) -> Response | None:
        """:meth:`respond` for a published document or ``/health`` answered from what this
        process holds (a 304, a rendered document); None when it needs the storage (then
        :meth:`respond` is called on a thread). Other endpoints store, and are None."""
        route = admission.route
        if route.document is None and route is not self._routes["/health"]:
            return None
        with storage_barred():
            try:
                return self.respond(admission, body)
            except StorageNeeded:
                return None

    # --- endpoints --------------------------------------------------------------------------

    def _health(self, terminal_id: str, query: str, body: bytes) -> Response:
        return Response(200, {"status": "ok"})

    def _ingest(self, terminal_id: str, query: str, body: bytes) -> Response:
        if query:
            raise BadRequestError("/v1/ingest takes no query")
        with self.metrics.timed(self.metrics.ingest_seconds, self.metrics.ingest_batches):
            batch = parse_ingest_body(body, self.max_entries)
            if batch.terminal_id != terminal_id:
                raise ForbiddenError("a terminal uploads its own journal only")
            self._charge_ingest(len(batch.entries))
            result = self.storage.ingest(terminal_id, batch.entries)
        self.metrics.ingest_entries.inc(result.stored)
        return _stored("ingest", terminal_id, result)

    def _heartbeat(self, terminal_id: str, query: str, body: bytes) -> Response:
        if query:
            raise BadRequestError("/v1/heartbeat takes no query")
        with self.metrics.timed(self.metrics.heartbeat_seconds, self.metrics.heartbeats):
            now = self.clock.now()
            received = fleet.receive_heartbeat(self.storage, terminal_id, body, now)
        return Response(200, {"received_at": received})

    def _occupancy(self, terminal_id: str, query: str, body: bytes) -> Response:
        """``GET /v1/occupancy?venue=ID``: the venue's count for the asking gate
        (backoffice.venue, docs/venues.md)."""
        from backoffice import venue

        answer = venue.occupancy_answer(
            self.storage,  # type: ignore[arg-type]
            venue.parse_venue_query(query),
            terminal_id,
            self.clock.now(),
        )
        return Response(200, answer.to_json())

    def _metrics(self, terminal_id: str, query: str, body: bytes) -> Response:
        text = render(self.metrics, self.database_metrics)
        return Response(200, {}, headers={"Content-Type": METRICS_CONTENT_TYPE}, raw=text)

    def _events(self, terminal_id: str, query: str, body: bytes) -> Response:
        if query:
            raise BadRequestError("/v1/events takes no query")
        sender, events = parse_events_body(body, self.max_events)
        if sender != terminal_id:
            raise ForbiddenError("a terminal sends its own events only")
        self._charge_ingest(len(events))
        result = self.storage.store_events(terminal_id, events, self.clock.now())
        return _stored("events", terminal_id, result)

    def _charge_ingest(self, items: int) -> None:
        """Take ``items`` entries or events of the process's ingest rate, or refuse (429)
        before anything reaches the database."""
        if self.rate_limits is None:
            return
        wait = self.rate_limits.ingest_wait(items)
        if wait:
            raise RateLimitedError(
                "the back office is at its ingest limit", retry_after_seconds(wait)
            )

    def _hotlist(self, query: str, headers: Mapping[str, str]) -> Response:
        since = parse_since(query)
        current = self.documents.hotlist_etag(self.documents.versions().hotlist)
        if documents.etag_matches(headers.get("if-none-match"), current):
            return _not_modified(current)
        snapshot_ok = SNAPSHOT_CONTENT_TYPE in headers.get("accept", "")
        item = self.documents.hotlist(since, snapshot_ok)
        if item.content_type == SNAPSHOT_CONTENT_TYPE:
            # A slow link resumes a snapshot where its last try was cut (Range, If-Range).
            return documents.ranged_response(item, headers.get("range"), headers.get("if-range"))
        return _document_response(item)

    def _stored_document(self, kind: str, query: str, headers: Mapping[str, str]) -> Response:
        if query:
            raise BadRequestError("this endpoint takes no query")
        known = self.documents.stored_etag(kind)
        if known is None:
            raise NotFoundError(f"no {kind} published yet")
        version, etag = known
        if etag is not None and documents.etag_matches(headers.get("if-none-match"), etag):
            return _not_modified(etag)
        # As stored: the back office does not read its signed documents again, and a
        # terminal checks what arrives anyway (a document altered in storage is refused).
        item = self.documents.stored(kind, version)
        if item is None:
            raise NotFoundError(f"no {kind} published yet")
        if documents.etag_matches(headers.get("if-none-match"), item.etag):
            return _not_modified(item.etag)
        return _document_response(item)

    def _trustlist(self, query: str, headers: Mapping[str, str]) -> Response:
        return self._stored_document(publish.KIND_TRUSTLIST, query, headers)

    def _applist(self, query: str, headers: Mapping[str, str]) -> Response:
        return self._stored_document(publish.KIND_APPLIST, query, headers)

    # --- operator actions (the CLI's) -------------------------------------------------------

    def publish(self, kind: str, body: object) -> dict[str, Any]:
        """Sign and store a new version of a stored document (trust list, application
        list, fare table, reservations, passes); a fare table, reservations or passes the
        terminal's parser refuses is refused (:func:`backoffice.publish.prepare_document`)."""
        document = self.storage.publish_document(
            kind,
            lambda version: publish.sign_document(
                publish.prepare_document(kind, body, version), self.publication_key
            ),
        )
        self.documents.invalidate()
        return document

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


# --- serving ------------------------------------------------------------------------------


def serve(
    backoffice: BackOffice,
    host: str = "127.0.0.1",
    port: int = 0,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    limits: ServeLimits | None = None,
) -> RunningServer:
    """Bind ``host:port`` (0: a free port), serve on the Starlette/uvicorn stack in a
    background thread (:mod:`backoffice.stack`), and return once it accepts: the socket
    listens before this returns, so a client may connect straight away. With ``tls_cert``
    and ``tls_key`` (PEM files) the server speaks HTTPS only. ``limits``: the deadlines and
    connection limit (:class:`ServeLimits` defaults)."""
    return serve_in_thread(backoffice, host, port, tls_cert, tls_key, limits)
