"""Requests of a terminal to its back office (docs/sync.md): the endpoints, the signature
every request carries, and the ``{"terminal_id", <items>}`` body of a batch.

Every request carries::

    X-Onecard-Terminal:  <terminal_id>
    X-Onecard-Time:      <Unix seconds>
    X-Onecard-Signature: hex(HMAC-SHA256(secret,
                             METHOD "\\n" PATH_WITH_QUERY "\\n" TIME "\\n" hex(SHA-256(body))))

The terminal signs with :func:`request_headers`; the back office checks with
:func:`parse_request_time`, :func:`verify_signature` and :func:`check_request_time`, each
failure a :class:`RequestAuthError` naming why. Pure: no I/O, no clock of its own.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from typing import Any

from terminal.errors import OneCardError, ParseError
from terminal.wire.journal import TERMINAL_ID

INGEST_PATH = "/v1/ingest"
EVENTS_PATH = "/v1/events"
HOTLIST_PATH = "/v1/hotlist"
TRUSTLIST_PATH = "/v1/trustlist"
APPLIST_PATH = "/v1/applist"
HEALTH_PATH = "/health"

HEADER_TERMINAL = "X-Onecard-Terminal"
HEADER_TIME = "X-Onecard-Time"
HEADER_SIGNATURE = "X-Onecard-Signature"
MAX_CLOCK_SKEW = 300.0
"""Seconds a request's time may differ from the back office's clock."""
_MAX_TIME_TEXT = 32


class RequestAuthError(OneCardError):
    """A request whose signature headers do not hold: ``code`` says why."""

    code = "unauthenticated"


class BadSignatureError(RequestAuthError):
    """``X-Onecard-Signature`` is not the request's signature under the terminal's secret."""

    code = "bad_signature"


class BadRequestTimeError(RequestAuthError):
    """``X-Onecard-Time`` is not a time (not a finite number of seconds)."""

    code = "bad_time"


class StaleRequestError(RequestAuthError):
    """``X-Onecard-Time`` is further from the checker's clock than the allowed skew."""

    code = "stale"


class BatchError(ParseError):
    """A request body that is not ``{"terminal_id": ..., <items>: [...]}`` within bounds."""

    code = "bad_batch"


# --- signing ------------------------------------------------------------------------------


def string_to_sign(method: str, path_with_query: str, time: str, body: bytes) -> bytes:
    """The signed text: ``METHOD \\n PATH_WITH_QUERY \\n TIME \\n hex(SHA-256(body))``."""
    digest = hashlib.sha256(body).hexdigest()
    return f"{method.upper()}\n{path_with_query}\n{time}\n{digest}".encode()


def sign_request(secret: bytes, method: str, path_with_query: str, time: str, body: bytes) -> str:
    """``X-Onecard-Signature`` of a request: hex HMAC-SHA256 under the terminal's secret."""
    return hmac.new(
        secret, string_to_sign(method, path_with_query, time, body), hashlib.sha256
    ).hexdigest()


def request_headers(
    terminal_id: str, secret: bytes, method: str, path_with_query: str, body: bytes, now: float
) -> dict[str, str]:
    """The three authentication headers of a request sent at wall time ``now``."""
    time = str(int(now))
    return {
        HEADER_TERMINAL: terminal_id,
        HEADER_TIME: time,
        HEADER_SIGNATURE: sign_request(secret, method, path_with_query, time, body),
    }


# --- checking -----------------------------------------------------------------------------


def is_terminal_id(text: str) -> bool:
    """Whether ``text`` has the form of a terminal id (``[A-Za-z0-9_-]{1,32}``)."""
    return TERMINAL_ID.fullmatch(text) is not None


def parse_request_time(text: str) -> float:
    """The ``X-Onecard-Time`` value as seconds; :class:`BadRequestTimeError` if it is not."""
    try:
        sent = float(text)
    except ValueError:
        raise BadRequestTimeError(f"{HEADER_TIME} is not a number") from None
    if not math.isfinite(sent) or len(text) > _MAX_TIME_TEXT:
        raise BadRequestTimeError(f"{HEADER_TIME} is not a time")
    return sent


def verify_signature(
    secret: bytes, method: str, path_with_query: str, time: str, body: bytes, signature: str
) -> None:
    """Check ``signature`` (hex, any case) against the request; :class:`BadSignatureError`
    when it does not match. Constant-time."""
    expected = sign_request(secret, method, path_with_query, time, body)
    # compare_digest on str needs both ASCII: compare bytes, whatever was sent.
    given = signature.strip().lower().encode("utf-8", "replace")
    if not hmac.compare_digest(expected.encode(), given):
        raise BadSignatureError("bad signature")


def check_request_time(sent: float, now: float, max_skew: float = MAX_CLOCK_SKEW) -> None:
    """:class:`StaleRequestError` when ``sent`` is more than ``max_skew`` seconds from ``now``."""
    if abs(now - sent) > max_skew:
        raise StaleRequestError(f"request time is {now - sent:+.0f} s off the server's clock")


def check_signature(
    secret: bytes,
    method: str,
    path_with_query: str,
    time: str,
    body: bytes,
    signature: str,
    now: float,
    max_skew: float = MAX_CLOCK_SKEW,
) -> str | None:
    """Why a request is refused - ``"bad_time"``, ``"bad_signature"`` or ``"stale"`` - or
    None when it is good: the three checks in the back office's order (the signature before
    the time, so that no one without the secret learns anything). For tests and tools."""
    try:
        sent = parse_request_time(time)
        verify_signature(secret, method, path_with_query, time, body, signature)
        check_request_time(sent, now, max_skew)
    except RequestAuthError as exc:
        return exc.code
    return None


# --- batch bodies -------------------------------------------------------------------------


def batch_envelope(obj: object, field: str, max_items: int) -> tuple[str, list[Any]]:
    """The ``terminal_id`` and the ``field`` array of a decoded ``{"terminal_id", field}``
    request body - an upload (``entries``) or a batch of terminal events (``events``) -
    checked for shape and size. Raises :class:`BatchError`."""
    if not isinstance(obj, dict):
        raise BatchError("body must be a JSON object")
    if obj.keys() != {"terminal_id", field}:
        raise BatchError(f"body must have exactly the fields terminal_id and {field}")
    terminal_id = obj["terminal_id"]
    if not isinstance(terminal_id, str) or not is_terminal_id(terminal_id):
        raise BatchError("terminal_id must match [A-Za-z0-9_-]{1,32}")
    items = obj[field]
    if not isinstance(items, list):
        raise BatchError(f"{field} must be a JSON array")
    if len(items) > max_items:
        raise BatchError(f"at most {max_items} {field} per request")
    return terminal_id, items
