"""Time, injected: expiry, replay windows, retention and sync back-off all ask a clock.

Production uses :class:`SystemClock`; tests use :class:`FixedClock` and move it by hand, so
nothing time-dependent needs a sleep to be tested.
"""

from __future__ import annotations

import datetime
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Wall time, seconds since the Unix epoch (UTC)."""
        ...

    def monotonic(self) -> float:
        """A clock that never goes back, for intervals and time-outs."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class FixedClock:
    """A clock that stands still until told: ``advance(seconds)`` or ``set(epoch)``."""

    def __init__(self, epoch: float = 1_795_000_000.0) -> None:
        self._now = epoch
        self._mono = 0.0

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += seconds
        self._mono += seconds

    def set(self, epoch: float) -> None:
        self._now = epoch


def today(clock: Clock) -> datetime.date:
    """The local calendar date of ``clock`` (China Standard Time, UTC+8)."""
    return datetime.datetime.fromtimestamp(clock.now(), CST).date()


CST = datetime.timezone(datetime.timedelta(hours=8), "CST")
