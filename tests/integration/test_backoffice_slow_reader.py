"""The send deadline follows a minimum rate (ServeLimits.send_deadline), on a real socket:
a client taking a large answer slowly but steadily (a GPRS validator fetching a snapshot
range) gets all of it and keeps its connection, and a client that stops reading is dropped.

The numbers are chosen so that timing noise cannot decide the outcome: the live reader
takes the answer at about 20 times the minimum rate, for several times the grace (so a fixed
deadline of ``send_timeout`` would cut it), and the stalled one takes nothing at all.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import logging
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers.waiting import wait_for

from backoffice.cli import add_commands, serve_limits
from backoffice.limits import ServeLimits
from backoffice.publish import generate_publication_key
from backoffice.server import BackOffice, RunningServer
from backoffice.storage import open_storage
from backoffice.tls import make_self_signed
from terminal.host.clock import SystemClock
from terminal.wire.requests import request_headers

pytestmark = pytest.mark.integration

SECRET = bytes(range(32))
PAD = 1024 * 1024  # the answer: a document of a little over 1 MiB
LIMITS = ServeLimits(idle_timeout=2, header_timeout=2, send_timeout=1, min_send_rate=16 * 1024)
READ_SIZE = 8 * 1024
READ_PAUSE = 0.025  # ~320 KiB/s: about 3.5 s for the answer, 20 times the minimum rate
RECEIVE_BUFFER = 8 * 1024  # small, so that the server's send buffer fills and pauses


@dataclass
class World:
    server: RunningServer
    tls: ssl.SSLContext | None

    def connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Before connecting, so that the window the server sees is small from the start.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        sock.settimeout(30)
        sock.connect(("127.0.0.1", self.server.port))
        if self.tls is None:
            return sock
        return self.tls.wrap_socket(sock, server_hostname="127.0.0.1")


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> tuple[Path, Path]:
    return make_self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(params=["http", "https"])
def world(request, tmp_path, tls_files) -> Iterator[World]:
    storage = open_storage(tmp_path / "bo.sqlite")
    storage.enrol("T0001", SECRET, 0)
    office = BackOffice(storage, generate_publication_key(), SystemClock())
    office.publish("applist", {"services": [], "pad": "x" * PAD})
    tls = None
    if request.param == "https":
        cert, key = tls_files
        server = office.serve("127.0.0.1", 0, str(cert), str(key), LIMITS)
        tls = ssl.create_default_context(cafile=str(cert))
    else:
        server = office.serve("127.0.0.1", 0, limits=LIMITS)
    try:
        yield World(server, tls)
    finally:
        server.shutdown()
        storage.close()


def get(path: str) -> bytes:
    headers = request_headers("T0001", SECRET, "GET", path, b"", time.time())
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Length: 0"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_head(sock: socket.socket) -> tuple[int, int, bytes]:
    """Status, Content-Length and whatever of the body came with the head."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(READ_SIZE)
        assert chunk, "closed before the head"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(v) for n, _, v in (h.partition(":") for h in lines[1:])
                  if n.lower() == "content-length")  # fmt: skip
    return int(lines[0].split()[1]), length, rest


def test_a_slow_but_live_reader_gets_the_whole_answer_and_keeps_its_connection(world):
    sock = world.connect()
    with sock:
        sock.sendall(get("/v1/applist"))
        status, length, body = read_head(sock)
        assert status == 200 and length > PAD
        start = time.monotonic()
        while len(body) < length:
            chunk = sock.recv(READ_SIZE)
            assert chunk, f"dropped after {len(body)} of {length} bytes"
            body += chunk
            time.sleep(READ_PAUSE)
        took = time.monotonic() - start
        assert body.endswith(b"}") and b'"pad"' in body
        # The same connection serves the next request: the idle deadline started once the
        # answer was out, not when it was handed over.
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_head(sock)[0] == 200
    # The reading took well over the grace: a fixed send deadline would have cut it. (Not a
    # timing assertion on the server: it only checks that the test tested what it says.)
    assert took > 2 * LIMITS.send_timeout


def test_a_reader_that_stops_is_dropped(world, caplog):
    caplog.set_level(logging.INFO, logger="backoffice.http_protocol")
    sock = world.connect()
    with sock:
        sock.sendall(get("/v1/applist"))
        status, length, body = read_head(sock)
        assert status == 200
        # Read nothing more: the server's buffers fill and the client takes nothing.
        assert wait_for(lambda: world.server.connections() == 0, 60), "never dropped"
        got = len(body)
        with contextlib.suppress(OSError):  # a reset is a drop too
            while chunk := sock.recv(1 << 16):
                got += len(chunk)
        assert got < length
    assert any("answer taken slower than" in r.getMessage() for r in caplog.records)


def test_send_deadline_moves_on_with_bytes_taken():
    limits = ServeLimits(send_timeout=30, min_send_rate=1024)
    assert limits.send_deadline(0) == 30
    assert limits.send_deadline(10 * 1024) == 40
    with pytest.raises(ValueError):
        ServeLimits(min_send_rate=0)


def test_http_client_reads_it_all_at_full_speed(world):
    """An ordinary client is not affected (the rate is far below a reader's)."""
    connection = http.client.HTTPConnection("127.0.0.1", world.server.port, timeout=30)
    if world.tls is not None:
        connection = http.client.HTTPSConnection(
            "127.0.0.1", world.server.port, timeout=30, context=world.tls
        )
    headers = request_headers("T0001", SECRET, "GET", "/v1/applist", b"", time.time())
    connection.request("GET", "/v1/applist", headers=headers)
    response = connection.getresponse()
    assert response.status == 200 and len(response.read()) > PAD
    connection.close()


def test_cli_takes_the_send_rate():
    parser = argparse.ArgumentParser(prog="onecard")
    add_commands(parser.add_subparsers(dest="command", required=True))
    base = ["backoffice", "serve", "--publication-key", "k"]
    args = parser.parse_args([*base, "--send-timeout", "5", "--min-send-rate", "2048"])
    assert serve_limits(args) == ServeLimits(send_timeout=5, min_send_rate=2048)
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--min-send-rate", "0"])
