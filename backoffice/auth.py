"""Terminal authentication (docs/sync.md): per-terminal HMAC-SHA256 request signatures.

Pure: :func:`authenticate` takes the request's method, path, headers and body, a lookup of
enrolled terminals and the current time, and returns the terminal id or raises the typed
error the server answers with (401 unknown/bad/stale, 403 revoked).
"""

from __future__ import annotations

import hmac
import math
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from backoffice.errors import AuthenticationError, ClockSkewError, TerminalRevokedError
from backoffice.ingest import TERMINAL_ID_RE
from terminal.sync.auth import (
    HEADER_SIGNATURE,
    HEADER_TERMINAL,
    HEADER_TIME,
    sign_request,
    string_to_sign,
)
from terminal.sync.auth import request_headers as request_headers  # for clients and tests

SECRET_LENGTH = 32
MAX_SKEW_SECONDS = 300.0

# One definition of the request signature for both ends: the terminal's.
signing_string = string_to_sign


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
    if not TERMINAL_ID_RE.fullmatch(terminal_id):
        raise AuthenticationError("malformed terminal id")
    try:
        sent = float(time_text)
    except ValueError:
        raise AuthenticationError(f"{HEADER_TIME} is not a number") from None
    if not math.isfinite(sent) or len(time_text) > 32:
        raise AuthenticationError(f"{HEADER_TIME} is not a time")
    key = lookup(terminal_id)
    if key is None:
        raise AuthenticationError("unknown terminal")
    expected = sign_request(key.secret, method, path_with_query, time_text, body)
    # compare_digest on ASCII str needs both ASCII: compare bytes, whatever was sent.
    if not hmac.compare_digest(expected.encode(), signature.strip().lower().encode()):
        raise AuthenticationError("bad signature")
    if key.revoked:
        raise TerminalRevokedError(f"terminal {terminal_id} is revoked")
    if abs(now - sent) > max_skew:
        raise ClockSkewError(f"request time is {now - sent:+.0f} s off the server's clock")
    return terminal_id
