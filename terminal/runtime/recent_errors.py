"""The last warnings and errors of the process, for the operator status page.

:class:`RecentErrors` is a :class:`logging.Handler` that keeps the newest records at WARNING
and above in memory, already reduced to what the page shows: time, level, logger and a
short message. The page is read by whoever stands at the terminal, so the message is masked
here whatever the logging call did: every run of 12 or more digits (card numbers, ID numbers,
an ID number's check character ``X`` included) keeps its first and last four characters only
(:func:`terminal.privacy.masking.mask_middle`).
"""

from __future__ import annotations

import collections
import logging
import re
import threading
from typing import Any

from terminal.privacy.masking import mask_middle

DEFAULT_CAPACITY = 50
MESSAGE_LIMIT = 300
"""Characters kept of a message (after masking, so a cut never leaves digits unmasked)."""

# 17 digits and the check character first, so an ID number is masked as one identifier.
_IDENTIFIER = re.compile(r"\d{17}[Xx]|\d{12,}")


def mask_identifiers(text: str) -> str:
    """``text`` with every run of 12 or more digits (and 17 digits + ``X``) masked in the
    middle: ``500101199001011234`` becomes ``5001**********1234``."""
    return _IDENTIFIER.sub(lambda match: mask_middle(match.group()), text)


class RecentErrors(logging.Handler):
    """Keeps the last ``capacity`` records at WARNING and above as dicts ``{"at": epoch
    seconds, "level": "WARNING", "logger": name, "message": masked text}``.

    Thread-safe; :meth:`emit` never raises (a record it cannot reduce is reported through
    :meth:`logging.Handler.handleError`, like any handler's).
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        super().__init__(logging.WARNING)
        self.capacity = capacity
        self._records: collections.deque[dict[str, Any]] = collections.deque(maxlen=capacity)
        self._records_lock = threading.Lock()
        self._installed_on: logging.Logger | None = None

    def emit(self, record: logging.LogRecord) -> None:
        """Keep ``record`` (reduced and masked), dropping the oldest beyond capacity."""
        try:
            entry = {
                "at": float(record.created),
                "level": record.levelname,
                "logger": record.name,
                "message": mask_identifiers(_message(record))[:MESSAGE_LIMIT],
            }
            with self._records_lock:
                self._records.append(entry)
        except Exception:
            self.handleError(record)

    def snapshot(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest ``limit`` records, newest first (copies: the caller may keep them)."""
        if limit <= 0:
            return []
        with self._records_lock:
            newest = list(self._records)[-limit:]
        return [dict(entry) for entry in reversed(newest)]

    def install(self, logger: logging.Logger | None = None) -> None:
        """Attach to ``logger`` (the root logger by default), leaving any other one it was
        attached to."""
        target = logger if logger is not None else logging.getLogger()
        if self._installed_on is not None and self._installed_on is not target:
            self.remove()
        target.addHandler(self)
        self._installed_on = target

    def remove(self) -> None:
        """Detach from the logger :meth:`install` attached to (nothing when none)."""
        if self._installed_on is not None:
            self._installed_on.removeHandler(self)
            self._installed_on = None


def _message(record: logging.LogRecord) -> str:
    """The formatted message, with the exception's type and text (not its traceback)."""
    try:
        text = record.getMessage()
    except Exception:  # a bad format string still says which call logged it
        text = f"{record.msg!s} (message arguments did not format)"
    if record.exc_info and record.exc_info[0] is not None:
        exc_type, exc, _ = record.exc_info
        try:
            detail = str(exc)
        except Exception:  # an exception whose __str__ fails is still named
            detail = ""
        summary = f"{exc_type.__name__}: {detail}" if detail else exc_type.__name__
        text = f"{text} ({summary})"
    return text
