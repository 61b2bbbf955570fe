"""The back office as an ASGI application (Starlette): a thin adapter over the pure handler.

Every decision is :class:`backoffice.server.BackOffice`'s - which endpoint, which limit,
who the terminal is, what to answer; this module only moves bytes between ASGI and its two
steps, in the order that keeps a stranger from making the back office read a body:

1. the head alone: :func:`backoffice.limits.body_length` and :meth:`BackOffice.admit`
   (endpoint, method, body limit, the terminal's headers - enrolled, not revoked, on time).
   A refusal is answered at once, its body unread, and the connection closed (the protocol
   of :mod:`backoffice.http_protocol` lingers so the client reads the answer);
2. the body's bytes reserved from the process's :class:`~backoffice.limits.ByteBudget`
   (``503 busy`` with ``Retry-After`` when it is spent), then read - only now does uvicorn
   send ``100 Continue`` to a client that waits for it;
3. :meth:`BackOffice.respond`: the signature over the body, then the endpoint.

The handler's work is blocking (the database, signatures), so it runs on
:class:`BlockingCalls`: a fixed set of threads started with the app - the thread count of a
back office does not grow with its clients. Except when it needs no database: a request
whose terminal key this process holds is admitted on the event loop
(:meth:`BackOffice.admit_cached`), and a document poll answered from memory - a ``304``, a
rendered document - is answered there too (:meth:`BackOffice.respond_cached`). The hop to
a thread and back costs several times the work of such an answer; a request that would
need the database is never run on the loop (:mod:`backoffice.loopsafe`).

Requests go straight from uvicorn to :class:`BackOfficeEndpoint`, and answers go out as
two ASGI messages with their headers encoded here: the app is a Starlette app (its
lifespan starts the threads and opens the storage), but its middleware and router would
add nothing to one endpoint that routes, answers and catches everything itself - only
their cost, about a third of a ``304``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import queue
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.routing import Mount
from starlette.types import Receive, Scope, Send

from backoffice.answers import RequestHandler, Response, busy_response, failure_response
from backoffice.limits import ByteBudget, ServeLimits, body_length

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_THREADS = 8
"""Threads for the handler's blocking work: as many as the storage's connection pool."""
SEND_CHUNK = 256 * 1024
"""A large answer (a hotlist snapshot) goes out this much at a time, each waiting for the
client to take the one before (uvicorn's flow control): a slow link holds a chunk in the
back office's memory, not the whole snapshot."""
JSON_TYPE = b"application/json; charset=utf-8"
WORKER_HEADER = "X-Onecard-Worker"
"""Which back office process answered (its pid): behind a load balancer, the one place
that ties a terminal's request to a worker's log."""


class BlockingCalls:
    """A fixed number of threads running blocking calls for the event loop: ``await
    calls.run(fn, *args)``. Started and stopped with the app; every thread is there from
    the start, so the process's thread count is the same at 1 client and at 10,000."""

    def __init__(self, count: int = DEFAULT_THREADS, name: str = "backoffice-call") -> None:
        if count < 1:
            raise ValueError("at least one thread")
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(count)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Let the threads finish what they run and end."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            if thread.is_alive() and thread is not threading.current_thread():
                thread.join()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((fn, args, future, loop))
        return await future

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fn, args, future, loop = item
            try:
                result = fn(*args)
            except BaseException as error:  # handed to the awaiting task, which decides
                loop.call_soon_threadsafe(_settle, future, None, error)
            else:
                loop.call_soon_threadsafe(_settle, future, result, None)
            del item, fn, args, future  # a body is not kept alive by an idle thread


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class BackOfficeEndpoint:
    """The ASGI endpoint every request goes to (module doc): it has the
    :class:`BackOffice` and the threads once the app has started."""

    def __init__(self, limits: ServeLimits) -> None:
        self.limits = limits
        self.office: RequestHandler | None = None
        self.calls: BlockingCalls | None = None
        self.budget: ByteBudget | None = None
        self._worker = str(os.getpid())
        self._worker_bytes = self._worker.encode("ascii")

    def bind(self, office: RequestHandler, calls: BlockingCalls) -> None:
        self.office, self.calls = office, calls
        self.budget = ByteBudget(max(self.limits.body_memory, office.max_body))
        self._worker = str(os.getpid())
        self._worker_bytes = self._worker.encode("ascii")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method = scope["method"]
        target = request_target(scope)
        try:
            response = await self._answer(method, target, Headers(scope=scope), receive)
        except Exception as error:  # a bug here must not become uvicorn's plain-text 500
            response = replace(failure_response(method, target, error), close=True)
        if response is None:
            return  # the client went away, or was dropped at its deadline: no one to answer
        await self._send(scope, receive, send, response)

    async def _answer(
        self, method: str, target: str, headers: Headers, receive: Receive
    ) -> Response | None:
        office, calls, budget = self.office, self.calls, self.budget
        if office is None or calls is None or budget is None:
            raise RuntimeError("the back office app has not started")
        length = None
        try:
            length = body_length(method, headers)
            # On the loop when the terminal's key is held; else on a thread.
            admission = office.admit_cached(method, target, headers, length)
            if admission is None:
                if length == 0:
                    # Nothing to read: both steps in one trip to a thread.
                    return await calls.run(office.handle, method, target, headers, b"")
                admission = await calls.run(office.admit, method, target, headers, length)
            if length == 0:
                response = office.respond_cached(admission, b"")
                if response is None:
                    response = await calls.run(office.respond, admission, b"")
                return response
        except Exception as error:
            response = failure_response(method, target, error)
            # A body on its way is left unread: the connection cannot go on after it.
            return response if length == 0 else replace(response, close=True)
        if not budget.reserve(length):
            log.warning("bodies in flight at their limit: %s answered 503", target[:100])
            return busy_response(self.limits.retry_after)
        try:
            body = await _read_body(receive, length)
            if body is None:
                return None
            response = await calls.run(office.respond, admission, body)
            del body  # gone before its bytes go back to the budget
        finally:
            budget.release(length)
        return response

    async def _send(self, scope: Scope, receive: Receive, send: Send, response: Response) -> None:
        body = response.payload()
        raw: list[tuple[bytes, bytes]] = [(b"x-onecard-worker", self._worker_bytes)]
        typed = False
        for name, value in response.headers.items():
            lower = name.lower()
            typed = typed or lower == "content-type"
            raw.append((lower.encode("latin-1"), value.encode("latin-1")))
        if not typed:
            raw.append((b"content-type", JSON_TYPE))
        if response.status != 304:  # a 304 has no body, and says nothing of its length
            raw.append((b"content-length", str(len(body)).encode("ascii")))
        if response.close:
            raw.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": response.status, "headers": raw})
        if scope["method"] == "HEAD" or response.status == 304:
            await send({"type": "http.response.body", "body": b""})
            return
        view = memoryview(body)
        while len(view) > SEND_CHUNK:
            await send({"type": "http.response.body", "body": view[:SEND_CHUNK], "more_body": True})
            view = view[SEND_CHUNK:]
        await send({"type": "http.response.body", "body": view})


async def _read_body(receive: Receive, length: int) -> bytes | None:
    """The body, as it comes; None when the client went away (or was dropped)."""
    # Kept as it comes, not allocated up front: memory follows what the client sent, not
    # what it announced (and BytesIO hands its buffer over without a copy).
    body = io.BytesIO()
    received = 0
    while received < length:
        message = await receive()
        if message["type"] == "http.disconnect":
            log.info("connection ended %d bytes into a %d-byte body", received, length)
            return None
        chunk = message.get("body", b"")
        body.write(chunk)
        received += len(chunk)
        if not message.get("more_body", False):
            break
    return body.getvalue()


def request_target(scope: Scope) -> str:
    """The request target as sent (path and query): what the terminal's signature covers."""
    raw = scope.get("raw_path") or scope["path"].encode("utf-8")
    query = scope.get("query_string", b"")
    target = raw + b"?" + query if query else raw
    return target.decode("latin-1")


def build_app(
    open_office: Callable[[], RequestHandler],
    limits: ServeLimits,
    close_office: Callable[[RequestHandler], None] | None = None,
    threads: int = DEFAULT_THREADS,
) -> Starlette:
    """The Starlette app: at startup its threads start and ``open_office()`` gives the
    :class:`BackOffice` (in a worker process: opening the storage, applying migrations);
    at shutdown ``close_office`` (if given) closes it."""
    endpoint = BackOfficeEndpoint(limits)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        calls = BlockingCalls(threads)
        calls.start()
        try:
            office = await calls.run(open_office)
            endpoint.bind(office, calls)
            try:
                yield
            finally:
                if close_office is not None:
                    await calls.run(close_office, office)
        finally:
            calls.stop()

    # One mount for every path: routing is BackOffice.admit's, in one place.
    return _BackOfficeApp(endpoint, routes=[Mount("", app=endpoint)], lifespan=lifespan)


class _BackOfficeApp(Starlette):
    """The Starlette app, with its HTTP requests handed to the endpoint directly (module
    doc: the middleware and the router would only add their cost); the lifespan, and
    anything else, is Starlette's."""

    def __init__(self, endpoint: BackOfficeEndpoint, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope["app"] = self
            await self._endpoint(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
