"""Terminal authentication (docs/sync.md): per-terminal HMAC-SHA256 request signatures,
checked by the wire's definition (:mod:`terminal.wire.requests`) - the one the terminals sign
with.

Pure: :func:`authenticate` takes the request's method, path, headers and body, a lookup of
enrolled terminals and the current time, and returns the terminal id or raises the typed
error the server answers with (401 unknown/bad/stale, 403 revoked).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from backoffice.errors import AuthenticationError, ClockSkewError, TerminalRevokedError
from terminal.wire.requests import (
    HEADER_SIGNATURE,
    HEADER_TERMINAL,
    HEADER_TIME,
    MAX_CLOCK_SKEW,
    RequestAuthError,
    StaleRequestError,
    check_request_time,
    is_terminal_id,
    parse_request_time,
    verify_signature,
)

SECRET_LENGTH = 32
MAX_SKEW_SECONDS = MAX_CLOCK_SKEW


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


def new_secret() -> bytes:
    """A fresh terminal secret from the OS CSPRNG."""
    return secrets.token_bytes(SECRET_LENGTH)


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:
        raise AuthenticationError(f"missing {name} header")
    return value


def authenticate(
    method: str,
    path_with_query: str,
    headers: Mapping[str, str],
    body: bytes,
    lookup: Callable[[str], TerminalKey | None],
    now: float,
    max_skew: float = MAX_SKEW_SECONDS,
) -> str:
    """Check a request's signature headers; return the authenticated terminal id.

    ``headers`` must look names up case-insensitively (``http.client.HTTPMessage`` does).
    The signature is checked before revocation and skew, so someone without the secret
    learns nothing about a terminal's state.
    """
    terminal_id = _header(headers, HEADER_TERMINAL)
    time_text = _header(headers, HEADER_TIME)
    signature = _header(headers, HEADER_SIGNATURE)
    if not is_terminal_id(terminal_id):
        raise AuthenticationError("malformed terminal id")
    try:
        sent = parse_request_time(time_text)
        key = lookup(terminal_id)
        if key is None:
            raise AuthenticationError("unknown terminal")
        verify_signature(key.secret, method, path_with_query, time_text, body, signature)
        if key.revoked:
            raise TerminalRevokedError(f"terminal {terminal_id} is revoked")
        check_request_time(sent, now, max_skew)
    except StaleRequestError as exc:
        raise ClockSkewError(exc.reason) from None
    except RequestAuthError as exc:
        raise AuthenticationError(exc.reason) from None
    return terminal_id
