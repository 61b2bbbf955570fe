"""Serving the back office on uvicorn: in a thread of the calling process (embedded, tests,
the demo, ``serve --workers 1``) or as N worker processes sharing one listening socket and
one PostgreSQL (``serve --workers N``).

* :func:`serve_in_thread` - a given :class:`~backoffice.server.BackOffice` behind uvicorn
  in a background thread; returns a :class:`RunningServer` (``.url``, ``.port``,
  ``.shutdown()``, a context manager) once the socket listens and the app has started.
* :mod:`backoffice.workers` - N worker processes (``serve --workers N``) with this
  module's configuration and socket.

Either way the protocol is :class:`~backoffice.http_protocol.GuardedHttpProtocol` and the
app :func:`backoffice.asgi.build_app`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
from typing import Any

import uvicorn

from backoffice.answers import RequestHandler
from backoffice.asgi import DEFAULT_THREADS, build_app
from backoffice.errors import ServeConfigError
from backoffice.http_protocol import ConnectionGuard, GuardedHttpProtocol
from backoffice.limits import ServeLimits

log = logging.getLogger(__name__)

GRACEFUL_SECONDS = 10.0
"""At shutdown, how long requests being answered may take to finish."""
BACKLOG = 2048


class BackOfficeConfig(uvicorn.Config):
    """uvicorn's configuration with the back office's protocol and limits. Picklable (the
    supervisor sends it to each worker); the connection guard is made in the process that
    serves, on first use."""

    def __init__(
        self,
        app: Any,
        limits: ServeLimits,
        tls_files: tuple[str, str] | None = None,
        workers: int = 1,
    ) -> None:
        super().__init__(
            app,
            http=GuardedHttpProtocol,
            ws="none",
            lifespan="on",
            interface="asgi3",
            loop="asyncio",  # the TLS layer of http_protocol is asyncio's
            log_config=None,  # the application's logging stays the application's
            access_log=False,
            proxy_headers=False,  # nothing here depends on the client's address
            server_header=False,
            headers=[("Server", "onecard-backoffice/2")],
            backlog=BACKLOG,
            workers=workers,
            timeout_keep_alive=max(1, int(limits.idle_timeout)),
            timeout_graceful_shutdown=int(GRACEFUL_SECONDS),
        )
        self.limits = limits
        self.tls_files = tls_files
        self._guard: ConnectionGuard | None = None

    def connection_guard(self) -> ConnectionGuard:
        if self._guard is None:
            context = make_ssl_context(*self.tls_files) if self.tls_files else None
            self._guard = ConnectionGuard(self.limits, context)
        return self._guard

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_guard"] = None  # locks and TLS contexts are made anew in each worker
        return state


class _Server(uvicorn.Server):
    """uvicorn's server, stoppable from another thread at once, and dropping connections
    still in their TLS handshake when it stops (uvicorn knows only established ones)."""

    def __init__(self, config: BackOfficeConfig) -> None:
        super().__init__(config)
        self.guard_config = config
        self.ready = threading.Event()
        self.failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        await super().startup(sockets)
        self.ready.set()

    async def main_loop(self) -> None:
        # uvicorn polls every 0.1 s; here a stop request wakes the loop at once, and the
        # once-a-second tick keeps the Date header fresh.
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 10) % 864000
            assert self._wake is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 1.0)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.guard_config.connection_guard().drop_all()
        await super().shutdown(sockets)

    def request_stop(self) -> None:
        self.should_exit = True
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(wake.set)


class RunningServer:
    """A back office serving in a background thread: ``.port``, ``.url``, ``.shutdown()``
    (also a context manager)."""

    def __init__(
        self, server: _Server, thread: threading.Thread, sock: socket.socket, scheme: str
    ) -> None:
        self._server = server
        self._thread = thread
        self._config: BackOfficeConfig = server.guard_config
        address = sock.getsockname()
        self.host = str(address[0])
        self.port = int(address[1])
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"{scheme}://{host}:{self.port}"

    @property
    def limits(self) -> ServeLimits:
        return self._config.limits

    def connections(self) -> int:
        """Connections open now (served, or being answered 503)."""
        return self._config.connection_guard().connections()

    def shutdown(self) -> None:
        """Stop accepting, end open connections (a request being answered is finished
        first), and wait for the server's thread to end."""
        self._server.request_stop()
        self._thread.join()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def make_ssl_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A TLS server context (TLS 1.2 at least) with the certificate chain and key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (0: a free port), SO_REUSEADDR so that a
    restarted back office gets its port back at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=BACKLOG)
    sock.set_inheritable(True)  # handed to worker processes
    return sock


def serve_in_thread(
    backoffice: RequestHandler,
    host: str = "127.0.0.1",
    port: int = 0,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    limits: ServeLimits | None = None,
    threads: int = DEFAULT_THREADS,
) -> RunningServer:
    """Serve ``backoffice`` on uvicorn in a daemon thread; return once it accepts."""
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("tls_cert and tls_key go together")
    limits = limits or ServeLimits()
    tls_files = (tls_cert, tls_key) if tls_cert and tls_key else None
    app = build_app(lambda: backoffice, limits, threads=threads)
    config = BackOfficeConfig(app, limits, tls_files)
    config.connection_guard()  # a bad certificate fails here, in the caller's thread
    sock = bind_socket(host, port)
    server = _Server(config)

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as error:  # reported to the caller (startup) or logged
            server.failure = error
            if server.ready.is_set():
                log.error("the back office server stopped with an error", exc_info=error)
        finally:
            server.ready.set()
            with contextlib.suppress(OSError):
                sock.close()

    thread = threading.Thread(target=run, name=f"backoffice-{sock.getsockname()[1]}", daemon=True)
    running = RunningServer(server, thread, sock, "https" if tls_files else "http")
    thread.start()
    server.ready.wait()
    if server.failure is not None or not server.started:
        thread.join()
        raise ServeConfigError(f"the back office did not start: {server.failure!r}")
    return running
