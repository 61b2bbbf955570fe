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

import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from backoffice.errors import AuthenticationError, ClockSkewError, TerminalRevokedError
from backoffice.loopsafe import check_storage
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
DEFAULT_KEY_TTL = 5.0
"""Seconds a back office process keeps a terminal's key (``serve --key-ttl``): a revocation
made by another process (the operator's CLI, another worker) takes effect within it."""
MAX_CACHED_KEYS = 100_000
"""Terminals whose keys one process keeps at once: a city's fleet, with room."""


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


class TerminalKeys:
    """The enrolled terminals' keys as one back office process sees them: ``lookup`` (the
    storage's ``terminal_key``) asked at most once per terminal per ``ttl`` seconds.

    A poll that costs a database round trip for the key alone is most of the cost of a
    ``304`` on PostgreSQL; a terminal polls every few seconds at most, so a key kept a few
    seconds saves nearly all of them. What that costs: a terminal revoked (or enrolled, or
    given a new secret) by *another* process is seen up to ``ttl`` seconds later. An
    enrolment or revocation through this process's storage is seen at once: ``changes``
    (the storage's count of them) moving on empties the cache. Unknown terminals are kept
    too (a stranger's made-up ids do not each cost a query for ``ttl``), all within
    ``max_entries``, oldest out first. ``ttl`` 0: asked at every request. Thread-safe.
    """

    def __init__(
        self,
        lookup: Callable[[str], TerminalKey | None],
        ttl: float = DEFAULT_KEY_TTL,
        *,
        changes: Callable[[], int] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        max_entries: int = MAX_CACHED_KEYS,
    ) -> None:
        if ttl < 0:
            raise ValueError("ttl must not be negative")
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._lookup = lookup
        self._ttl = ttl
        self._changes = changes
        self._monotonic = monotonic
        self._max = max_entries
        self._keys: OrderedDict[str, tuple[float, TerminalKey | None]] = OrderedDict()
        self._seen_changes = changes() if changes is not None else 0
        self._lock = threading.Lock()

    def _held(self, terminal_id: str, now: float) -> tuple[bool, TerminalKey | None]:
        with self._lock:
            if self._changes is not None:
                changes = self._changes()
                if changes != self._seen_changes:
                    self._keys.clear()
                    self._seen_changes = changes
            held = self._keys.get(terminal_id)
            if held is None or now - held[0] >= self._ttl:
                return False, None
            return True, held[1]

    def __call__(self, terminal_id: str) -> TerminalKey | None:
        """The key of ``terminal_id`` (None: not enrolled), from the cache while fresh.
        Inside :func:`backoffice.loopsafe.storage_barred` a miss raises
        :class:`~backoffice.loopsafe.StorageNeeded` instead of asking the storage."""
        now = self._monotonic()
        found, key = self._held(terminal_id, now)
        if found:
            return key
        check_storage("terminal key")
        with self._lock:
            seen = self._seen_changes
        key = self._lookup(terminal_id)
        if self._ttl > 0:
            with self._lock:
                # Not kept if an enrolment or revocation was made while it was read: the
                # key read may be from before it.
                if self._changes is None or self._changes() == seen == self._seen_changes:
                    self._keys[terminal_id] = (now, key)
                    self._keys.move_to_end(terminal_id)
                    while len(self._keys) > self._max:
                        self._keys.popitem(last=False)
        return key

    def invalidate(self, terminal_id: str | None = None) -> None:
        """Forget one terminal's key (or all): the next request asks the storage."""
        with self._lock:
            if terminal_id is None:
                self._keys.clear()
            else:
                self._keys.pop(terminal_id, None)


def new_secret() -> bytes:
    """A fresh terminal secret from the OS CSPRNG."""
    return secrets.token_bytes(SECRET_LENGTH)


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:
        raise AuthenticationError(f"missing {name} header")
    return value


_SIGNATURE = re.compile(f"[0-9A-Fa-f]{{{SIGNATURE_HEX_DIGITS}}}")


def _is_signature(text: str) -> bool:
    # A regular expression: a character-by-character check was a tenth of a 304's cost.
    return _SIGNATURE.fullmatch(text.strip()) is not None


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
