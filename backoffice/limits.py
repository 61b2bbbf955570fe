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
* An answer the client does not take as fast as it is written must be taken at
  ``min_send_rate`` bytes a second after a grace of ``send_timeout`` seconds (the same rule
  as the body's, :meth:`ServeLimits.send_deadline`): a GPRS validator fetching a snapshot in
  256 KiB ranges at 4 KB/s finishes, a client that stopped reading is dropped.
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
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from backoffice.errors import BadRequestError, LengthRequiredError

MAX_BATCH_ITEMS = 5000
"""The most journal entries one upload carries (:data:`terminal.wire.journal.MAX_ENTRIES`)."""
MAX_HEAD_BYTES = 64 * 1024
"""Request line and headers together: a terminal sends well under 1 KiB; http.server alone
would take 100 header lines of 64 KiB each."""


@dataclass(frozen=True)
class ServeLimits:
    """The time and connection limits of one server (``onecard backoffice serve`` options).

    The body rate defaults to what a GPRS-class link still carries (32 kbit/s), so a
    validator on a poor mobile link is not cut off; a bus of terminals on better links can
    serve with a higher one. The send rate defaults to a quarter of that (8 kbit/s): a
    terminal reading an answer competes with its own uploads and retransmissions on the
    same poor link, and a reader that is merely slow must never be cut off mid-snapshot -
    what the rate has to catch is a reader that takes nothing at all.
    """

    idle_timeout: float = 5.0
    header_timeout: float = 10.0
    body_grace: float = 10.0
    min_body_rate: float = 4096.0
    send_timeout: float = 30.0
    min_send_rate: float = 1024.0
    linger: float = 2.0
    max_connections: int = 128
    body_memory: int = 64 * 1024 * 1024
    retry_after: int = 5
    terminal_rate: float = 5.0
    terminal_burst: int = 60
    ingest_rate: float = 20_000.0
    ingest_burst: int = 40_000
    document_ttl: float = 1.0
    key_ttl: float = 5.0

    def __post_init__(self) -> None:
        for name in ("idle_timeout", "header_timeout", "body_grace", "min_body_rate",
                     "send_timeout", "min_send_rate", "terminal_rate", "ingest_rate"):  # fmt: skip
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.terminal_burst < 1:
            raise ValueError("terminal_burst must be at least 1")
        if self.ingest_burst < MAX_BATCH_ITEMS:
            # A burst smaller than one batch would refuse that batch for ever.
            raise ValueError(f"ingest_burst must be at least {MAX_BATCH_ITEMS} (one batch)")
        if self.document_ttl < 0 or self.key_ttl < 0:
            raise ValueError("document_ttl and key_ttl must not be negative")
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

    def send_deadline(self, taken: int) -> float:
        """Seconds from when an answer stopped being taken as fast as it was written (the
        connection's send buffer went over its high-water mark) by which the client must
        have taken more, given it took ``taken`` bytes since: ``send_timeout`` plus the
        time ``taken`` bytes take at ``min_send_rate``. As with :meth:`body_deadline`, the
        deadline moves on as the client reads, so it must average the rate - a reader
        taking a byte now and then is dropped after the grace like one taking nothing."""
        return self.send_timeout + taken / self.min_send_rate

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


# --- back-pressure: rate limits ---------------------------------------------------------------


class TokenBucket:
    """``rate`` tokens a second up to ``burst``; :meth:`take` takes ``count`` if they are
    there and says how long until they would be. Not thread-safe (its owner locks)."""

    __slots__ = ("burst", "last", "rate", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.last = burst, now

    def take(self, count: float, now: float) -> float:
        """0 when ``count`` tokens were taken; else the seconds until they would be there
        (nothing taken: a refused request costs the client nothing)."""
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.last) * self.rate)
        self.last = now
        if self.tokens >= count:
            self.tokens -= count
            return 0.0
        return (count - self.tokens) / self.rate


def retry_after_seconds(wait: float) -> int:
    """A wait as ``Retry-After`` says it: whole seconds, at least 1."""
    return max(1, math.ceil(wait))


class RateLimits:
    """Back-pressure of one back office process (docs/sync.md, "Back-pressure"):

    * per terminal: ``terminal_rate`` requests a second, bursts of ``terminal_burst``
      (every signed request counts, charged when its headers are admitted, before any body
      is read);
    * the whole process's ingest: ``ingest_rate`` journal entries and events a second,
      bursts of ``ingest_burst``, charged once a batch is parsed and before the database.

    A request over either is answered ``429`` with ``Retry-After``. Buckets of terminals
    that have been quiet long enough to be full again are forgotten, so memory follows the
    terminals active in the last ``burst / rate`` seconds. Thread-safe.
    """

    def __init__(
        self, limits: ServeLimits | None = None, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        limits = limits or ServeLimits()
        self.terminal_rate, self.terminal_burst = limits.terminal_rate, limits.terminal_burst
        self._monotonic = monotonic
        self._terminals: dict[str, TokenBucket] = {}
        self._ingest = TokenBucket(limits.ingest_rate, limits.ingest_burst, monotonic())
        self._lock = threading.Lock()
        self._refill = limits.terminal_burst / limits.terminal_rate
        self._next_prune = monotonic() + self._refill

    def terminal_wait(self, terminal_id: str) -> float:
        """Take one request of ``terminal_id``'s allowance: 0, or seconds to wait."""
        now = self._monotonic()
        with self._lock:
            if now >= self._next_prune:
                self._prune(now)
            bucket = self._terminals.get(terminal_id)
            if bucket is None:
                bucket = self._terminals[terminal_id] = TokenBucket(
                    self.terminal_rate, self.terminal_burst, now
                )
            return bucket.take(1, now)

    def ingest_wait(self, items: int) -> float:
        """Take ``items`` entries or events of the process's ingest: 0, or seconds to wait."""
        now = self._monotonic()
        with self._lock:
            return self._ingest.take(min(items, self._ingest.burst), now)

    def tracked(self) -> int:
        """Terminals with a bucket now (for tests and metrics)."""
        with self._lock:
            return len(self._terminals)

    def _prune(self, now: float) -> None:
        full = [t for t, b in self._terminals.items() if now - b.last >= self._refill]
        for terminal_id in full:
            del self._terminals[terminal_id]
        self._next_prune = now + self._refill
