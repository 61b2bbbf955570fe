"""Answering on the event loop: what the back office may do there, and what it may not.

Most document polls need nothing but what a back office process already holds - the
terminal's key (:class:`backoffice.auth.TerminalKeys`), the versions in force and the
rendered documents (:class:`backoffice.documents.DocumentCache`). Handing such a request
to a worker thread and back costs far more than answering it (docs/sync.md, "How the back
office serves"), so :mod:`backoffice.asgi` first tries to answer it on the event loop with
the storage *barred*: inside :func:`storage_barred`, a cache that would have to ask the
database raises :class:`StorageNeeded` instead, and the request goes to a thread as
before. A database call - which can block for as long as the database likes - therefore
never runs on the event loop, whatever is cached or not.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

_BARRED: contextvars.ContextVar[bool] = contextvars.ContextVar("storage_barred", default=False)


class StorageNeeded(Exception):
    """Raised by a cache inside :func:`storage_barred` instead of asking the storage: the
    request is to be answered on a worker thread. Never an answer to a client."""


@contextlib.contextmanager
def storage_barred() -> Iterator[None]:
    """Within this block (on this thread or task), :func:`check_storage` raises."""
    token = _BARRED.set(True)
    try:
        yield
    finally:
        _BARRED.reset(token)


def check_storage(what: str) -> None:
    """Called by a cache just before it asks the storage: raises :class:`StorageNeeded`
    inside :func:`storage_barred`."""
    if _BARRED.get():
        raise StorageNeeded(what)
