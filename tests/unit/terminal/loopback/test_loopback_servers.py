"""The three loopback servers - the operator status page, the holder screen and the counter
API - behind one guard and one error vocabulary: each is a real server on a free loopback
port, asked with http.client and raw sockets (the counter API's requests with its bearer
token, which it requires of every request: test_counter_api.py)."""

from __future__ import annotations

import http.client
import json
import socket
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from terminal.counter import CounterApi
from terminal.errors import CardError
from terminal.host.clock import FixedClock
from terminal.loopback.vocabulary import KINDS
from terminal.runtime.statuspage import RuntimeStatus, StatusServer
from terminal.screen.hub import ScreenHub
from terminal.screen.model import ScreenSettings
from terminal.screen.server import ScreenServer

WAIT = 5.0
JSON = "application/json; charset=utf-8"
SECURITY_HEADERS = ("Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy")


@dataclass
class Served:
    """One running server, the request that would change something on it, and whether it
    did."""

    name: str
    port: int
    change: tuple[str, str, dict[str, str], bytes]
    changed: Callable[[], bool]
    auth: dict[str, str] = field(default_factory=dict)
    """Headers every request carries (the counter API's token)."""


def _status() -> Iterator[Served]:
    acknowledged: list[int] = []
    status = RuntimeStatus("gate", "GATE-0001")
    status.assistance = lambda: {"mode": True, "calls": [{"id": 1, "at": 0.0, "state": "waiting"}]}
    status.acknowledge_call = lambda call_id: acknowledged.append(call_id) is None
    server = StatusServer(status, 0)
    try:
        change = ("POST", "/calls/1/ack", {"Content-Type": "application/json"}, b"{}")
        yield Served("status", server.port, change, lambda: bool(acknowledged))
    finally:
        server.close()


def _screen() -> Iterator[Served]:
    hub = ScreenHub(ScreenSettings(), clock=FixedClock())
    server = ScreenServer(hub)
    try:
        change = ("POST", "/api/call", {"Content-Type": "application/json"}, b"{}")
        yield Served("screen", server.port, change, lambda: hub.assistance()["calls"] != [])
    finally:
        server.close()
        hub.close()


def _counter() -> Iterator[Served]:
    with tempfile.TemporaryDirectory() as tmp:
        token_file = Path(tmp) / "counter-api.token"
        api = CounterApi(port=0, token_file=token_file, clock=FixedClock())
        auth = {"Authorization": "Bearer " + token_file.read_text().strip()}
        api.publish(None, CardError("file not found", 0x6A82), None)
        try:
            yield Served(
                "counter",
                api.port,
                ("DELETE", "/v1/card", {}, b""),
                lambda: not api.has_record,
                auth,
            )
        finally:
            api.shutdown()


SERVERS = {"status": _status, "screen": _screen, "counter": _counter}


@pytest.fixture(params=sorted(SERVERS))
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    yield from SERVERS[request.param]()


@pytest.fixture(params=["status", "screen"])
def json_served(request: pytest.FixtureRequest) -> Iterator[Served]:
    """The servers with JSON endpoints."""
    yield from SERVERS[request.param]()


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def ask(
    served: Served,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=WAIT)
    try:
        conn.request(method, path, body=body, headers={**served.auth, **(headers or {})})
        response = conn.getresponse()
        return Reply(response.status, dict(response.getheaders()), response.read())
    finally:
        conn.close()


def raw(served: Served, data: bytes) -> Reply:
    """``data`` as it is, with ``served.auth`` after the request line."""
    lines = b"".join(f"{name}: {value}\r\n".encode() for name, value in served.auth.items())
    data = data.replace(b"\r\n", b"\r\n" + lines, 1)
    with socket.create_connection(("127.0.0.1", served.port), timeout=WAIT) as sock:
        sock.sendall(data)
        answer = sock.makefile("rb").read()
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return Reply(int(lines[0].split()[1]), headers, body)


def assert_refusal(reply: Reply, status: int, error: str) -> None:
    """The one shape of a refusal, with the headers every answer carries."""
    assert reply.status == status, reply.body
    assert reply.headers["Content-Type"] == JSON
    assert reply.headers["Cache-Control"] == "no-store"
    for name in SECURITY_HEADERS:
        assert name in reply.headers, name
    body = reply.json()
    assert body == {"status": "error", "error": error, "reason": body["reason"]}
    assert isinstance(body["reason"], str) and body["reason"]
    assert error in {kind.name for kind in KINDS}


# --- Host: no DNS rebinding ---------------------------------------------------------------

FOREIGN_HOSTS = [
    "evil.example",
    "evil.example:{port}",
    "127.0.0.1.evil.example:{port}",
    "localhost:1",
    "127.0.0.1:{other}",
]


@pytest.mark.parametrize("host", FOREIGN_HOSTS)
def test_a_foreign_host_is_refused_before_any_handler_runs(served: Served, host: str) -> None:
    host = host.format(port=served.port, other=served.port + 1)
    method, path, headers, body = served.change
    reply = ask(served, method, path, {**headers, "Host": host}, body)
    assert_refusal(reply, 403, "bad_host")
    assert not served.changed()
    assert_refusal(ask(served, "GET", "/health", {"Host": host}), 403, "bad_host")
    # Refused before routing: a path that does not exist is not even looked up.
    assert_refusal(ask(served, "GET", "/nothing", {"Host": host}), 403, "bad_host")


def test_a_foreign_host_reads_no_holder_record() -> None:
    for served in _counter():
        reply = ask(served, "GET", "/v1/card", {"Host": "evil.example"})
        assert_refusal(reply, 403, "bad_host")
        assert b"card_error" not in reply.body and b"seq" not in reply.body
        assert ask(served, "GET", "/v1/card").json()["error"] == "card_error"


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "localhost:{port}", "LOCALHOST:{port}", "[::1]:{port}"]
)
def test_loopback_hosts_are_served(served: Served, host: str) -> None:
    reply = ask(served, "GET", "/health", {"Host": host.format(port=served.port)})
    assert reply.status == 200 and reply.json()["status"] == "ok"


def test_two_host_headers_are_refused(served: Served) -> None:
    reply = raw(
        served,
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n\r\n",
    )
    assert_refusal(reply, 403, "bad_host")


def test_a_request_without_host_is_served(served: Served) -> None:
    # An HTTP/1.0 client on this machine; a browser always sends a Host.
    reply = raw(served, b"GET /health HTTP/1.0\r\n\r\n")
    assert reply.status == 200


# --- Origin -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "origin", ["http://evil.example", "null", "http://127.0.0.1:1", "https://127.0.0.1:{port}"]
)
def test_a_state_change_from_a_foreign_origin_is_refused(served: Served, origin: str) -> None:
    method, path, headers, body = served.change
    reply = ask(served, method, path, {**headers, "Origin": origin.format(port=served.port)}, body)
    assert_refusal(reply, 403, "foreign_origin")
    assert not served.changed()


@pytest.mark.parametrize("origin", ["http://127.0.0.1:{port}", "HTTP://LocalHost:{port}"])
def test_a_state_change_from_the_own_origin_is_done(served: Served, origin: str) -> None:
    method, path, headers, body = served.change
    reply = ask(served, method, path, {**headers, "Origin": origin.format(port=served.port)}, body)
    assert reply.status in (200, 204)
    assert served.changed()


def test_reading_from_a_foreign_origin_is_not_a_state_change(served: Served) -> None:
    reply = ask(served, "GET", "/health", {"Origin": "http://evil.example"})
    assert reply.status == 200
    # ... and no CORS header lets that page read the answer.
    assert "Access-Control-Allow-Origin" not in reply.headers


# --- one vocabulary -----------------------------------------------------------------------


def test_not_found(served: Served) -> None:
    assert_refusal(ask(served, "GET", "/no/such/thing"), 404, "not_found")


@pytest.mark.parametrize("method", ["PUT", "PATCH", "OPTIONS", "HEAD"])
def test_method_not_allowed_says_what_is(served: Served, method: str) -> None:
    reply = ask(served, method, "/health")
    assert reply.status == 405 and reply.headers["Allow"] == "GET"
    if method != "HEAD":
        assert_refusal(reply, 405, "method_not_allowed")


def test_a_method_http_does_not_know(served: Served) -> None:
    assert_refusal(ask(served, "BREW", "/health"), 501, "not_implemented")


def test_body_too_large(served: Served) -> None:
    method, path, headers, _ = served.change
    reply = ask(served, method, path, headers, b"{" + b" " * 4096 + b"}")
    assert_refusal(reply, 413, "body_too_large")
    assert not served.changed()
    # The same rule for every request, reads included.
    assert_refusal(ask(served, "GET", "/health", {}, b" " * 5000), 413, "body_too_large")


@pytest.mark.parametrize("length", [b"-1", b"ten", b"+5"])
def test_bad_length_is_refused_at_once(served: Served, length: bytes) -> None:
    method, path, _, _ = served.change
    reply = raw(
        served,
        f"{method} {path} HTTP/1.0\r\nContent-Type: application/json\r\n".encode()
        + b"Content-Length: "
        + length
        + b"\r\n\r\n",
    )
    assert_refusal(reply, 400, "bad_length")
    assert not served.changed()


def test_headers_too_large(served: Served) -> None:
    reply = raw(served, b"GET /health HTTP/1.1\r\n" + b"X: a\r\n" * 200 + b"\r\n")
    assert_refusal(reply, 431, "headers_too_large")


def test_a_request_line_too_long(served: Served) -> None:
    long_path = b"/" + b"a" * 70000
    assert_refusal(raw(served, b"GET " + long_path + b" HTTP/1.0\r\n\r\n"), 414, "bad_request")


# --- JSON bodies (the status page and the holder screen) ----------------------------------


@pytest.mark.parametrize(
    ("content_type", "body", "status", "error"),
    [
        ("text/plain", b"{}", 415, "json_required"),
        ("application/x-www-form-urlencoded", b"a=1", 415, "json_required"),
        (None, b"{}", 415, "json_required"),
        ("application/json", b"{not json", 400, "not_json"),
        ("application/json", b'"\xff"', 400, "not_json"),
        ("application/json", b"[" * 4000, 400, "not_json"),
        ("application/json", b"[]", 400, "not_an_object"),
        ("application/json", b"1", 400, "not_an_object"),
    ],
)
def test_json_rules(
    json_served: Served, content_type: str | None, body: bytes, status: int, error: str
) -> None:
    method, path, _, _ = json_served.change
    headers = {} if content_type is None else {"Content-Type": content_type}
    assert_refusal(ask(json_served, method, path, headers, body), status, error)
    assert not json_served.changed()


def test_a_json_body_with_a_charset_is_json(json_served: Served) -> None:
    method, path, _, _ = json_served.change
    headers = {"Content-Type": "Application/JSON; charset=utf-8"}
    assert ask(json_served, method, path, headers, b"{}").status == 200
    assert json_served.changed()


# --- every answer -------------------------------------------------------------------------


def test_every_answer_carries_the_security_headers(served: Served) -> None:
    for path in ("/health", "/nothing"):
        reply = ask(served, "GET", path)
        for name in SECURITY_HEADERS:
            assert name in reply.headers, (path, name)
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
        assert reply.headers["Referrer-Policy"] == "no-referrer"
        assert "default-src 'none'" in reply.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in reply.headers["Content-Security-Policy"]
        assert reply.headers["Cache-Control"] == "no-store"


def test_one_request_per_connection(served: Served) -> None:
    reply = raw(served, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert reply.status == 200  # raw() read to the end: the server closed the connection
