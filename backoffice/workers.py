"""``onecard backoffice serve --workers N``: N uvicorn worker processes on one listening
socket, sharing one PostgreSQL (docs/deploy.md).

The parent binds the socket and hands it to uvicorn's process supervisor
(``uvicorn.supervisors.Multiprocess``), which starts the workers, pings them, and replaces
one that dies (a ``kill -9``) while the others go on accepting from the same socket. Each
worker builds its own back office from :class:`WorkerSettings`: its storage (a PostgreSQL
pool; migrations under an advisory lock, so workers starting together are safe) and its
publication key. Nothing is shared between workers but the database, so a terminal's retry
may land on any of them.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from typing import Any

from starlette.types import Receive, Scope, Send
from uvicorn.supervisors import Multiprocess

from backoffice.asgi import DEFAULT_THREADS, build_app
from backoffice.errors import ServeConfigError
from backoffice.fleet import DEFAULT_SILENT_AFTER
from backoffice.limits import ServeLimits
from backoffice.metrics import mark_worker_dead
from backoffice.server import BackOffice
from backoffice.stack import BackOfficeConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker process needs to build its back office (picklable: the supervisor
    sends it to each worker it starts)."""

    storage: str
    publication_key: str
    limits: ServeLimits = field(default_factory=ServeLimits)
    pool_size: int = DEFAULT_THREADS
    silent_after: float = DEFAULT_SILENT_AFTER


class WorkerApplication:
    """The ASGI app of a worker process: built from :class:`WorkerSettings` in the worker,
    on its first message (the lifespan startup), so that only the settings cross the
    process boundary."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self._app: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"settings": self.settings, "_app": None}

    def _open(self) -> BackOffice:
        from backoffice import keys
        from backoffice.storage import open_storage

        key = keys.load_publication_key(self.settings.publication_key)
        storage = open_storage(self.settings.storage, pool_size=self.settings.pool_size)
        log.info("back office worker %d serving storage %s", os.getpid(), storage.dialect)
        limits = self.settings.limits
        return BackOffice.serving(storage, key, limits, self.settings.silent_after)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            self._app = build_app(
                self._open,
                self.settings.limits,
                close_office=_close,
                threads=self.settings.pool_size,
            )
        await self._app(scope, receive, send)


def _close(office: Any) -> None:
    office.storage.close()


def run_workers(
    settings: WorkerSettings,
    workers: int,
    sock: socket.socket,
    tls_files: tuple[str, str] | None = None,
) -> None:
    """Serve with ``workers`` processes on ``sock`` until SIGINT or SIGTERM (uvicorn's
    supervisor: a worker that dies is replaced). PostgreSQL only: SQLite has one writer."""
    if workers > 1 and not settings.storage.startswith(("postgresql://", "postgres://")):
        raise ServeConfigError(
            f"--workers {workers} needs PostgreSQL storage: SQLite has one writer, so it is "
            "served by one worker (--workers 1)"
        )
    config = BackOfficeConfig(WorkerApplication(settings), settings.limits, tls_files, workers)
    MetricsMultiprocess(config, sockets=[sock]).run()


class MetricsMultiprocess(Multiprocess):
    """uvicorn's supervisor, telling prometheus-client of every worker that exits
    (:func:`backoffice.metrics.mark_worker_dead`): one that died and was replaced, one
    replaced on a restart, and all of them at shutdown. It watches its ``processes`` list
    around the supervisor's own steps rather than re-implementing them, so the supervisor's
    logic (pings, restarts) stays uvicorn's."""

    def _pids(self) -> set[int]:
        return {pid for pid in (process.pid for process in self.processes) if pid is not None}

    def _reap(self, before: set[int]) -> None:
        for pid in sorted(before - self._pids()):
            mark_worker_dead(pid)

    def keep_subprocess_alive(self) -> None:
        before = self._pids()
        super().keep_subprocess_alive()
        self._reap(before)

    def restart_all(self) -> None:
        before = self._pids()
        super().restart_all()
        self._reap(before)

    def join_all(self) -> None:
        super().join_all()
        for pid in sorted(self._pids()):  # all have exited: joined
            mark_worker_dead(pid)
