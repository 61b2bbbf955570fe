"""The error vocabulary of the loopback servers: one name per kind of refusal, one shape.

Every refusal, on every loopback server (status page, holder screen, counter API), is
answered with its HTTP status and this JSON object::

    {"status": "error", "error": "<name>", "reason": "<English text>"}

(an endpoint may add fields of its own, e.g. the status page's ``"acknowledged": false``). Clients
branch on ``error``; ``reason`` is for people and may change.

``bad_request`` (400)         a malformed request line or parameter
``bad_length`` (400)          ``Content-Length`` is not a whole number
``not_json`` (400)            the body of a JSON request is not JSON (UTF-8)
``not_an_object`` (400)       the JSON body is not an object
``unauthorized`` (401)        no valid credential (``Authorization: Bearer``) where one is required
``bad_host`` (403)            the ``Host`` is not a loopback name (DNS rebinding)
``foreign_origin`` (403)      a state-changing request from another origin
``not_found`` (404)           no such path
``method_not_allowed`` (405)  the path is served, not with this method (``Allow`` says)
``body_too_large`` (413)      the body is larger than the server takes
``json_required`` (415)       a JSON request without ``Content-Type: application/json``
``headers_too_large`` (431)   too many or too long header lines
``internal_error`` (500)      the server failed (logged)
``not_implemented`` (501)     a method these servers do not know at all
``too_many_streams`` (503)    every event stream is taken
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ErrorKind:
    """A kind of refusal: its name on the wire and its HTTP status."""

    name: str
    status: int


BAD_REQUEST = ErrorKind("bad_request", 400)
BAD_LENGTH = ErrorKind("bad_length", 400)
NOT_JSON = ErrorKind("not_json", 400)
NOT_AN_OBJECT = ErrorKind("not_an_object", 400)
UNAUTHORIZED = ErrorKind("unauthorized", 401)
BAD_HOST = ErrorKind("bad_host", 403)
FOREIGN_ORIGIN = ErrorKind("foreign_origin", 403)
NOT_FOUND = ErrorKind("not_found", 404)
METHOD_NOT_ALLOWED = ErrorKind("method_not_allowed", 405)
BODY_TOO_LARGE = ErrorKind("body_too_large", 413)
JSON_REQUIRED = ErrorKind("json_required", 415)
HEADERS_TOO_LARGE = ErrorKind("headers_too_large", 431)
INTERNAL_ERROR = ErrorKind("internal_error", 500)
NOT_IMPLEMENTED = ErrorKind("not_implemented", 501)
TOO_MANY_STREAMS = ErrorKind("too_many_streams", 503)

KINDS: tuple[ErrorKind, ...] = (
    BAD_REQUEST,
    BAD_LENGTH,
    NOT_JSON,
    NOT_AN_OBJECT,
    UNAUTHORIZED,
    BAD_HOST,
    FOREIGN_ORIGIN,
    NOT_FOUND,
    METHOD_NOT_ALLOWED,
    BODY_TOO_LARGE,
    JSON_REQUIRED,
    HEADERS_TOO_LARGE,
    INTERNAL_ERROR,
    NOT_IMPLEMENTED,
    TOO_MANY_STREAMS,
)


def error_body(kind: ErrorKind, reason: str, **extra: Any) -> dict[str, Any]:
    """The JSON object of a refusal: ``{"status": "error", "error", "reason", **extra}``."""
    return {"status": "error", "error": kind.name, "reason": reason, **extra}


def kind_for_status(status: int) -> ErrorKind:
    """The kind of an error ``http.server`` answers by itself, so that its answers speak
    the same vocabulary: 431 and 501 have their own; the others it makes (400 for a bad
    request line, 414, 505) are the client's malformed request."""
    if status == HEADERS_TOO_LARGE.status:
        return HEADERS_TOO_LARGE
    if status == NOT_IMPLEMENTED.status:
        return NOT_IMPLEMENTED
    return BAD_REQUEST


class Refused(Exception):
    """A request refused with ``kind``: raised by a guard or an endpoint, answered by the
    server as :func:`error_body` with ``kind.status``, ``headers`` and ``extra`` fields."""

    def __init__(
        self,
        kind: ErrorKind,
        reason: str,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(f"{kind.name}: {reason}")
        self.kind = kind
        self.reason = reason
        self.headers = dict(headers or {})
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return error_body(self.kind, self.reason, **self.extra)
