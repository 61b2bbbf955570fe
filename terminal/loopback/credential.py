"""A bearer token a loopback server may require of every request (RFC 6750).

The client sends ``Authorization: Bearer <token>``; the server keeps only the SHA-256 of
its token and compares digests with :func:`hmac.compare_digest`, so the comparison takes
the same time whatever the client sent (neither how many characters were right nor the
token's length shows), and the token itself is in no attribute, ``repr`` or log line.
"""

from __future__ import annotations

import hashlib
import hmac
import re

TOKEN = re.compile(r"[A-Za-z0-9._~+/-]{32,512}=*")
"""What a token may be: RFC 6750's ``b64token`` (what fits in the header as it is), at
least 32 characters so that it cannot be guessed (``secrets.token_urlsafe(32)`` gives 43),
at most 512."""

REALM = "onecard"


class BearerToken:
    """A token the server requires. ``token`` must match :data:`TOKEN`
    (:class:`ValueError` otherwise, without the value)."""

    def __init__(self, token: str) -> None:
        if not isinstance(token, str) or TOKEN.fullmatch(token) is None:
            raise ValueError(
                "a token is 32 to 512 characters of A-Z a-z 0-9 . _ ~ + / - (and = at the end)"
            )
        self._digest = _digest(token)

    def allows(self, authorization: str | None) -> bool:
        """True when ``authorization`` (the header's value, None when absent) is
        ``Bearer`` (any case) and this token."""
        if authorization is None:
            return False
        scheme, _, given = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(_digest(given.strip()), self._digest)

    def __repr__(self) -> str:
        return "BearerToken(<hidden>)"


def challenge(given: bool) -> str:
    """The ``WWW-Authenticate`` value of a 401: ``invalid_token`` when a credential was sent
    and is not the token (RFC 6750, section 3)."""
    error = ', error="invalid_token"' if given else ""
    return f'Bearer realm="{REALM}"{error}'


def _digest(token: str) -> bytes:
    # Header values arrive as latin-1 text; "replace" keeps any odd byte from raising.
    return hashlib.sha256(token.encode("utf-8", "replace")).digest()
