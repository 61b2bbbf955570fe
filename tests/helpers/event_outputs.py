"""Outputs that note each call in a shared event list, so a test can check the order of the
journal append, the gate and the holder message (unit tests only)."""

from __future__ import annotations


class EventOutputs:
    def __init__(self, events: list) -> None:
        self.events = events

    def open_gate(self) -> None:
        self.events.append(("gate",))

    def indicate(self, outcome) -> None:
        self.events.append(("indicate", outcome))

    def show(self, message) -> None:
        self.events.append(("show", message))

    def close(self) -> None:
        pass
