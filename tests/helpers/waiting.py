"""Bounded waits for conditions another thread or process makes true: a bound that guards
against a hang, never a measure of speed."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(condition: Callable[[], object], seconds: float = 10.0, poll: float = 0.02) -> bool:
    """Whether ``condition()`` came true within ``seconds`` (asked every ``poll`` s)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(poll)
    return True
