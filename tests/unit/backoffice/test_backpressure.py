"""Back-pressure: per-terminal request rates and the process's ingest rate answer 429 with
Retry-After (the real back office on its stack, over SQLite), and the terminal's uploader,
event sender and downloader honour it on top of their jittered back-off; a Retry-After is
bounded and a garbage one ignored. Time is one FixedClock on both sides: nothing waits."""

from __future__ import annotations

import datetime as dt
import email.utils
import http.server
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.hostile import DEADLINE, EXAMPLES
from hypothesis import given, settings
from hypothesis import strategies as st

from backoffice import publish
from backoffice.limits import RateLimits, ServeLimits, TokenBucket, retry_after_seconds
from backoffice.server import BackOffice
from backoffice.storage import SqliteStorage
from terminal.errors import SyncServerError, SyncThrottledError
from terminal.host.clock import FixedClock
from terminal.journal.entry import TransactionRecord
from terminal.journal.store import Journal
from terminal.sync.auth import TerminalCredentials
from terminal.sync.client import MAX_RETRY_AFTER, BackOfficeClient, parse_retry_after
from terminal.sync.downloads import DocumentStore, Downloader, Outcome
from terminal.sync.sender import throttled_delay
from terminal.sync.uploader import Uploader

TERMINAL = "T0001"
SECRET = bytes(range(32))
WAIT = 30.0


def record(n: int) -> TransactionRecord:
    return TransactionRecord(
        kind="card", service="bus-fare", decision="accept", reason="ok", amount=200,
        card_token=n.to_bytes(16, "big"), region="500100", category="3", extra={},
    )  # fmt: skip


class Office:
    def __init__(self, tmp: Path, clock: FixedClock, limits: ServeLimits) -> None:
        self.storage = SqliteStorage(str(tmp / "bo.db"))
        self.storage.enrol(TERMINAL, SECRET, clock.now())
        self.key = publish.generate_publication_key()
        rates = RateLimits(limits, monotonic=clock.monotonic)
        self.office = BackOffice(self.storage, self.key, clock, rate_limits=rates)
        self.server = self.office.serve()

    def credentials(self, url: str | None = None) -> TerminalCredentials:
        return TerminalCredentials(
            TERMINAL, SECRET, url or self.server.url, self.key.public_key, "sm2", bytes(32)
        )

    def close(self) -> None:
        self.server.shutdown()
        self.storage.close()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def make_office(tmp_path: Path, clock: FixedClock) -> Iterator[object]:
    made: list[Office] = []

    def make(**limits: float) -> Office:
        office = Office(tmp_path, clock, ServeLimits(**limits))  # type: ignore[arg-type]
        made.append(office)
        return office

    yield make
    for office in made:
        office.close()


# --- the limits, pure -----------------------------------------------------------------------


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(1, 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(1, 0.0) == pytest.approx(0.5)
    assert bucket.take(1, 0.25) == pytest.approx(0.25)  # refused: nothing taken
    assert bucket.take(1, 0.5) == 0.0
    assert bucket.take(1, 100.0) == 0.0 and bucket.tokens == pytest.approx(2)  # capped
    assert retry_after_seconds(0.01) == 1 and retry_after_seconds(2.2) == 3


def test_rate_limits_per_terminal_and_forgotten_when_quiet() -> None:
    now = [0.0]
    rates = RateLimits(ServeLimits(terminal_rate=1.0, terminal_burst=2), monotonic=lambda: now[0])
    assert rates.terminal_wait("A") == 0 and rates.terminal_wait("A") == 0
    assert rates.terminal_wait("A") == pytest.approx(1.0)
    assert rates.terminal_wait("B") == 0  # another terminal has its own allowance
    now[0] = 10.0
    rates.terminal_wait("C")
    assert rates.tracked() == 1  # A and B were full again: forgotten


def test_serve_limits_refuse_an_ingest_burst_below_one_batch() -> None:
    with pytest.raises(ValueError, match="ingest_burst"):
        ServeLimits(ingest_burst=10)
    with pytest.raises(ValueError, match="terminal_rate"):
        ServeLimits(terminal_rate=0)


# --- through the stack ----------------------------------------------------------------------


def test_a_terminal_over_its_rate_gets_429_with_retry_after(make_office, clock) -> None:
    office = make_office(terminal_rate=0.5, terminal_burst=2)
    client = BackOfficeClient(office.credentials(), clock)
    office.office.publish("trustlist", {"issuers": []})
    assert client.get("/v1/trustlist")[0] == 200
    assert client.get("/v1/trustlist")[0] == 200
    with pytest.raises(SyncThrottledError) as caught:
        client.get("/v1/trustlist")
    assert caught.value.status == 429 and caught.value.retry_after == 2.0
    assert "rate_limited" in caught.value.reason
    clock.advance(2.0)
    assert client.get("/v1/trustlist")[0] == 200
    client.close()


def test_the_uploader_waits_out_the_ingest_limit_then_delivers_once(
    make_office, clock, tmp_path
) -> None:
    office = make_office(ingest_rate=100.0, ingest_burst=5000)
    delays: list[float] = []

    def sleep(delay: float) -> None:
        delays.append(delay)
        clock.advance(delay)  # time passes only as the sender waits

    with Journal.open(tmp_path / "j.db", TERMINAL, clock, min_free_bytes=0) as journal:
        journal.append_batch(record(i) for i in range(6000))
        up = Uploader(
            journal, office.credentials(), clock, batch_size=5000, base_backoff=0.5,
            max_backoff=8.0, rng=random.Random(3), backoff_sleep=sleep,
        )  # fmt: skip
        up.start()
        try:
            assert up.wait_caught_up(WAIT)
        finally:
            up.stop(WAIT)
        assert office.storage.acked_up_to(TERMINAL) == 6000
    # 5,000 took the burst; 1,000 more at 100/s: Retry-After 10, plus the first jitter.
    assert len(delays) == 1
    assert 10.0 <= delays[0] <= 10.5


def test_the_downloader_ends_the_round_and_holds_back(make_office, clock, tmp_path) -> None:
    office = make_office(terminal_rate=0.1, terminal_burst=2)
    office.office.publish("trustlist", {"issuers": []})
    store = DocumentStore(tmp_path, office.key.public_key, "sm2")
    client = BackOfficeClient(office.credentials(), clock)
    downloader = Downloader(store, client, clock, rng=random.Random(1))
    office.storage.hotlist_change("00000000000000aa", True)
    report = downloader.run_once()
    # Two requests allowed: the snapshot and the delta after it (304); then 429.
    assert report.results["hotlist"].outcome is Outcome.APPLIED
    assert report.results["trustlist"].code == "sync_throttled"
    assert report.results["applist"].code == "sync_throttled"  # not even asked
    delay = downloader.next_delay(5.0)
    assert 10.0 <= delay <= 20.0  # Retry-After 10, plus up to as long again
    # Before then, a round asks nothing (the back office would refuse it anyway).
    assert downloader.run_once().results["hotlist"].code == "sync_throttled"
    clock.advance(delay + 20.0)  # the terminal's allowance is whole again
    third = downloader.run_once()
    assert third.results["hotlist"].outcome is Outcome.UNCHANGED  # a 304
    assert third.results["trustlist"].outcome is Outcome.APPLIED
    client.close()


# --- Retry-After on the terminal ----------------------------------------------------------


def test_parse_retry_after_is_bounded_and_ignores_garbage() -> None:
    now = 1_795_000_000.0
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after(" 0 ", now) == 0.0
    assert parse_retry_after("99999999999999999999", now) == MAX_RETRY_AFTER
    assert parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now) == 0.0  # past: now
    assert parse_retry_after(email.utils.formatdate(now + 20, usegmt=True), now) == 20.0
    for garbage in (None, "", "soon", "-5", "1.5", "1e9", "\u0661", "Mon, 99 Foo"):
        assert parse_retry_after(garbage, now) is None


def test_throttled_delay() -> None:
    assert throttled_delay(0.3, SyncThrottledError("x", 429, 10.0)) == 10.3
    assert throttled_delay(0.3, SyncThrottledError("x", 429, None)) == 0.3
    assert throttled_delay(0.3, SyncServerError("x", 500)) == 0.3


class Refusing:
    """Answers every request with ``status`` and the given ``Retry-After``."""

    def __init__(self, status: int, retry_after: str | None) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self._answer()

            def _answer(self) -> None:
                body = b'{"error":"busy","reason":"later"}'
                self.send_response(status)
                if retry_after is not None:
                    self.send_header("Retry-After", retry_after)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(
    ("status", "header", "expected"),
    [(429, "3", 3.0), (429, "soon", None), (429, None, None), (503, "86400", MAX_RETRY_AFTER)],
)
def test_the_client_types_a_throttled_answer(clock, status, header, expected) -> None:
    server = Refusing(status, header)
    try:
        creds = TerminalCredentials(TERMINAL, SECRET, server.url, b"\x04" + bytes(64), "sm2",
                                    bytes(32))  # fmt: skip
        client = BackOfficeClient(creds, clock)
        with pytest.raises(SyncThrottledError) as caught:
            client.post("/v1/ingest", b"{}")
        assert caught.value.retry_after == expected and caught.value.status == status
        client.close()
    finally:
        server.stop()


def test_a_503_without_retry_after_stays_a_server_error(clock) -> None:
    server = Refusing(503, None)
    try:
        creds = TerminalCredentials(TERMINAL, SECRET, server.url, b"\x04" + bytes(64), "sm2",
                                    bytes(32))  # fmt: skip
        client = BackOfficeClient(creds, clock)
        status, _ = client.get("/v1/applist")
        assert status == 503
        client.close()
    finally:
        server.stop()


def test_new_work_does_not_cut_a_retry_after_wait_of_the_event_sender(
    make_office, clock, tmp_path
) -> None:
    from terminal.sync.events import EventOutbox, EventSender

    office = make_office(terminal_rate=0.1, terminal_burst=1)
    client = BackOfficeClient(office.credentials(), clock)
    assert client.get("/health")[0] == 200  # unsigned: not charged
    office.office.publish("trustlist", {"issuers": []})
    client.get("/v1/trustlist")  # the one request allowed: the next is 429, Retry-After 10
    with EventOutbox.open(tmp_path / "events.db", TERMINAL, clock) as outbox:
        outbox.add("call_staff", {})
        sender = EventSender(outbox, office.credentials(), clock, rng=random.Random(2))
        waits: list[tuple[float, bool]] = []
        backed_off = threading.Event()

        class Watched(threading.Event):
            """An event of the sender: at each wait, new work arrives (notify), then the
            wait is checked without blocking - True if that new work ended it."""

            def wait(self, timeout: float | None = None) -> bool:
                sender.notify()
                sender.notify()
                ended = super().wait(0)
                waits.append((timeout or 0.0, ended))
                sender._stop.set()  # one back-off seen: stop the sender
                backed_off.set()
                return ended

        sender._wake, sender._stop = Watched(), Watched()
        sender.start()
        assert backed_off.wait(WAIT)
        sender.stop(WAIT)
        assert waits, "the sender never backed off"
        delay, cut = waits[0]
        assert delay >= 10.0  # Retry-After 10 plus the jittered draw
        assert not cut  # notify() did not end it
        assert outbox.pending(10)  # nothing sent meanwhile
    client.close()


@settings(max_examples=EXAMPLES, deadline=DEADLINE)
@given(
    text=st.one_of(
        st.none(),
        st.text(max_size=60),
        st.integers(min_value=-(10**30), max_value=10**30).map(str),
        st.datetimes(timezones=st.just(dt.UTC)).map(
            lambda when: email.utils.format_datetime(when, usegmt=True)
        ),
    ),
    now=st.floats(min_value=0, max_value=4e9),
)
def test_any_retry_after_is_a_bounded_wait_or_ignored(text: str | None, now: float) -> None:
    """``Retry-After`` is outside text: a wait in [0, MAX_RETRY_AFTER] or None, nothing
    else - a back office (or something posing as one) cannot park a terminal for ever."""
    wait = parse_retry_after(text, now)
    assert wait is None or 0.0 <= wait <= MAX_RETRY_AFTER
