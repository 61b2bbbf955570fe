"""Terminal authentication (docs/sync.md): per-terminal HMAC-SHA256 request signatures,
checked by the wire's definition (:mod:`terminal.wire.requests`) - the one the terminals sign
with.

Two steps, so that a server reads no body for someone it would refuse anyway:

* :func:`check_headers` - before the body: the terminal id, time and signature headers are
  there and well formed, the terminal is enrolled and not revoked, and the time is within
  the allowed skew. It returns a :class:`Claim`.
* :func:`check_body` - once the body is read: the signature over method, path, time and
  body holds under the claimed terminal's secret.

:func:`authenticate` is both at once, for a request already read whole. Pure: a lookup of
enrolled terminals and the current time are given; each refusal is the typed error the
server answers with (401 unknown/bad/stale, 403 revoked).

Terminal ids and their state (enrolled, revoked) are not secrets - the terminal's secret
is - so refusing on them before the signature is checked gives nothing away that matters,
and it is what keeps an unknown client from making the server read a large body.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from backoffice.errors import AuthenticationError, ClockSkewError, TerminalRevokedError
from terminal.wire.requests import (
    HEADER_SIGNATURE,
    HEADER_TERMINAL,
    HEADER_TIME,
    MAX_CLOCK_SKEW,
    RequestAuthError,
    check_request_time,
    is_terminal_id,
    parse_request_time,
    verify_signature,
)

SECRET_LENGTH = 32
MAX_SKEW_SECONDS = MAX_CLOCK_SKEW
SIGNATURE_HEX_DIGITS = 64
"""An HMAC-SHA256 in hex: anything else cannot be a signature, body or not."""


@dataclass(frozen=True, repr=False)
class TerminalKey:
    """An enrolled terminal: its 32-byte secret and whether it is revoked.

    ``repr`` leaves the secret out, so a TerminalKey may appear in logs and tracebacks.
    """

    terminal_id: str
    secret: bytes
    revoked: bool = False

    def __repr__(self) -> str:
        return f"TerminalKey({self.terminal_id!r}, revoked={self.revoked})"


@dataclass(frozen=True)
class Claim:
    """A request whose authentication headers passed :func:`check_headers`: the enrolled
    terminal it says it is (``key``), and its time and signature headers, checked against
    the body once it is read."""

    key: TerminalKey
    time: str
    signature: str

    @property
    def terminal_id(self) -> str:
        return self.key.terminal_id


def new_secret() -> bytes:
    """A fresh terminal secret from the OS CSPRNG."""
    return secrets.token_bytes(SECRET_LENGTH)


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:
        raise AuthenticationError(f"missing {name} header")
    return value


def _is_signature(text: str) -> bool:
    text = text.strip()
    return len(text) == SIGNATURE_HEX_DIGITS and all(c in string.hexdigits for c in text)


def check_headers(
    headers: Mapping[str, str],
    lookup: Callable[[str], TerminalKey | None],
    now: float,
    max_skew: float = MAX_SKEW_SECONDS,
) -> Claim:
    """Check what a request's headers alone can show: the three headers are there and well
    formed, the terminal is known (``lookup``) and not revoked, and its time is within
    ``max_skew`` seconds of ``now``. Raises :class:`AuthenticationError` (401),
    :class:`ClockSkewError` (401) or :class:`TerminalRevokedError` (403).

    ``headers`` must look names up case-insensitively (``http.client.HTTPMessage`` does).
    """
    terminal_id = _header(headers, HEADER_TERMINAL)
    time_text = _header(headers, HEADER_TIME)
    signature = _header(headers, HEADER_SIGNATURE)
    if not is_terminal_id(terminal_id):
        raise AuthenticationError("malformed terminal id")
    if not _is_signature(signature):
        raise AuthenticationError(f"{HEADER_SIGNATURE} is not {SIGNATURE_HEX_DIGITS} hex digits")
    try:
        sent = parse_request_time(time_text)
    except RequestAuthError as exc:
        raise AuthenticationError(exc.reason) from None
    key = lookup(terminal_id)
    if key is None:
        raise AuthenticationError("unknown terminal")
    if key.revoked:
        raise TerminalRevokedError(f"terminal {terminal_id} is revoked")
    try:
        check_request_time(sent, now, max_skew)
    except RequestAuthError as exc:
        raise ClockSkewError(exc.reason) from None
    return Claim(key, time_text, signature)


def check_body(claim: Claim, method: str, path_with_query: str, body: bytes) -> str:
    """Check the signature of a request whose headers passed (``claim``) now that its body
    is read; return the authenticated terminal id or raise :class:`AuthenticationError`."""
    try:
        secret = claim.key.secret
        verify_signature(secret, method, path_with_query, claim.time, body, claim.signature)
    except RequestAuthError as exc:
        raise AuthenticationError(exc.reason) from None
    return claim.terminal_id


def authenticate(
    method: str,
    path_with_query: str,
    headers: Mapping[str, str],
    body: bytes,
    lookup: Callable[[str], TerminalKey | None],
    now: float,
    max_skew: float = MAX_SKEW_SECONDS,
) -> str:
    """:func:`check_headers` then :func:`check_body`, for a request read whole; return the
    authenticated terminal id."""
    claim = check_headers(headers, lookup, now, max_skew)
    return check_body(claim, method, path_with_query, body)
