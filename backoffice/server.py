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
:func:`serve` puts it behind Starlette on uvicorn (:mod:`backoffice.stack`: the ASGI app of
:mod:`backoffice.asgi` is a thin adapter over these two steps; the connection limits and
deadlines of :mod:`backoffice.limits` are applied by the uvicorn protocol of
:mod:`backoffice.http_protocol`). Every failure becomes a JSON ``{"error", "reason"}``
answer with its status; an unexpected exception is logged here and answered 500 without
details, and never stops the server.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from backoffice import publish
from backoffice.answers import Response as Response
from backoffice.answers import busy_response as busy_response
from backoffice.answers import error_response as error_response
from backoffice.answers import failure_response as failure_response
from backoffice.auth import MAX_SKEW_SECONDS, Claim, check_body, check_headers
from backoffice.errors import (
    BadRequestError,
    ForbiddenError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
)
from backoffice.ingest import parse_ingest_body
from backoffice.limits import ServeLimits
from backoffice.stack import RunningServer as RunningServer
from backoffice.stack import make_ssl_context as make_ssl_context
from backoffice.stack import serve_in_thread
from backoffice.storage import EventsResult, IngestResult, Storage
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
