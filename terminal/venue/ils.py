"""The library system (ILS) link: one persistent SIP2 connection, one request per tap.

:class:`IlsClient` is the thin I/O wrapper around :mod:`terminal.venue.sip2`. On the wire:
a TCP connection, ``93`` Login with the configured account (answered ``94`` ok 1, else
:class:`IlsLoginError`), optionally ``99`` SC Status (answered ``98``), and then for each tap
ONE ``23`` Patron Status (or ``63`` Patron Information, by configuration) answered ``24``
(``64``). The connection and its login are kept across taps; the ``AY`` sequence digit
cycles 0-9 over every message sent.

Nothing hangs: each tap has one deadline (``timeout_seconds``, 1.5 s by default) covering
the wait for the lock, a connect and login if needed, the request and its answer. Any
failure - refused, timed out, closed mid-answer, an answer that does not parse - drops the
connection; the next request connects and logs in again, but not before a back-off
(0.5 s doubling to 10 s) during which requests fail at once with
:class:`IlsUnavailableError`, so a dead ILS costs the gate nothing per tap. The gate then
applies ``fallback`` (:func:`fallback_decision`).

The settings are the ``[venue.ils]`` table of the terminal's configuration
(:meth:`IlsSettings.from_dict`, docs/venues.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import enum
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from terminal.errors import ConfigError, OneCardError
from terminal.venue.sip2 import (
    CHARSETS,
    AcsStatus,
    LibraryDecision,
    Login,
    LoginResponse,
    PatronIdKind,
    PatronInformationRequest,
    PatronPolicy,
    PatronStanding,
    PatronStatusRequest,
    R,
    ScStatus,
    Sip2Error,
    Sip2Framer,
    Sip2Request,
    Sip2ResendRequested,
    encode,
    parse_response,
    parse_standing,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# --- errors -------------------------------------------------------------------------------


class IlsError(OneCardError):
    """The library system did not give a patron's standing: the gate applies its fallback."""

    code = "ils_error"


class IlsUnavailableError(IlsError):
    """No usable connection to the ILS: refused, timed out, closed, or still in the back-off
    after a failure (``retry_in`` seconds left, else None)."""

    code = "ils_unavailable"

    def __init__(self, reason: str, retry_in: float | None = None) -> None:
        super().__init__(reason)
        self.retry_in = retry_in


class IlsTimeoutError(IlsUnavailableError):
    """The ILS did not answer (or accept the connection) within the tap's deadline."""

    code = "ils_timeout"


class IlsConnectionLostError(IlsUnavailableError):
    """The ILS closed the connection before the whole answer arrived."""

    code = "ils_connection_lost"


class IlsLoginError(IlsError):
    """The ILS answered the Login with ``94`` ok 0: wrong user, password or location."""

    code = "ils_login_refused"


class IlsAnswerError(IlsError):
    """The ILS answered with something that is not the SIP2 answer asked for (a bad
    checksum, a wrong sequence number, garbage). ``sip2_code`` is the codec's error code."""

    code = "ils_bad_answer"

    def __init__(self, reason: str, sip2_code: str = "") -> None:
        super().__init__(reason)
        self.sip2_code = sip2_code


# --- settings -----------------------------------------------------------------------------


class IlsRequest(enum.StrEnum):
    patron_status = "patron_status"  # 23 / 24
    patron_information = "patron_information"  # 63 / 64


class Fallback(enum.StrEnum):
    admit = "admit"
    refuse = "refuse"


_CONNECTION_KEYS = {
    "host",
    "port",
    "user",
    "password",
    "location",
    "institution",
    "charset",
    "timeout_seconds",
    "patron_id",
    "request",
    "fallback",
    "fallback_message",
    "terminal_password",
    "patron_password",
    "sc_status",
    "error_detection",
    "backoff_initial_seconds",
    "backoff_max_seconds",
}
_POLICY_KEYS = {"flags", "not_a_patron", "not_a_patron_message", "welcome_message"}


@dataclass(frozen=True)
class IlsSettings:
    """The ``[venue.ils]`` table: where the ILS is, how to log in, what to send."""

    host: str
    port: int
    user: str
    password: str
    location: str = ""
    institution: str = ""
    charset: str = "utf-8"
    timeout_seconds: float = 1.5
    patron_id: PatronIdKind = PatronIdKind.card_number
    request: IlsRequest = IlsRequest.patron_status
    fallback: Fallback = Fallback.admit
    fallback_message: str = ""
    terminal_password: str = ""
    patron_password: str = ""
    sc_status: bool = True
    error_detection: bool = True
    backoff_initial_seconds: float = 0.5
    backoff_max_seconds: float = 10.0
    policy: PatronPolicy = field(default_factory=PatronPolicy)

    def __post_init__(self) -> None:
        if not self.host:
            raise ConfigError("venue.ils.host is empty")
        if not 0 < self.port < 65536:
            raise ConfigError(f"venue.ils.port {self.port} is not a TCP port")
        if self.charset not in CHARSETS:
            raise ConfigError(f"venue.ils.charset {self.charset!r} is not one of {CHARSETS}")
        if not 0 < self.timeout_seconds <= 30:
            raise ConfigError("venue.ils.timeout_seconds must be in (0, 30]")
        if not 0 < self.backoff_initial_seconds <= self.backoff_max_seconds:
            raise ConfigError("venue.ils back-off: 0 < initial <= max")

    @classmethod
    def from_dict(cls, config: Mapping[str, object]) -> IlsSettings:
        """The settings of a ``[venue.ils]`` TOML table (with its ``[venue.ils.flags]``).
        Unknown keys and ill-typed values are a :class:`ConfigError`."""
        unknown = set(config) - _CONNECTION_KEYS - _POLICY_KEYS
        if unknown:
            raise ConfigError(f"unknown venue.ils keys: {', '.join(sorted(unknown))}")
        for key in ("host", "user", "password"):
            if key not in config:
                raise ConfigError(f"venue.ils.{key} is missing")
        types_ = {f.name: f.type for f in dataclasses.fields(cls)}
        values: dict[str, object] = {}
        for key in _CONNECTION_KEYS & set(config):
            values[key] = _typed(key, config[key], str(types_[key]))
        values["policy"] = PatronPolicy.from_dict(
            {k: v for k, v in config.items() if k in _POLICY_KEYS}
        )
        return cls(**values)  # type: ignore[arg-type]


def _typed(key: str, value: object, annotation: str) -> object:
    """``value`` as the field's type; the enums by their text."""
    name = f"venue.ils.{key}"
    enums: dict[str, type[enum.StrEnum]] = {
        "PatronIdKind": PatronIdKind,
        "IlsRequest": IlsRequest,
        "Fallback": Fallback,
    }
    if annotation in enums:
        try:
            return enums[annotation](value)
        except ValueError:
            allowed = ", ".join(m.value for m in enums[annotation])
            raise ConfigError(f"{name} {value!r} is not one of {allowed}") from None
    if annotation == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false")
        return value
    if annotation == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer")
        return value
    if annotation == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name} must be a number")
        return float(value)
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be text")
    return value


def fallback_decision(settings: IlsSettings) -> LibraryDecision:
    """What the gate does when the ILS could not be asked: ``fallback``, reason
    ``ils_unavailable``."""
    return LibraryDecision(
        settings.fallback is Fallback.admit, "ils_unavailable", settings.fallback_message
    )


# --- the client ---------------------------------------------------------------------------


@dataclass(frozen=True)
class IlsStatus:
    """A snapshot for a status page."""

    up: bool
    requests: int
    reconnects: int
    logins: int
    failures: int
    last_error: str | None
    retry_in: float | None


Connect = Callable[[tuple[str, int], float], socket.socket]


def _tcp_connect(address: tuple[str, int], timeout: float) -> socket.socket:
    sock = socket.create_connection(address, timeout=timeout)
    # One small request, one small answer: never wait for Nagle.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class IlsClient:
    """The SIP2 link to one ILS, shared by the gate's threads (one request at a time).

    ``connect`` opens a socket within a time-out (a test or a TLS deployment can pass its
    own); ``clock`` is monotonic seconds; ``now`` is the local wall clock for SIP2 dates."""

    def __init__(
        self,
        settings: IlsSettings,
        *,
        connect: Connect = _tcp_connect,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], dt.datetime] = dt.datetime.now,
    ) -> None:
        self.settings = settings
        self._connect = connect
        self._clock = clock
        self._now = now
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._framer = Sip2Framer()
        self._sequence = 0
        self._backoff = 0.0
        self._retry_at = 0.0
        self._connected_once = False
        self._closed = False
        self.requests = 0
        self.reconnects = 0
        self.logins = 0
        self.failures = 0
        self.last_error: IlsError | None = None
        self.acs_status: AcsStatus | None = None

    # -- public --------------------------------------------------------------------------

    @property
    def up(self) -> bool:
        """Whether a logged-in connection is open."""
        return self._sock is not None

    def status(self) -> IlsStatus:
        retry_in = self._retry_at - self._clock()
        error = self.last_error
        return IlsStatus(
            up=self.up,
            requests=self.requests,
            reconnects=self.reconnects,
            logins=self.logins,
            failures=self.failures,
            last_error=None if error is None else f"{error.code}: {error.reason}",
            retry_in=retry_in if not self.up and retry_in > 0 else None,
        )

    def connect(self) -> None:
        """Connect and log in now (at start-up), so the first tap does not pay for it."""
        with self._turn() as deadline:
            self._ensure_connected(deadline)

    def patron_standing(self, patron_id: str) -> PatronStanding:
        """One ``23`` (or ``63``) for ``patron_id`` on the open connection - connecting and
        logging in first only when there is none - and its answer's standing. Raises
        :class:`IlsError` subclasses, within ``timeout_seconds``; a ``patron_id`` holding
        ``|`` or CR cannot be sent (:class:`~terminal.venue.sip2.Sip2FormatError`, nothing
        sent - :func:`~terminal.venue.sip2.patron_identifier` refuses it first)."""
        with self._turn() as deadline:
            kept = self._sock is not None
            self._ensure_connected(deadline)
            request = self._patron_request(patron_id)
            self.requests += 1
            try:
                return self._exchange(request, deadline, self._parse_standing)
            except IlsConnectionLostError as error:
                if not kept or self._framer.pending:
                    self._fail(error)
                    raise
                # The ILS closed the kept connection while it was idle (a nightly restart)
                # and nothing of an answer came: a lookup changes nothing at the ILS, so it
                # is asked once more on a new connection, within the same deadline.
                log.info("ILS closed the idle connection; connecting again")
                self._drop()
            except IlsError as error:
                self._fail(error)
                raise
            self._ensure_connected(deadline)
            try:
                return self._exchange(request, deadline, self._parse_standing)
            except IlsError as error:
                self._fail(error)
                raise

    def close(self) -> None:
        """Drop the connection; later requests fail with :class:`IlsUnavailableError`."""
        with self._lock:
            self._closed = True
            self._drop()

    # -- plumbing ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _turn(self) -> Iterator[float]:
        """This tap's turn on the link, and its deadline: the wait for another thread's
        request counts in it."""
        deadline = self._clock() + self.settings.timeout_seconds
        if not self._lock.acquire(timeout=max(0.0, deadline - self._clock())):
            raise IlsTimeoutError("ILS busy: another request held the link past the deadline")
        try:
            yield deadline
        finally:
            self._lock.release()

    def _patron_request(self, patron_id: str) -> Sip2Request:
        s = self.settings
        cls = (
            PatronStatusRequest
            if s.request is IlsRequest.patron_status
            else PatronInformationRequest
        )
        return cls(
            institution_id=s.institution,
            patron_id=patron_id,
            transaction_date=self._now(),
            terminal_password=s.terminal_password,
            patron_password=s.patron_password,
        )

    def _ensure_connected(self, deadline: float) -> None:
        if self._closed:
            raise IlsUnavailableError("the ILS client is closed")
        if self._sock is not None:
            return
        wait = self._retry_at - self._clock()
        if wait > 0:
            raise IlsUnavailableError(f"ILS down, retrying in {wait:.1f} s", retry_in=wait)
        s = self.settings
        try:
            try:
                self._sock = self._connect((s.host, s.port), self._left(deadline))
            except TimeoutError as exc:
                raise IlsTimeoutError(f"ILS {s.host}:{s.port} did not accept in time") from exc
            except OSError as exc:
                raise IlsUnavailableError(f"ILS {s.host}:{s.port} unreachable: {exc}") from exc
            self._framer = Sip2Framer()
            login = Login(s.user, s.password, s.location)
            if not self._exchange(login, deadline, self._parser(LoginResponse)).ok:
                raise IlsLoginError(f"ILS {s.host}:{s.port} refused the login of {s.user!r}")
            self.logins += 1
            if s.sc_status:
                self.acs_status = self._exchange(ScStatus(), deadline, self._parser(AcsStatus))
                if not self.acs_status.online:
                    log.warning("ILS %s:%s says it is off-line", s.host, s.port)
        except IlsError as error:
            self._fail(error)
            raise
        if self._connected_once:
            self.reconnects += 1
        self._connected_once = True
        self._backoff = 0.0
        log.info("ILS %s:%s connected and logged in", s.host, s.port)

    def _parser(self, expected: type[R]) -> Callable[[bytes, int | None], R]:
        s = self.settings

        def parse(raw: bytes, sequence: int | None) -> R:
            return parse_response(
                raw,
                expected,
                charset=s.charset,
                sequence=sequence,
                error_detection=s.error_detection,
            )

        return parse

    def _parse_standing(self, raw: bytes, sequence: int | None) -> PatronStanding:
        s = self.settings
        return parse_standing(
            raw, charset=s.charset, sequence=sequence, error_detection=s.error_detection
        )

    def _exchange(
        self,
        request: Sip2Request,
        deadline: float,
        parse: Callable[[bytes, int | None], T],
    ) -> T:
        """Send ``request``, read the one answer, parse it; a ``96`` gets one resend."""
        s = self.settings
        sequence = self._next_sequence() if s.error_detection else None
        raw = encode(request, sequence=sequence, charset=s.charset)
        for attempt in range(2):
            self._send(raw, deadline)
            answer = self._receive(deadline)
            try:
                return parse(answer, sequence)
            except Sip2ResendRequested as error:
                if attempt:
                    raise IlsAnswerError(f"ILS: {error.reason}", error.code) from error
            except Sip2Error as error:
                raise IlsAnswerError(f"ILS answer: {error.reason}", error.code) from error
        raise AssertionError("unreachable")  # pragma: no cover

    def _next_sequence(self) -> int:
        sequence = self._sequence
        self._sequence = (sequence + 1) % 10
        return sequence

    def _send(self, raw: bytes, deadline: float) -> None:
        sock = self._require()
        try:
            sock.settimeout(self._left(deadline))
            sock.sendall(raw)
        except TimeoutError as exc:
            raise IlsTimeoutError("ILS did not take the request in time") from exc
        except OSError as exc:
            raise IlsConnectionLostError(f"ILS connection lost while sending: {exc}") from exc

    def _receive(self, deadline: float) -> bytes:
        sock = self._require()
        while True:
            try:
                sock.settimeout(self._left(deadline))
                data = sock.recv(4096)
            except TimeoutError as exc:
                limit = self.settings.timeout_seconds
                raise IlsTimeoutError(f"ILS did not answer within {limit} s") from exc
            except OSError as exc:
                raise IlsConnectionLostError(f"ILS connection lost: {exc}") from exc
            if not data:
                partial = " mid-answer" if self._framer.pending else ""
                raise IlsConnectionLostError(f"ILS closed the connection{partial}")
            try:
                messages = self._framer.feed(data)
            except Sip2Error as error:
                raise IlsAnswerError(f"ILS answer: {error.reason}", error.code) from error
            if len(messages) > 1:
                # One request, one answer: a second one is an ACS out of step with us.
                raise IlsAnswerError("ILS sent more than one answer to one request")
            if messages:
                return messages[0]

    def _left(self, deadline: float) -> float:
        left = deadline - self._clock()
        if left <= 0:
            raise IlsTimeoutError(f"ILS did not answer within {self.settings.timeout_seconds} s")
        return left

    def _require(self) -> socket.socket:
        if self._sock is None:
            raise IlsUnavailableError("no connection to the ILS")
        return self._sock

    def _fail(self, error: IlsError) -> None:
        self._drop()
        self.failures += 1
        self.last_error = error
        s = self.settings
        self._backoff = (
            s.backoff_initial_seconds
            if self._backoff == 0
            else min(self._backoff * 2, s.backoff_max_seconds)
        )
        self._retry_at = self._clock() + self._backoff
        log.warning(
            "ILS %s:%s failed (%s: %s); next attempt in %.1f s",
            s.host,
            s.port,
            error.code,
            error.reason,
            self._backoff,
        )

    def _drop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            # Closing a broken socket: nothing is left to save.
            with contextlib.suppress(OSError):
                sock.close()
