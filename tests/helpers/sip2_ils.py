"""A test library system (ILS): pysip2's SIP2 server (the ACS side) on 127.0.0.1.

The answers come from an independent implementation - the ``pysip2`` package's
:class:`pysip2.SIP2Server`, its codec and its models - so the tests of
:mod:`terminal.venue.sip2` / :mod:`terminal.venue.ils` do not check our codec against
itself. The server runs in a background thread (an anyio blocking portal), serves Login,
SC Status, Patron Status and Patron Information from a dict of patrons, and requires a
login before anything else (``login_required``), as a real ACS does.

Knobs for the fault tests:

* :meth:`TestIls.stop` / :meth:`TestIls.start`: the listener and every open connection go
  away, and come back on the same port.
* :meth:`TestIls.fault` ``"delay"`` (answer after ``delay`` s) and ``"never"`` (never
  answer): in the handler, with anyio sleeps.
* ``"close_mid_answer"``, ``"garbage"`` and ``"bad_checksum"``: pysip2's server has no hook
  for a broken answer, so :class:`_FaultyServer` overrides its one write point,
  ``SIP2Server._send`` (pysip2 0.1), and breaks pysip2's own answer on its way out: half
  of it then the connection closed, text that is not SIP2, or its checksum changed. This
  keeps faults on a real, logged-in pysip2 connection - what the reconnect tests need -
  instead of a separate raw socket server. If a later pysip2 renames ``_send``,
  :class:`TestIls` fails at construction naming it.

``SIP2Server.start()`` leaves its listener open when it stops, so the listener is made with
the public ``SIP2Server.listen()`` and its connections handed to the server's own
per-connection loop (``_handle_connection``, the second private name used here).

Faults apply to patron answers (``24``/``64``) only, so that the login before them works;
each ``fault()`` applies to the next ``times`` answers. Counters (``logins``,
``sc_status``, ``patron_requests``, ``messages``, ``connections``) are read by the tests
and the bench; :meth:`TestIls.wait_patron_requests` waits on a condition, not a sleep.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import SocketAttribute
from anyio.from_thread import BlockingPortal, start_blocking_portal
from pysip2 import (
    LOGIN,
    PATRON_INFORMATION,
    PATRON_STATUS,
    SC_STATUS,
    ACSStatusResponse,
    LoginRequest,
    LoginResponse,
    PatronInformationRequest,
    PatronInformationResponse,
    PatronStatusRequest,
    PatronStatusResponse,
    SCStatusRequest,
    SIP2Server,
)

USER = "gate01"
PASSWORD = "secret"
INSTITUTION = "CNLIB"
FLAG_ORDER = (
    "charge_privileges_denied",
    "renewal_privileges_denied",
    "recall_privileges_denied",
    "hold_privileges_denied",
    "card_reported_lost",
    "too_many_items_charged",
    "too_many_items_overdue",
    "too_many_renewals",
    "too_many_claims_of_items_returned",
    "too_many_items_lost",
    "excessive_outstanding_fines",
    "excessive_outstanding_fees",
    "recall_overdue",
    "too_many_items_billed",
)
FAULTS = ("delay", "never", "close_mid_answer", "garbage", "bad_checksum")


@dataclass
class Patron:
    valid: bool = True
    flags: frozenset[str] = frozenset()
    fines: str | None = None
    name: str = "张三"
    screen: tuple[str, ...] = ()

    def status_field(self) -> str:
        return "".join("Y" if name in self.flags else " " for name in FLAG_ORDER)


@dataclass
class _Fault:
    kind: str
    times: int
    delay: float = 0.0


@dataclass
class Counters:
    connections: int = 0
    logins: int = 0
    failed_logins: int = 0
    sc_status: int = 0
    patron_requests: int = 0
    patron_ids: list[str] = field(default_factory=list)

    @property
    def messages(self) -> int:
        """Every request the ACS answered or was asked: login, SC status, patron."""
        return self.logins + self.failed_logins + self.sc_status + self.patron_requests


class _FaultyServer(SIP2Server):
    """pysip2's server with a fault injected at its one write point (see module doc)."""

    ils: TestIls

    async def _send(self, stream: Any, state: Any, frame: bytes) -> None:
        fault = self.ils._take_write_fault(frame)
        if fault is None:
            await super()._send(stream, state, frame)
        elif fault == "close_mid_answer":
            await stream.send(frame[: len(frame) // 2])
            await stream.aclose()
        elif fault == "garbage":
            await stream.send(b"HTTP/1.1 400 Bad Request\r")
        elif fault == "bad_checksum":
            digits = frame[-5:-1]
            wrong = f"{(int(digits, 16) + 1) & 0xFFFF:04X}".encode()
            await stream.send(frame[:-5] + wrong + b"\r")


class TestIls:
    """The test ILS. ``with TestIls(patrons) as ils:`` serves on ``ils.port``."""

    __test__ = False  # a helper, not a test class

    def __init__(
        self,
        patrons: dict[str, Patron] | None = None,
        *,
        charset: str = "utf-8",
        user: str = USER,
        password: str = PASSWORD,
    ) -> None:
        for name in ("_send", "_handle_connection"):
            if name not in vars(SIP2Server):
                raise RuntimeError(
                    f"pysip2.SIP2Server has no {name}: update tests/helpers/sip2_ils.py"
                )
        self.patrons = dict(patrons or {})
        self.charset = charset
        self.user = user
        self.password = password
        self.counters = Counters()
        self.port = 0
        self._faults: list[_Fault] = []
        self._cond = threading.Condition()
        self._portal_cm: contextlib.AbstractContextManager[BlockingPortal] | None = None
        self._server_cm: contextlib.AbstractContextManager[int] | None = None
        self.server = self._build()

    # -- life ----------------------------------------------------------------------------

    def start(self) -> int:
        """Serve (again, on the same port after :meth:`stop`); returns the port."""
        if self._server_cm is not None:
            return self.port
        if self._portal_cm is None:
            self._portal_cm = start_blocking_portal()
            self._portal = self._portal_cm.__enter__()
        self._server_cm = self._portal.wrap_async_context_manager(self._serving())
        self.port = self._server_cm.__enter__()
        return self.port

    @contextlib.asynccontextmanager
    async def _serving(self) -> AsyncIterator[int]:
        # SIP2Server.start() never closes its listener, so a restart on the same port would
        # find it still bound: the listener is made with its public listen() and closed here,
        # and its connections handed to the server's per-connection loop.
        listener = await self.server.listen("127.0.0.1", self.port)
        async with listener, anyio.create_task_group() as tasks:
            tasks.start_soon(listener.serve, self.server._handle_connection)
            try:
                yield listener.extra(SocketAttribute.local_port)
            finally:
                tasks.cancel_scope.cancel()

    def stop(self) -> None:
        """Stop listening and close every open connection (handlers are cancelled)."""
        if self._server_cm is not None:
            cm, self._server_cm = self._server_cm, None
            cm.__exit__(None, None, None)

    def close(self) -> None:
        self.stop()
        if self._portal_cm is not None:
            cm, self._portal_cm = self._portal_cm, None
            cm.__exit__(None, None, None)

    def __enter__(self) -> TestIls:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- knobs ---------------------------------------------------------------------------

    def fault(self, kind: str, *, times: int = 1, delay: float = 0.0) -> None:
        """Break the next ``times`` patron answers: ``delay`` (answer ``delay`` s late),
        ``never``, ``close_mid_answer``, ``garbage``, ``bad_checksum``."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}")
        with self._cond:
            self._faults.append(_Fault(kind, times, delay))

    def clear_faults(self) -> None:
        with self._cond:
            self._faults.clear()

    def wait_patron_requests(self, count: int, seconds: float = 10.0) -> bool:
        """Whether the ACS has received ``count`` patron requests within ``seconds``."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self.counters.patron_requests >= count, timeout=seconds
            )

    # -- the ACS -------------------------------------------------------------------------

    def _take(self, kinds: tuple[str, ...]) -> _Fault | None:
        with self._cond:
            for fault in self._faults:
                if fault.kind in kinds:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _take_write_fault(self, frame: bytes) -> str | None:
        if frame[:2] not in (b"24", b"64"):
            return None
        fault = self._take(("close_mid_answer", "garbage", "bad_checksum"))
        return None if fault is None else fault.kind

    def _count(self, name: str, patron_id: str | None = None) -> None:
        with self._cond:
            setattr(self.counters, name, getattr(self.counters, name) + 1)
            if patron_id is not None:
                self.counters.patron_ids.append(patron_id)
            self._cond.notify_all()

    async def _stall(self) -> None:
        fault = self._take(("delay", "never"))
        if fault is None:
            return
        if fault.kind == "never":
            await anyio.sleep_forever()
        await anyio.sleep(fault.delay)

    def _build(self) -> _FaultyServer:
        server = _FaultyServer(
            encoding=self.charset,
            institution_id=INSTITUTION,
            library_name="测试图书馆",
            login_required=True,
        )
        server.ils = self

        @server.route(LOGIN)
        async def login(req: LoginRequest, ctx: Any) -> LoginResponse:
            ok = req.login_user_id == self.user and req.login_password == self.password
            self._count("logins" if ok else "failed_logins")
            if ok:
                self._count("connections")
            return LoginResponse(ok="1" if ok else "0")

        @server.route(SC_STATUS)
        async def sc_status(req: SCStatusRequest, ctx: Any) -> ACSStatusResponse:
            self._count("sc_status")
            return ctx.server.build_acs_status(req)

        @server.route(PATRON_STATUS)
        async def patron_status(req: PatronStatusRequest, ctx: Any) -> PatronStatusResponse:
            self._count("patron_requests", req.patron_identifier)
            await self._stall()
            patron = self.patrons.get(req.patron_identifier)
            return PatronStatusResponse(
                **self._common(req, patron, ctx.now_18()),
            )

        @server.route(PATRON_INFORMATION)
        async def patron_info(req: PatronInformationRequest, ctx: Any) -> PatronInformationResponse:
            self._count("patron_requests", req.patron_identifier)
            await self._stall()
            patron = self.patrons.get(req.patron_identifier)
            overdue = "0003" if patron and "too_many_items_overdue" in patron.flags else "0000"
            return PatronInformationResponse(
                **self._common(req, patron, ctx.now_18()),
                hold_items_count="0000",
                overdue_items_count=overdue,
                charged_items_count="0002",
                fine_items_count="0000",
                recall_items_count="0000",
                unavailable_holds_count="0000",
            )

        return server

    def _common(self, req: Any, patron: Patron | None, now: str) -> dict[str, Any]:
        if patron is None:
            return {
                "patron_status": "Y" * 14,
                "language": req.language,
                "transaction_date": now,
                "institution_id": req.institution_id,
                "patron_identifier": req.patron_identifier,
                "personal_name": "",
                "valid_patron": "N",
                "screen_message": ("Invalid patron",),
            }
        return {
            "patron_status": patron.status_field(),
            "language": req.language,
            "transaction_date": now,
            "institution_id": req.institution_id,
            "patron_identifier": req.patron_identifier,
            "personal_name": patron.name,
            "valid_patron": "Y" if patron.valid else "N",
            "valid_patron_password": "N",
            "currency_type": "CNY",
            "fee_amount": patron.fines,
            "screen_message": patron.screen,
        }


def free_port() -> int:
    """A port nothing listens on now (for a connection that must be refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serving(patrons: dict[str, Patron], **kwargs: Any) -> Iterator[TestIls]:
    """``TestIls(patrons, **kwargs)`` started, closed at the end."""
    ils = TestIls(patrons, **kwargs)
    ils.start()
    try:
        yield ils
    finally:
        ils.close()
