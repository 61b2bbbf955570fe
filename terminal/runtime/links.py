"""The terminal's device and service links at a glance: up or down, since when, how often
they came back.

Every part that holds a link heals it by itself - the card watcher reconnects to pcscd,
the PSAM module reopens its connection on the next use, a serial scanner reopens its port,
the back office senders retry - and tells :class:`Links` what happened through a plain
callback (``report(name, up, reason)``), so no driver imports the runtime. The status page
shows the table and ``/metrics`` exports it (:mod:`terminal.runtime.statuspage`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from terminal.host.clock import Clock


@dataclass
class LinkState:
    """One link: ``up`` (None before anything was reported), the wall time of the last
    change, how often it came back after going down, and the last reason given."""

    name: str
    up: bool | None
    since: float
    reconnects: int = 0
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        state = "unknown" if self.up is None else "up" if self.up else "down"
        return {
            "name": self.name,
            "state": state,
            "since": self.since,
            "reconnects": self.reconnects,
            "reason": self.reason,
        }


class Links:
    """Link states by name, thread-safe (each link reports from its own thread)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._links: dict[str, LinkState] = {}

    def report(self, name: str, up: bool, reason: str = "") -> None:
        """``name`` is up (or down, and why). A report that changes nothing keeps ``since``;
        down then up counts one reconnection."""
        with self._lock:
            link = self._links.get(name)
            if link is None:
                self._links[name] = LinkState(name, up, self._clock.now(), 0, reason)
                return
            if link.up is not up:
                if up and link.up is False:
                    link.reconnects += 1
                link.up = up
                link.since = self._clock.now()
            link.reason = reason

    def reporter(self, name: str) -> Any:
        """``report`` bound to ``name``: a ``(up, reason)`` callback for one link."""
        return lambda up, reason="": self.report(name, bool(up), str(reason))

    def forget(self, name: str) -> None:
        """The link is gone for good (a reader unplugged and not coming back)."""
        with self._lock:
            self._links.pop(name, None)

    def get(self, name: str) -> LinkState | None:
        with self._lock:
            link = self._links.get(name)
            return None if link is None else LinkState(**vars(link))

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._links[name].to_json() for name in sorted(self._links)]
