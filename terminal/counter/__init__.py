"""The counter profile's hand-off of the holder record to a hospital system
(:mod:`terminal.counter.api`)."""

from terminal.counter.api import CounterApi

__all__ = ["CounterApi"]
