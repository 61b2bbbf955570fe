"""The back office's defences against clients that hold it, on a real socket (SQLite):
slow clients are dropped at their deadline and their threads freed, strangers' large
bodies are refused unread, connections over the limit get 503 - and a terminal's upload
still goes through."""

from __future__ import annotations

import contextlib
import http.client
import json
import select
import socket
import ssl
import threading
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from helpers.waiting import wait_for

from backoffice.limits import ServeLimits
from backoffice.publish import generate_publication_key
from backoffice.server import BackOffice, RunningServer
from backoffice.storage import open_storage
from backoffice.testing import make_entries
from backoffice.tls import make_self_signed
from terminal.host.clock import SystemClock
from terminal.wire.requests import request_headers

pytestmark = pytest.mark.integration

SECRET = bytes(range(32))
LIMITS = ServeLimits(
    idle_timeout=2, header_timeout=2, body_grace=2, min_body_rate=4096, max_connections=32,
    linger=5,
)  # fmt: skip
BIG = 16 * 1024 * 1024


@dataclass
class World:
    office: BackOffice
    server: RunningServer
    tls: ssl.SSLContext | None

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.server.port), timeout=30)
        if self.tls is None:
            return sock
        return self.tls.wrap_socket(sock, server_hostname="127.0.0.1")

    def http(self) -> http.client.HTTPConnection:
        if self.tls is None:
            return http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        return http.client.HTTPSConnection(
            "127.0.0.1", self.server.port, timeout=30, context=self.tls
        )


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> tuple[Path, Path]:
    return make_self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(params=["http", "https"])
def serve(request, tmp_path, tls_files) -> Iterator:
    """``serve(limits=LIMITS)`` -> World: a back office on SQLite, T0001 enrolled, over HTTP
    or HTTPS."""
    storage = open_storage(tmp_path / "bo.sqlite")
    storage.enrol("T0001", SECRET, 0)
    office = BackOffice(storage, generate_publication_key(), SystemClock())
    servers: list[RunningServer] = []

    def start(limits: ServeLimits = LIMITS) -> World:
        tls = None
        if request.param == "https":
            cert, key = tls_files
            server = office.serve("127.0.0.1", 0, str(cert), str(key), limits)
            tls = ssl.create_default_context(cafile=str(cert))
        else:
            server = office.serve("127.0.0.1", 0, limits=limits)
        servers.append(server)
        return World(office, server, tls)

    try:
        yield start
    finally:
        for server in servers:
            server.shutdown()
        storage.close()


@pytest.fixture
def world(serve) -> World:
    return serve()


def trickle(sock: socket.socket, data: bytes, limit: float) -> float | None:
    """Send ``data`` a byte a second; the seconds after which the server dropped the
    connection, or None if it was still open after ``limit`` seconds."""
    start = time.monotonic()
    with contextlib.suppress(OSError):
        for byte in data:
            sock.sendall(bytes([byte]))
            # The second between bytes is spent watching for the server's close.
            readable, _, _ = select.select([sock], [], [], 1.0)
            if readable and not sock.recv(4096):
                return time.monotonic() - start
            if time.monotonic() - start > limit:
                return None
    return time.monotonic() - start


def signed_head(method: str, path: str, body: bytes, length: int | None = None, **extra) -> bytes:
    headers = request_headers("T0001", SECRET, method, path, body, time.time())
    headers["Content-Length"] = str(len(body) if length is None else length)
    headers.update(extra)
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def answer(sock: socket.socket) -> tuple[int, dict, http.client.HTTPResponse]:
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, json.loads(response.read()), response


def test_slow_loris_head_is_dropped_and_its_thread_freed(world):
    base = threading.active_count()
    head = signed_head("POST", "/v1/ingest", b"{}") + b"{}"
    with world.connect() as sock:
        dropped = trickle(sock, head, limit=LIMITS.header_timeout + 10)
    assert dropped is not None, "a client trickling its head was never dropped"
    assert dropped < LIMITS.header_timeout + 2
    assert wait_for(lambda: threading.active_count() == base), threading.enumerate()
    # The client sees the close before the server's loop has run the connection's end.
    assert wait_for(lambda: world.server.connections() == 0)


def test_slow_body_is_dropped_whatever_length_it_announced(world):
    base = threading.active_count()
    body = b"x" * 1000
    with world.connect() as sock:
        sock.sendall(signed_head("POST", "/v1/ingest", body))  # admitted: a known terminal
        dropped = trickle(sock, body, limit=LIMITS.body_grace + 10)
    assert dropped is not None and dropped < LIMITS.body_grace + 2
    assert wait_for(lambda: threading.active_count() == base)


def test_a_silent_connection_is_closed_when_idle(world):
    base = threading.active_count()
    with socket.create_connection(("127.0.0.1", world.server.port), timeout=30) as sock:
        start = time.monotonic()
        assert sock.recv(10) == b""  # nothing said, not even a TLS hello: closed
        assert time.monotonic() - start < max(LIMITS.idle_timeout, LIMITS.header_timeout) + 2
    assert wait_for(lambda: threading.active_count() == base)


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


@pytest.fixture(scope="module")
def big_body() -> memoryview:
    """One 16 MiB body for every client, made before anything is measured."""
    return memoryview(b"x" * BIG)


def send_bodies(
    world: World, head: bytes, body: memoryview, count: int
) -> tuple[list[tuple[int, str]], int]:
    """``count`` clients at once, each sending ``head`` and ``body``; their answers
    (status, error) and the peak of Python allocations meanwhile (tracemalloc)."""
    answers: list[tuple[int, str]] = []

    def client() -> None:
        with world.connect() as sock:
            sock.sendall(head)
            with contextlib.suppress(OSError):  # the server may stop reading at any time
                sock.sendall(body)
            status, payload, _ = answer(sock)
            answers.append((status, payload["error"]))

    tracemalloc.start()
    try:
        clients = [threading.Thread(target=client) for _ in range(count)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()
        _, traced_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return answers, traced_peak


def test_strangers_large_bodies_are_refused_unread(world, big_body):
    head = signed_head("POST", "/v1/ingest", b"", length=BIG, **{"X-Onecard-Terminal": "T0009"})
    base_threads = threading.active_count()
    rss_before = _rss_kib("VmRSS")
    peak_reset = False
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM from here on
        peak_reset = True
    answers, traced_peak = send_bodies(world, head, big_body, 20)
    rss_peak = _rss_kib("VmHWM") if peak_reset else _rss_kib("VmRSS")
    print(
        f"\n20 x {BIG >> 20} MiB unauthenticated: VmRSS {rss_before >> 10} MiB before, peak "
        f"{rss_peak >> 10} MiB; traced Python allocations peak {traced_peak >> 10} KiB"
    )
    assert answers == [(401, "unauthenticated")] * 20
    # One body read would be 16 MiB; 20 of them, 320 MiB.
    assert traced_peak < 4 << 20
    assert rss_peak - rss_before < 32 << 10
    assert wait_for(lambda: threading.active_count() == base_threads)


def test_bodies_held_at_once_are_bounded(serve, big_body):
    # Someone who knows a terminal id (no secret) passes the header checks; what their
    # unsigned bodies can make the server hold is bounded by the body budget.
    world = serve(replace(LIMITS, body_memory=2 * BIG))
    head = signed_head("POST", "/v1/ingest", b"", length=BIG)  # signed for another body
    answers, traced_peak = send_bodies(world, head, big_body, 10)
    print(f"\n10 x {BIG >> 20} MiB bad signatures: traced peak {traced_peak >> 20} MiB")
    assert set(answers) <= {(401, "unauthenticated"), (503, "busy")} and len(answers) == 10
    assert (401, "unauthenticated") in answers
    # The budget (32 MiB) and the hashing of what it let in; ten bodies would be 160 MiB.
    assert traced_peak < 3 * 2 * BIG


def test_oversized_body_is_413_unread(world):
    with world.connect() as sock:
        sock.sendall(signed_head("POST", "/v1/events", b"", length=2 << 20))
        status, payload, response = answer(sock)
    assert (status, payload["error"]) == (413, "payload_too_large")
    assert response.getheader("Connection") == "close"


def test_expect_continue_comes_only_for_an_admitted_request(world):
    body = json.dumps({"terminal_id": "T0001", "entries": make_entries("T0001", 3)}).encode()
    stranger = signed_head(
        "POST", "/v1/ingest", body, Expect="100-continue", **{"X-Onecard-Terminal": "T0009"}
    )
    with world.connect() as sock:
        sock.sendall(stranger)
        status, payload, _ = answer(sock)  # the final answer, no 100 before it
    assert (status, payload["error"]) == (401, "unauthenticated")
    with world.connect() as sock:
        sock.sendall(signed_head("POST", "/v1/ingest", body, Expect="100-continue"))
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        assert answer(sock)[:2] == (200, {"acked_up_to": 3})


def test_authenticated_upload_still_works(world):
    entries = make_entries("T0001", 200)
    conn = world.http()
    try:
        for start in (1, 101):
            batch = entries[start - 1 : start + 99]
            body = json.dumps({"terminal_id": "T0001", "entries": batch}).encode()
            headers = request_headers("T0001", SECRET, "POST", "/v1/ingest", body, time.time())
            conn.request("POST", "/v1/ingest", body=body, headers=headers)  # one keep-alive
            response = conn.getresponse()
            assert (response.status, json.loads(response.read())) == (
                200,
                {"acked_up_to": start + 99},
            )
    finally:
        conn.close()
    assert world.office.storage.acked_up_to("T0001") == 200


def test_connections_over_the_limit_get_503_with_retry_after(serve):
    limits = replace(LIMITS, max_connections=2)
    world = serve(limits)
    holders = [world.connect() for _ in range(limits.max_connections)]
    try:
        for sock in holders:  # each holds its slot: a request head begun, not finished
            sock.sendall(b"GET /health HTTP/1.1\r\n")
        assert wait_for(lambda: world.server.connections() == limits.max_connections)
        conn = world.http()
        conn.request("GET", "/health")
        response = conn.getresponse()
        assert response.status == 503 and response.getheader("Retry-After") == "5"
        assert json.loads(response.read())["error"] == "busy"
        conn.close()
    finally:
        for sock in holders:
            sock.close()
    assert wait_for(lambda: world.server.connections() == 0)
    conn = world.http()
    conn.request("GET", "/health")
    assert conn.getresponse().status == 200
    conn.close()


def test_an_overlong_head_is_431(world):
    with world.connect() as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 60_000 + b"\r\n")
        sock.sendall(b"X-Pad2: " + b"a" * 10_000 + b"\r\n\r\n")
        status, payload, _ = answer(sock)
    assert (status, payload["error"]) == (431, "bad_request")
