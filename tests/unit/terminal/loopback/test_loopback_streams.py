"""How a stream of a loopback server ends (terminal/loopback/streams.py): at once when its
peer resets or hangs up, after the write time-out when its peer stops reading, and when the
server ends it (the oldest for a newer page, all of them at close). A real server on a free
loopback port with a stream endpoint of its own, asked with raw sockets."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from terminal.loopback import LoopbackServer, Request, Routes, Stream, StreamChannel, StreamEnded

WAIT = 5.0
"""The bound on anything that should come at once (a wait, never a sleep)."""
AT_ONCE = 1.0
"""What "at once" means here: well under a pump's own one-second look-up."""


class Streams:
    """A server whose one endpoint, ``/hold``, holds its stream open until it ends (or,
    with ``?flood=1``, writes 64 KiB at a time while it is open); each stream's ``close``
    is recorded in order."""

    def __init__(self, **options: Any) -> None:
        self.closed: list[int] = []
        self.ended = threading.Condition()
        self.opened = 0
        routes = Routes()
        routes.add("/hold", "GET", self.hold)
        self.server = LoopbackServer(routes, title="streams", server_version="streams", **options)

    def hold(self, request: Request) -> Stream:
        number = self.opened
        self.opened += 1
        flood = "flood" in request.query

        def pump(channel: StreamChannel) -> None:
            channel.write(f"stream {number}\n".encode())
            while channel.open:
                if flood:
                    channel.write(b"x" * 65536)
                else:
                    channel.wait(60.0)

        def close() -> None:
            with self.ended:
                self.closed.append(number)
                self.ended.notify_all()

        return Stream("text/plain; charset=utf-8", pump, close)

    def wait_closed(self, count: int, timeout: float = WAIT) -> bool:
        with self.ended:
            return self.ended.wait_for(lambda: len(self.closed) >= count, timeout)


@pytest.fixture
def streams() -> Iterator[Streams]:
    made = Streams()
    yield made
    made.server.close()


def open_stream(port: int, path: str = "/hold") -> tuple[socket.socket, Any]:
    """A connection to ``path`` with the head and the first line read."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    sock.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
    file = sock.makefile("rb")
    assert file.readline().split()[1] == b"200"
    while file.readline() not in (b"\r\n", b""):
        pass
    assert file.readline().startswith(b"stream ")
    return sock, file


def reset(sock: socket.socket) -> None:
    """Close with a TCP reset, as a crashed browser or a pulled cable behind NAT does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_a_reset_ends_the_stream_at_once(streams: Streams) -> None:
    sock, file = open_stream(streams.server.port)
    file.close()
    started = time.monotonic()
    reset(sock)
    assert streams.wait_closed(1)
    assert time.monotonic() - started < AT_ONCE
    assert len(streams.server.streams) == 0


def test_a_hang_up_ends_the_stream_at_once(streams: Streams) -> None:
    sock, file = open_stream(streams.server.port)
    file.close()
    started = time.monotonic()
    sock.close()
    assert streams.wait_closed(1)
    assert time.monotonic() - started < AT_ONCE


def test_bytes_after_the_request_end_the_stream(streams: Streams) -> None:
    # An EventSource sends nothing more; a client that does is not a page.
    sock, file = open_stream(streams.server.port)
    try:
        sock.sendall(b"GET /hold HTTP/1.0\r\n\r\n")
        assert streams.wait_closed(1)
        assert file.read() == b""  # and its connection is shut down
    finally:
        file.close()
        sock.close()


def test_a_stalled_reader_ends_after_the_write_timeout() -> None:
    made = Streams(stream_write_timeout=0.2)
    try:
        sock = socket.create_connection(("127.0.0.1", made.server.port), timeout=WAIT)
        # A small receive window, then nothing read: the page stopped reading.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(b"GET /hold?flood=1 HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        try:
            assert made.wait_closed(1)
        finally:
            sock.close()
    finally:
        made.server.close()


def test_the_oldest_stream_is_ended_for_a_newer_one(streams: Streams) -> None:
    opened = [open_stream(streams.server.port) for _ in range(3)]
    try:
        assert len(streams.server.streams) == 3
        assert streams.server.end_oldest_stream()
        # Its close has run when end_oldest_stream returns: the slot is free.
        assert streams.closed == [0]
        oldest_file = opened[0][1]
        assert oldest_file.read() == b""  # the page sees its stream end
        assert streams.server.end_oldest_stream()
        assert streams.closed == [0, 1]
        assert len(streams.server.streams) == 1
    finally:
        for sock, file in opened:
            file.close()
            sock.close()


def test_no_stream_to_end(streams: Streams) -> None:
    assert not streams.server.end_oldest_stream()


def test_close_ends_every_stream_at_once() -> None:
    made = Streams()
    opened = [open_stream(made.server.port) for _ in range(3)]
    try:
        started = time.monotonic()
        made.server.close()
        assert made.wait_closed(3)
        for _, file in opened:
            assert file.read() == b""
        assert time.monotonic() - started < AT_ONCE
    finally:
        for sock, file in opened:
            file.close()
            sock.close()


def test_a_write_after_the_end_is_refused(streams: Streams) -> None:
    channels: list[StreamChannel] = []
    done = threading.Event()

    def pump(channel: StreamChannel) -> None:
        channels.append(channel)
        channel.write(b"stream x\n")
        channel.wait(60.0)
        try:
            channel.write(b"late\n")
        except StreamEnded:
            done.set()

    streams.server.routes.add("/once", "GET", lambda request: Stream("text/plain", pump))
    sock, file = open_stream(streams.server.port, "/once")
    try:
        streams.server.end_oldest_stream()
        assert done.wait(WAIT)
        assert not channels[0].open
        assert file.read() == b""
    finally:
        file.close()
        sock.close()


def test_a_failing_close_does_not_stop_the_watch(streams: Streams) -> None:
    def broken(request: Request) -> Stream:
        def pump(channel: StreamChannel) -> None:
            channel.write(b"stream b\n")
            channel.wait(60.0)

        def close() -> None:
            raise RuntimeError("broken close")

        return Stream("text/plain", pump, close)

    streams.server.routes.add("/broken", "GET", broken)
    sock, file = open_stream(streams.server.port, "/broken")
    file.close()
    reset(sock)
    # The watcher goes on: the next stream that goes is seen at once too.
    sock, file = open_stream(streams.server.port)
    file.close()
    reset(sock)
    assert streams.wait_closed(1)
