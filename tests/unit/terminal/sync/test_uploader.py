"""The uploader against a small in-test back office (docs/sync.md ingest, signature checked):
failures of every kind, back-off, and in the end every entry stored exactly once."""

from __future__ import annotations

import collections
import datetime
import ipaddress
import json
import random
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from terminal.errors import (
    ConfigError,
    JournalError,
    SyncAnswerError,
    SyncConnectionLostError,
    SyncError,
    SyncRejectedError,
    SyncServerError,
    SyncTimeoutError,
    SyncUnreachableError,
)
from terminal.host.clock import FixedClock
from terminal.journal.entry import TransactionRecord, entry_from_json
from terminal.journal.store import Journal
from terminal.sync.auth import TerminalCredentials, load_credentials, parse_credentials
from terminal.sync.client import parse_acked_answer
from terminal.sync.sender import backoff_ceiling, backoff_delays
from terminal.sync.uploader import Uploader
from terminal.wire.journal import ZERO_HASH, ingest_body
from terminal.wire.requests import (
    HEADER_SIGNATURE,
    HEADER_TERMINAL,
    HEADER_TIME,
    check_signature,
    sign_request,
    string_to_sign,
)

TERMINAL = "T0001"
SECRET = bytes(range(32))
PUBLICATION_KEY = "04" + "11" * 64
WAIT = 10.0  # upper bound for waiting on an event; never reached when things work


# --- a minimal back office ----------------------------------------------------------------


class IngestBackOffice:
    """``POST /v1/ingest`` of docs/sync.md: signature and time checked, hash chain checked,
    idempotent by ``(seq, hash)``, ``409`` on a different hash. ``faults`` holds what the next
    requests suffer, one per request: ``500``, ``garbage``, ``not_http``, ``drop`` (close
    without an answer), ``cut`` (store, then cut the answer midway), ``slow`` (store, then
    answer only after the client gave up), ``lie`` (ack more than stored)."""

    def __init__(
        self, clock: FixedClock, secret: bytes = SECRET, tls: ssl.SSLContext | None = None
    ):
        self.clock = clock
        self.secret = secret
        self.tls = tls
        self.stored: dict[int, str] = {}
        self.store_counts: collections.Counter[int] = collections.Counter()
        self.faults: collections.deque[str] = collections.deque()
        self.requests = 0
        self.batch_sizes: list[int] = []
        self.connections: set[tuple[str, int]] = set()
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.port = 0
        self.httpd: ThreadingHTTPServer | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> None:
        backoffice = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                backoffice.handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        if self.tls is not None:
            self.httpd.socket = self.tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        assert self.httpd is not None
        self.httpd.shutdown()
        self.httpd.server_close()
        self.httpd = None

    def acked_up_to(self) -> int:
        n = 0
        while n + 1 in self.stored:
            n += 1
        return n

    def answer(self, h: BaseHTTPRequestHandler, status: int, obj: object) -> None:
        data = json.dumps(obj).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def store(self, entries: list[dict[str, object]]) -> tuple[int, dict[str, str]] | None:
        with self.lock:  # one transaction for the whole batch
            staged: dict[int, str] = {}
            for obj in entries:
                entry = entry_from_json(obj)
                if entry.terminal_id != TERMINAL or entry.computed_hash() != entry.hash:
                    return 400, {"error": "bad_entry", "reason": f"seq {entry.seq}"}
                have = self.stored.get(entry.seq) or staged.get(entry.seq)
                if have is not None:
                    if have != entry.hash:
                        return 409, {"error": "conflict", "reason": f"seq {entry.seq}"}
                    continue
                prev = (
                    ZERO_HASH
                    if entry.seq == 1
                    else self.stored.get(entry.seq - 1) or staged.get(entry.seq - 1)
                )
                if prev is None:
                    break  # a gap: store nothing from here, answer what is held
                if prev != entry.prev_hash:
                    return 409, {"error": "broken_chain", "reason": f"seq {entry.seq}"}
                staged[entry.seq] = entry.hash
            self.stored.update(staged)
            self.store_counts.update(staged.keys())
        return None

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        with self.lock:
            self.requests += 1
            self.connections.add(h.client_address)
            fault = self.faults.popleft() if self.faults else None
        body = h.rfile.read(int(h.headers["Content-Length"]))
        why = check_signature(
            self.secret,
            "POST",
            h.path,
            h.headers.get(HEADER_TIME, ""),
            body,
            h.headers.get(HEADER_SIGNATURE, ""),
            self.clock.now(),
        )
        if h.headers.get(HEADER_TERMINAL) != TERMINAL or why is not None:
            return self.answer(h, 401, {"error": "unauthorized", "reason": why or "terminal"})
        if h.path != "/v1/ingest":
            return self.answer(h, 404, {"error": "not_found", "reason": h.path})
        if fault == "500":
            return self.answer(h, 500, {"error": "internal", "reason": "database down"})
        if fault == "garbage":
            h.send_response(200)
            h.send_header("Content-Length", "17")
            h.end_headers()
            h.wfile.write(b"<html>oops</html>")
            return None
        if fault == "not_http":
            h.wfile.write(b"SMTP READY\r\n\r\n")
            h.close_connection = True
            return None
        if fault == "drop":
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
            return None
        request = json.loads(body)
        self.batch_sizes.append(len(request["entries"]))
        problem = self.store(request["entries"])
        if problem is not None:
            return self.answer(h, *problem)
        acked = self.acked_up_to()
        if fault == "cut":
            h.send_response(200)
            h.send_header("Content-Length", "40")
            h.end_headers()
            h.wfile.write(b'{"acked_up')
            h.wfile.flush()
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
            return None
        if fault == "slow":
            self.release.wait(WAIT)  # answer only once the test saw the client give up
        if fault == "lie":
            acked += 1000
        return self.answer(h, 200, {"acked_up_to": acked})


# --- fixtures -----------------------------------------------------------------------------


def record(n: int) -> TransactionRecord:
    return TransactionRecord(
        kind="card",
        service="bus-fare",
        decision="accept",
        reason="ok",
        amount=200,
        card_token=n.to_bytes(16, "big"),
        region="500100",
        category="3",
        extra={"tac": f"{n:08x}"},
    )


def credentials(
    url: str, ca_file: Path | None = None, secret: bytes = SECRET
) -> TerminalCredentials:
    return TerminalCredentials(
        terminal_id=TERMINAL,
        secret=secret,
        backoffice_url=url,
        publication_key=bytes.fromhex(PUBLICATION_KEY),
        publication_algorithm="sm2",
        token_key=bytes(32),
        ca_file=ca_file,
    )


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def journal(tmp_path: Path, clock: FixedClock) -> Iterator[Journal]:
    with Journal.open(tmp_path / "journal.db", TERMINAL, clock, min_free_bytes=0) as j:
        yield j


@pytest.fixture
def backoffice(clock: FixedClock) -> Iterator[IngestBackOffice]:
    server = IngestBackOffice(clock)
    yield server
    server.release.set()
    if server.httpd is not None:
        server.stop()


def uploader(
    journal: Journal, server: IngestBackOffice, clock: FixedClock, **options: object
) -> Uploader:
    options.setdefault("timeout", 2.0)
    options.setdefault("rng", random.Random(7))
    return Uploader(journal, credentials(server.url), clock, **options)  # type: ignore[arg-type]


def assert_exactly_once(journal: Journal, server: IngestBackOffice) -> None:
    last = journal.stats().last_seq
    assert journal.stats().acked_up_to == last
    assert sorted(server.stored) == list(range(1, last + 1))
    assert all(server.store_counts[seq] == 1 for seq in range(1, last + 1))
    hashes = {e.seq: e.hash for e in journal.entries()}
    assert all(server.stored[seq] == hashes[seq] for seq in hashes)


# --- signing and credentials --------------------------------------------------------------


def test_signature_is_hmac_of_the_contract_string() -> None:
    text = string_to_sign("post", "/v1/ingest?x=1", "1795000000", b"{}")
    assert text == (
        b"POST\n/v1/ingest?x=1\n1795000000\n"
        b"44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    )
    import hashlib
    import hmac

    assert sign_request(SECRET, "POST", "/v1/ingest?x=1", "1795000000", b"{}") == (
        hmac.new(SECRET, text, hashlib.sha256).hexdigest()
    )


def test_check_signature_refuses_stale_and_forged() -> None:
    sig = sign_request(SECRET, "POST", "/v1/ingest", "1000", b"x")
    assert check_signature(SECRET, "POST", "/v1/ingest", "1000", b"x", sig, now=1200) is None
    assert check_signature(SECRET, "POST", "/v1/ingest", "1000", b"x", sig, now=1301) == "stale"
    assert check_signature(SECRET, "POST", "/v1/ingest", "1000", b"y", sig, 1000) == "bad_signature"
    assert check_signature(SECRET, "POST", "/v1/ingest", "soon", b"x", sig, 1000) == "bad_time"


CREDENTIALS_TOML = f"""
terminal_id = "T0001"
secret = "{SECRET.hex()}"
backoffice_url = "https://127.0.0.1:8443/"
publication_key = "{PUBLICATION_KEY}"
publication_algorithm = "sm2"
token_key = "{"ab" * 32}"
ca_file = "ca.pem"
"""


def test_load_credentials_and_repr_hides_secrets(tmp_path: Path) -> None:
    path = tmp_path / "credentials.toml"
    path.write_text(CREDENTIALS_TOML)
    path.chmod(0o600)
    creds = load_credentials(path)
    assert creds.terminal_id == TERMINAL and creds.secret == SECRET
    assert creds.backoffice_url == "https://127.0.0.1:8443"
    assert creds.token_key == bytes([0xAB]) * 32
    assert creds.ca_file == tmp_path / "ca.pem"
    for text in (repr(creds), str(creds)):
        assert SECRET.hex() not in text and "ab" * 32 not in text and "hidden" in text


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (("secret", '"abcd"'), "secret must be 64 hex"),
        (("secret", '"zz' + "00" * 31 + '"'), "secret must be a string of hex"),
        (("terminal_id", '"bad id"'), "terminal_id"),
        (("backoffice_url", '"ftp://x"'), "backoffice_url"),
        (("publication_key", '"0011"'), "publication_key"),
        (("publication_algorithm", '"rsa"'), "publication_algorithm"),
        (("token_key", '"00"'), "token_key"),
    ],
)
def test_bad_credentials_are_reported_without_the_value(
    change: tuple[str, str], match: str
) -> None:
    key, value = change
    lines = [
        f"{key} = {value}" if line.startswith(f"{key} =") else line
        for line in CREDENTIALS_TOML.splitlines()
    ]
    with pytest.raises(ConfigError, match=match) as caught:
        parse_credentials("\n".join(lines))
    assert SECRET.hex() not in caught.value.reason


def test_unreadable_credentials_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_credentials(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="TOML"):
        parse_credentials("secret = ")


# --- back-off (pure) ----------------------------------------------------------------------


def test_backoff_grows_exponentially_to_the_cap_with_full_jitter() -> None:
    ceilings = [backoff_ceiling(n, 0.5, 60.0) for n in range(12)]
    assert ceilings[:8] == [0.5, 1, 2, 4, 8, 16, 32, 60]
    assert ceilings[8:] == [60.0] * 4
    assert backoff_ceiling(10_000, 0.5, 60.0) == 60.0  # no overflow, ever

    delays = backoff_delays(0.5, 60.0, random.Random(1))
    drawn = [next(delays) for _ in range(200)]
    ceilings = [backoff_ceiling(n, 0.5, 60.0) for n in range(200)]
    assert all(0 <= d <= c for d, c in zip(drawn, ceilings, strict=True))
    tail = drawn[20:]
    assert len(set(tail)) == len(tail)  # jittered: no two alike
    assert min(tail) < 20 < max(tail)  # spread over the whole [0, cap] range
    assert sum(tail) / len(tail) == pytest.approx(30, abs=6)  # full jitter: mean cap/2
    assert sum(drawn[:3]) < sum(drawn[8:11])  # grows


def test_backoff_is_reproducible_with_a_seeded_rng() -> None:
    a = backoff_delays(1.0, 10.0, random.Random(42))
    b = backoff_delays(1.0, 10.0, random.Random(42))
    assert [next(a) for _ in range(20)] == [next(b) for _ in range(20)]
    with pytest.raises(ValueError):
        next(backoff_delays(0, 10.0))


def test_parse_acked_answer() -> None:
    assert parse_acked_answer(200, b'{"acked_up_to": 12}') == 12
    for status, body, error in [
        (200, b"nope", SyncAnswerError),
        (200, b'{"acked_up_to": "12"}', SyncAnswerError),
        (200, b'{"acked_up_to": -1}', SyncAnswerError),
        (200, b"[12]", SyncAnswerError),
        (302, b"", SyncAnswerError),
        (503, b"busy", SyncServerError),
        (409, b'{"error": "conflict", "reason": "seq 4"}', SyncRejectedError),
    ]:
        with pytest.raises(error):
            parse_acked_answer(status, body)
    with pytest.raises(SyncRejectedError) as caught:
        parse_acked_answer(403, b'{"error": "revoked", "reason": "terminal revoked"}')
    assert caught.value.status == 403 and caught.value.server_code == "revoked"
    for body in (
        b'{"acked_up_to": 1e400}',
        b'{"acked_up_to": NaN}',
        b'{"acked_up_to": 1, "acked_up_to": 2}',
    ):
        with pytest.raises(SyncAnswerError):
            parse_acked_answer(200, body)


@settings(max_examples=300)
@given(
    st.integers(100, 599),
    st.binary(max_size=60) | st.from_regex(rb'\{"acked_up_to": ?-?[0-9]{1,30}\}'),
)
def test_parse_acked_answer_is_total(status: int, body: bytes) -> None:
    try:
        acked = parse_acked_answer(status, body)
    except SyncError as exc:
        assert exc.reason
    else:
        assert status == 200 and acked >= 0


# --- run_once -----------------------------------------------------------------------------


def test_run_once_uploads_in_batches_over_one_connection(
    journal: Journal, backoffice: IngestBackOffice, clock: FixedClock
) -> None:
    journal.append_batch(record(i) for i in range(95))
    up = uploader(journal, backoffice, clock, batch_size=20)
    result = up.run_once()
    assert (result.batches, result.sent, result.acked_up_to, result.pending) == (5, 95, 95, 0)
    assert backoffice.batch_sizes == [20, 20, 20, 20, 15]  # never more than a batch in hand
    assert len(backoffice.connections) == 1  # keep-alive across batches
    assert_exactly_once(journal, backoffice)
    again = up.run_once()
    assert (again.batches, again.sent) == (0, 0)


def test_nothing_pending_sends_nothing(
    journal: Journal, backoffice: IngestBackOffice, clock: FixedClock
) -> None:
    assert uploader(journal, backoffice, clock).run_once().batches == 0
    assert backoffice.requests == 0


def test_wrong_secret_is_rejected_and_nothing_acked(
    journal: Journal, backoffice: IngestBackOffice, clock: FixedClock
) -> None:
    journal.append(record(1))
    up = Uploader(journal, credentials(backoffice.url, secret=bytes(32)), clock, timeout=2.0)
    with pytest.raises(SyncRejectedError) as caught:
        up.run_once()
    assert caught.value.status == 401 and caught.value.server_code == "unauthorized"
    assert journal.stats().acked_up_to == 0 and not backoffice.stored


def test_clock_far_off_is_rejected(
    journal: Journal, backoffice: IngestBackOffice, tmp_path: Path
) -> None:
    journal.append(record(1))
    skewed = FixedClock(backoffice.clock.now() + 301)
    with pytest.raises(SyncRejectedError, match="stale"):
        Uploader(journal, credentials(backoffice.url), skewed, timeout=2.0).run_once()


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("500", SyncServerError),
        ("garbage", SyncAnswerError),
        ("not_http", SyncAnswerError),
        ("drop", SyncConnectionLostError),
        ("cut", SyncConnectionLostError),
        ("lie", SyncAnswerError),
    ],
)
def test_each_failure_is_typed_and_the_next_pass_completes_exactly_once(
    journal: Journal,
    backoffice: IngestBackOffice,
    clock: FixedClock,
    fault: str,
    error: type[SyncError],
) -> None:
    journal.append_batch(record(i) for i in range(50))
    up = uploader(journal, backoffice, clock, batch_size=10)
    up.run_once()  # 1..50 stored and acked
    journal.append_batch(record(i) for i in range(50, 80))
    backoffice.faults.extend(["ok", fault])  # 51..60 fine, then 61..70 meets the fault
    if fault == "drop":
        # A kept-alive connection closed without an answer is retried at once on a new one
        # (the back office may just have closed an idle connection); a second drop is real.
        backoffice.faults.append("drop")
    with pytest.raises(error) as caught:
        up.run_once()
    assert isinstance(caught.value, SyncError) and caught.value.reason
    assert journal.stats().acked_up_to == 60
    result = up.run_once()
    assert result.pending == 0
    assert_exactly_once(journal, backoffice)


def test_timeout_on_a_slow_back_office(
    journal: Journal, backoffice: IngestBackOffice, clock: FixedClock
) -> None:
    journal.append_batch(record(i) for i in range(30))
    up = uploader(journal, backoffice, clock, batch_size=10, timeout=0.2)
    backoffice.faults.append("slow")  # stores 1..10, but answers too late
    with pytest.raises(SyncTimeoutError):
        up.run_once()
    backoffice.release.set()
    assert journal.stats().acked_up_to == 0
    assert up.run_once().pending == 0
    assert_exactly_once(journal, backoffice)  # 1..10 resent and skipped, not stored twice


def test_back_office_down_then_back(
    journal: Journal, backoffice: IngestBackOffice, clock: FixedClock
) -> None:
    journal.append_batch(record(i) for i in range(5))
    backoffice.stop()
    up = uploader(journal, backoffice, clock)
    with pytest.raises(SyncUnreachableError):
        up.run_once()
    backoffice.start()  # same port
    assert up.run_once().acked_up_to == 5
    assert_exactly_once(journal, backoffice)


def test_server_closing_an_idle_keep_alive_connection_is_not_a_failure(
    journal: Journal, backoffice: IngestBackOffice, clock: FixedClock
) -> None:
    journal.append(record(1))
    up = uploader(journal, backoffice, clock)
    up.run_once()
    backoffice.stop()  # drops the kept-alive connection
    backoffice.start()
    journal.append(record(2))
    assert up.run_once().acked_up_to == 2


def test_back_office_that_lost_entries_gets_them_again(
    journal: Journal, backoffice: IngestBackOffice, clock: FixedClock
) -> None:
    journal.append_batch(record(i) for i in range(20))
    up = uploader(journal, backoffice, clock, batch_size=10)
    up.run_once()
    backoffice.stored.clear()  # restored from an old backup: it answers acked_up_to 0
    backoffice.store_counts.clear()
    journal.append_batch(record(i) for i in range(20, 25))
    result = up.run_once()  # 21..25, "I hold nothing", then 1..10, 11..20, 21..25 again
    assert result.pending == 0 and result.sent == 30
    assert_exactly_once(journal, backoffice)


def test_back_office_lacking_purged_entries_is_an_error(
    journal: Journal, backoffice: IngestBackOffice, clock: FixedClock
) -> None:
    journal.append_batch(record(i) for i in range(20))
    up = uploader(journal, backoffice, clock, batch_size=10)
    up.run_once()
    clock.advance(100)
    journal.purge(retention_seconds=10)
    backoffice.stored.clear()
    journal.append(record(21))
    with pytest.raises(SyncError, match="purged"):
        up.run_once()
    assert journal.stats().acked_up_to == 20


def test_resumes_after_restart_from_the_journal(
    tmp_path: Path, backoffice: IngestBackOffice, clock: FixedClock
) -> None:
    path = tmp_path / "journal.db"
    with Journal.open(path, TERMINAL, clock, min_free_bytes=0) as j:
        j.append_batch(record(i) for i in range(40))
        backoffice.faults.extend(["ok", "500"])
        with pytest.raises(SyncServerError):
            uploader(j, backoffice, clock, batch_size=10).run_once()
    with Journal.open(path, TERMINAL, clock, min_free_bytes=0) as j:  # the terminal restarted
        assert j.stats().acked_up_to == 10
        assert uploader(j, backoffice, clock, batch_size=10).run_once().sent == 30
        assert_exactly_once(j, backoffice)


def test_credentials_of_another_terminal_are_refused(journal: Journal, clock: FixedClock) -> None:
    other = TerminalCredentials(
        "T0002", SECRET, "http://127.0.0.1:1", bytes(65), "sm2", bytes(32), None
    )
    with pytest.raises(JournalError):
        Uploader(journal, other, clock)
    with pytest.raises(ValueError):
        Uploader(journal, credentials("http://127.0.0.1:1"), clock, batch_size=5001)


# --- the background thread ----------------------------------------------------------------


def test_background_thread_backs_off_and_delivers_everything_exactly_once(
    journal: Journal, backoffice: IngestBackOffice, clock: FixedClock
) -> None:
    journal.append_batch(record(i) for i in range(100))
    delays: list[float] = []
    faults = ["500", "garbage", "drop", "cut", "500", "ok", "500", "not_http"]
    backoffice.faults.extend(faults)
    up = uploader(
        journal,
        backoffice,
        clock,
        batch_size=10,
        max_backoff=8.0,
        base_backoff=0.5,
        backoff_sleep=delays.append,
    )
    up.start()
    try:
        assert up.wait_caught_up(WAIT)
        status = up.status()
        assert status.running and status.consecutive_failures == 0 and status.pending == 0
    finally:
        up.stop(WAIT)
    assert not up.status().running
    assert_exactly_once(journal, backoffice)
    # Seven failures: five in a row (ceilings 0.5 1 2 4 8), a success, then two from the start.
    assert len(delays) == 7
    ceilings = [0.5, 1, 2, 4, 8, 0.5, 1]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    expected = backoff_delays(0.5, 8.0, random.Random(7))
    first_five = [next(expected) for _ in range(5)]
    assert delays[:5] == first_five  # seeded: the jitter is the rng's, reproducibly


def test_background_thread_survives_a_back_office_that_is_down(
    journal: Journal, backoffice: IngestBackOffice, clock: FixedClock
) -> None:
    backoffice.stop()
    journal.append_batch(record(i) for i in range(10))
    failures = threading.Semaphore(0)
    delays: list[float] = []

    def sleep(delay: float) -> None:
        delays.append(delay)
        failures.release()

    up = uploader(journal, backoffice, clock, backoff_sleep=sleep, max_backoff=4.0)
    up.start()
    try:
        for _ in range(6):  # six refused connections, each followed by a back-off
            assert failures.acquire(timeout=WAIT)
        assert "sync_unreachable" in (up.status().last_error or "")
        backoffice.start()
        assert up.wait_caught_up(WAIT)
    finally:
        up.stop(WAIT)
    assert delays[4] <= 4.0 and max(delays) <= 4.0
    assert_exactly_once(journal, backoffice)


def test_notify_uploads_new_entries_without_waiting_for_the_poll(
    journal: Journal, backoffice: IngestBackOffice, clock: FixedClock
) -> None:
    up = uploader(journal, backoffice, clock, idle_interval=3600.0)
    up.start()
    try:
        assert up.wait_caught_up(WAIT)
        journal.append(record(1))
        up.notify()
        assert up.wait_caught_up(WAIT)
        assert journal.stats().acked_up_to == 1
    finally:
        up.stop(WAIT)


# --- TLS ----------------------------------------------------------------------------------


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "onecard test back office")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def test_https_with_the_credentials_ca_file(
    journal: Journal, clock: FixedClock, tmp_path: Path
) -> None:
    cert_file, key_file = _self_signed(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert_file, key_file)
    server = IngestBackOffice(clock, tls=tls)
    try:
        journal.append_batch(record(i) for i in range(25))
        untrusted = Uploader(journal, credentials(server.url), clock, timeout=2.0)
        with pytest.raises(SyncUnreachableError, match="TLS"):
            untrusted.run_once()
        trusted = Uploader(journal, credentials(server.url, ca_file=cert_file), clock, timeout=2.0)
        assert trusted.run_once().acked_up_to == 25
        assert_exactly_once(journal, server)
    finally:
        server.stop()


def test_ingest_body_from_entries_or_wire_text_is_the_same(journal: Journal) -> None:
    journal.append_batch(record(i) for i in range(3))
    entries = list(journal.entries())
    texts = [text for _, text in journal.wire_page(0, 10)]
    fields = [e.to_json_dict() for e in entries]
    a, b = json.loads(ingest_body(TERMINAL, fields)), json.loads(ingest_body(TERMINAL, texts))
    assert a == b == {"terminal_id": TERMINAL, "entries": [e.to_json_dict() for e in entries]}
