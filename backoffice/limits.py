"""How long and how many: the limits that keep a client from holding the back office.

Pure policy, no sockets: the HTTP server of :mod:`backoffice.server` applies it today, and
an ASGI stack can apply the same numbers with its own timers.

* A kept-alive connection may wait ``idle_timeout`` for its next request; from the first
  byte of a request, its line and headers (and, over TLS, the handshake before them) must
  arrive within ``header_timeout`` and hold at most ``MAX_HEAD_BYTES``.
* The body must keep up ``min_body_rate`` bytes a second after a grace of
  ``body_grace`` seconds: a client trickling a byte a second is dropped after the grace,
  whatever length it announced, and a slow but honest link is not (see
  :meth:`ServeLimits.body_deadline`).
* At most ``max_connections`` connections are served at once; a few more are answered
  ``503`` with ``Retry-After`` (:class:`ConnectionSlots`), and beyond those a connection is
  closed at once - nothing waits in a queue for ever.
* The bodies being read at once hold at most ``body_memory`` bytes (:class:`ByteBudget`):
  a body that would go over is answered ``503`` with ``Retry-After`` before it is read.
  Checking the headers first keeps strangers out; this bounds what a client that knows a
  terminal id (they are not secret) can make the server hold before the signature fails.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from backoffice.errors import BadRequestError, LengthRequiredError

MAX_HEAD_BYTES = 64 * 1024
"""Request line and headers together: a terminal sends well under 1 KiB; http.server alone
would take 100 header lines of 64 KiB each."""


@dataclass(frozen=True)
class ServeLimits:
    """The time and connection limits of one server (``onecard backoffice serve`` options).

    The body rate defaults to what a GPRS-class link still carries (32 kbit/s), so a
    validator on a poor mobile link is not cut off; a bus of terminals on better links can
    serve with a higher one.
    """

    idle_timeout: float = 5.0
    header_timeout: float = 10.0
    body_grace: float = 10.0
    min_body_rate: float = 4096.0
    send_timeout: float = 30.0
    linger: float = 2.0
    max_connections: int = 128
    body_memory: int = 64 * 1024 * 1024
    retry_after: int = 5

    def __post_init__(self) -> None:
        for name in ("idle_timeout", "header_timeout", "body_grace", "min_body_rate",
                     "send_timeout"):  # fmt: skip
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.linger < 0 or self.retry_after < 0:
            raise ValueError("linger and retry_after must not be negative")
        if self.max_connections < 1 or self.body_memory < 1:
            raise ValueError("max_connections and body_memory must be at least 1")

    def body_deadline(self, received: int) -> float:
        """Seconds from the start of a body by which its next bytes must have come, given
        ``received`` bytes so far: the grace, plus the time ``received`` bytes take at the
        minimum rate. The deadline moves on as bytes arrive, so the body as a whole must
        average the minimum rate - not merely send a byte now and then."""
        return self.body_grace + received / self.min_body_rate

    @property
    def max_refusing(self) -> int:
        """Connections over the limit that are still answered ``503`` (each for at most the
        time of reading one request head), beyond which they are closed unanswered."""
        return max(4, self.max_connections // 4)


def body_length(method: str, headers: Mapping[str, str]) -> int:
    """The length of a request's body from its headers, before any of it is read: 0 for a
    request without a body. Raises :class:`LengthRequiredError` (chunked, or a ``POST``
    without ``Content-Length``: an unbounded body) or :class:`BadRequestError` (a
    ``Content-Length`` that is not a plain number). ``headers`` looks names up
    case-insensitively."""
    if headers.get("Transfer-Encoding"):
        raise LengthRequiredError("chunked bodies are not accepted; send Content-Length")
    text = headers.get("Content-Length")
    if text is None:
        if method == "POST":
            raise LengthRequiredError("Content-Length is required")
        return 0
    text = text.strip()
    # Only ASCII digits: int() would take "+1", "1_0" and other scripts' digits.
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise BadRequestError("bad Content-Length")
    return int(text)


class Slot(enum.Enum):
    """What a new connection gets from :class:`ConnectionSlots`."""

    SERVE = "serve"
    REFUSE = "refuse"  # answered 503 with Retry-After
    DROP = "drop"  # closed at once: not even room to say no


class ConnectionSlots:
    """Counts connections in: ``serving`` of them are served, ``refusing`` more are answered
    503, and any beyond are dropped. Thread-safe; every :meth:`take` is matched by one
    :meth:`give_back` of what it returned."""

    def __init__(self, serving: int, refusing: int) -> None:
        self._limits = {Slot.SERVE: serving, Slot.REFUSE: refusing}
        self._used = {Slot.SERVE: 0, Slot.REFUSE: 0}
        self._lock = threading.Lock()

    def take(self) -> Slot:
        with self._lock:
            for slot in (Slot.SERVE, Slot.REFUSE):
                if self._used[slot] < self._limits[slot]:
                    self._used[slot] += 1
                    return slot
        return Slot.DROP

    def give_back(self, slot: Slot) -> None:
        if slot is Slot.DROP:
            return
        with self._lock:
            self._used[slot] -= 1

    def in_use(self) -> int:
        """Connections served or being refused now."""
        with self._lock:
            return sum(self._used.values())


class ByteBudget:
    """A number of bytes shared by the requests in flight: :meth:`reserve` takes some if
    they are there (never waits), :meth:`release` gives them back. Thread-safe."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._left = total
        self._lock = threading.Lock()

    def reserve(self, count: int) -> bool:
        with self._lock:
            if count > self._left:
                return False
            self._left -= count
            return True

    def release(self, count: int) -> None:
        with self._lock:
            self._left += count

    def in_use(self) -> int:
        with self._lock:
            return self.total - self._left
