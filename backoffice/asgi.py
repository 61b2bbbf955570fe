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
back office does not grow with its clients.
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
from starlette.responses import Response as StarletteResponse
from starlette.routing import Mount
from starlette.types import Receive, Scope, Send

from backoffice.answers import RequestHandler, Response, busy_response, failure_response
from backoffice.limits import ByteBudget, ServeLimits, body_length

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_THREADS = 8
"""Threads for the handler's blocking work: as many as the storage's connection pool."""
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

    def bind(self, office: RequestHandler, calls: BlockingCalls) -> None:
        self.office, self.calls = office, calls
        self.budget = ByteBudget(max(self.limits.body_memory, office.max_body))
        self._worker = str(os.getpid())

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
            if length == 0:
                # Nothing to read: both steps in one trip to a thread.
                return await calls.run(office.handle, method, target, headers, b"")
            admission = await calls.run(office.admit, method, target, headers, length)
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
        headers = {**response.headers, WORKER_HEADER: self._worker}
        if response.close:
            headers["Connection"] = "close"
        answer = StarletteResponse(
            response.payload(),
            status_code=response.status,
            headers=headers,
            media_type="application/json; charset=utf-8",
        )
        await answer(scope, receive, send)


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
    return Starlette(routes=[Mount("", app=endpoint)], lifespan=lifespan)
