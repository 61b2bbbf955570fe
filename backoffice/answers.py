"""The back office's answers, as the request handler gives them and the server sends them:
a status and a JSON body, refusals as ``{"error", "reason"}`` (docs/sync.md). Shared by the
handler (:mod:`backoffice.server`) and what serves it (:mod:`backoffice.asgi`,
:mod:`backoffice.http_protocol`), which therefore need not know the handler's module.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from backoffice.errors import BackOfficeError, BadRequestError
from terminal.errors import ParseError

log = logging.getLogger("backoffice.server")


class RequestHandler(Protocol):
    """What serves requests needs of the handler (:class:`backoffice.server.BackOffice`):
    ``admit`` from the head alone, ``respond`` once the body is read, ``handle`` both."""

    max_body: int

    def handle(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> Response: ...

    def admit(self, method: str, target: str, headers: Mapping[str, str], length: int) -> Any: ...

    def respond(self, admission: Any, body: bytes) -> Response: ...

    def admit_cached(
        self, method: str, target: str, headers: Mapping[str, str], length: int
    ) -> Any | None: ...

    def respond_cached(self, admission: Any, body: bytes) -> Response | None: ...


@dataclass(frozen=True)
class Response:
    """An answer: status, JSON body, and whether the connection must close after it (a body
    left unread would be taken for the next request). ``raw``, when given, is the body as
    stored - a published document goes out byte for byte as it was signed and stored."""

    status: int
    body: Mapping[str, Any]
    close: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)
    raw: bytes | memoryview | None = None
    """A ``206`` answer's part of a stored body is a view of it, not a copy."""

    def payload(self) -> bytes | memoryview:
        if self.raw is not None:
            return self.raw
        return json.dumps(self.body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def error_response(error: BackOfficeError, close: bool = False) -> Response:
    """The JSON answer for a typed error; 5xx reasons stay in the log, not on the wire."""
    body = error.to_json()
    if error.http_status >= 500:
        body = {"error": error.code, "reason": "internal error; try again later"}
    retry_after = getattr(error, "retry_after", None)  # RateLimitedError: when to come back
    headers = {"Retry-After": str(retry_after)} if isinstance(retry_after, int) else {}
    return Response(error.http_status, body, close=close, headers=headers)


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
