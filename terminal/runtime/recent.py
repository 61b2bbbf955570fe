"""Which cards went through lately: the repeat-tap and passback windows, across restarts.

A gate refuses a card that entered within ``passback_minutes``; a validator refuses a card
that paid within ``repeat_seconds``. :class:`RecentTokens` is that memory. It is rebuilt at
start from the journal, which holds the card token, the time and the decision of every
transaction (:func:`accepted_since`), so a restart of the runtime - a kill -9 with a card
still on the reader, a power cut - forgets nothing the journal holds: the card found on the
reader at start is read like any tap and refused (``repeat_tap``, ``passback``) if it went
through within the window. No second store: the journal is written before the holder is
told, so whatever was let through is in it.

Times: the journal records wall time; the window runs on the monotonic clock, so that a
wall clock set forward or back neither opens nor shuts it while the terminal runs. A
journal entry is placed on the monotonic line by its age in wall time at rebuild; an entry
from the future (the wall clock was set back since) counts as just now - it stays in the
window rather than leave it early.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from terminal.host.clock import Clock
from terminal.journal.entry import JournalEntry

CAPACITY = 10_000
"""Tokens kept before those out of the window are dropped (a busy gate sees fewer than this
in any passback window)."""


class JournalTail(Protocol):
    """What the rebuild reads: :meth:`terminal.journal.store.Journal.since`."""

    def since(self, when: float) -> Iterable[JournalEntry]: ...


class RecentTokens:
    """Card tokens let through within ``window_seconds``, by the clock's monotonic time."""

    def __init__(self, clock: Clock, window_seconds: float, capacity: int = CAPACITY) -> None:
        self.clock = clock
        self.window = window_seconds
        self.capacity = capacity
        self._seen: dict[bytes, float] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def recent(self, *tokens: bytes | None) -> bool:
        """Whether any of ``tokens`` (None ignored) went through within the window."""
        now = self.clock.monotonic()
        for token in tokens:
            at = self._seen.get(token) if token is not None else None
            if at is not None and now - at < self.window:
                return True
        return False

    def remember(self, *tokens: bytes | None) -> None:
        """``tokens`` (None ignored) went through now."""
        self._put((token, self.clock.monotonic()) for token in tokens if token is not None)

    def restore(self, seen: Iterable[tuple[bytes, float]]) -> int:
        """Take ``(token, wall time)`` pairs from the journal (:func:`accepted_since`);
        returns how many are within the window now."""
        wall, mono = self.clock.now(), self.clock.monotonic()
        kept = []
        for token, at in seen:
            age = max(0.0, wall - at)
            if age < self.window:
                kept.append((token, mono - age))
        self._put(kept)
        return len(kept)

    def _put(self, items: Iterable[tuple[bytes, float]]) -> None:
        for token, at in items:
            if len(self._seen) >= self.capacity:
                now = self.clock.monotonic()
                self._seen = {t: a for t, a in self._seen.items() if now - a < self.window}
            # The later time wins: a token restored from an old entry never shortens the
            # window of a newer one.
            self._seen[token] = max(at, self._seen.get(token, at))


def accepted_since(entries: Iterable[JournalEntry], since: float) -> list[tuple[bytes, float]]:
    """``(card token, wall time)`` of the accepted entries recorded at or after ``since``
    (wall time), cards and codes alike: what went through. Pure."""
    return [
        (bytes.fromhex(entry.card_token), entry.time)
        for entry in entries
        if entry.decision == "accept" and entry.time >= since
    ]


def restore_from_journal(recent: RecentTokens, journal: JournalTail) -> int:
    """Rebuild ``recent`` from the journal's entries within its window; returns how many
    tokens are in it."""
    since = recent.clock.now() - recent.window
    return recent.restore(accepted_since(journal.since(since), since))
