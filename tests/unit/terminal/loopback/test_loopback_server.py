"""The loopback server itself (terminal/loopback/server.py) with endpoints of its own: the
order of the checks, failures, time-outs and the bearer token. Streams:
test_loopback_streams.py; the three real servers behind it: test_loopback_servers.py."""

from __future__ import annotations

import http.client
import json
import logging
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from terminal.errors import ConfigError
from terminal.loopback import (
    Answer,
    BearerToken,
    LoopbackServer,
    Request,
    Routes,
    Stream,
    StreamChannel,
    json_answer,
)

WAIT = 5.0


class Kit:
    """A server whose endpoints record what ran."""

    def __init__(self, **options: Any) -> None:
        self.ran: list[str] = []
        self.closed = threading.Event()
        routes = Routes()
        routes.add("/echo", "POST", self.echo, json=True)
        routes.add("/fail", "GET", self.fail)
        routes.add("/stream", "GET", self.stream)
        routes.add_pattern(r"/item/(\d+)", "GET", self.item)
        routes.add_pattern(r"/item/(\d+)", "DELETE", self.item)
        self.server = LoopbackServer(routes, title="kit", server_version="kit", **options)

    def echo(self, request: Request) -> Answer:
        self.ran.append("echo")
        return json_answer(200, {"body": request.body, "query": dict(request.query)})

    def fail(self, request: Request) -> Answer:
        self.ran.append("fail")
        raise RuntimeError("broken")

    def item(self, request: Request) -> Answer:
        self.ran.append(f"{request.method} {request.params[0]}")
        return Answer(204)

    def stream(self, request: Request) -> Stream:
        def pump(channel: StreamChannel) -> None:
            channel.write(b"one\n")
            channel.write(b"two\n")

        return Stream("text/plain; charset=utf-8", pump, close=self.closed.set)


@pytest.fixture
def kit() -> Iterator[Kit]:
    made = Kit()
    yield made
    made.server.close()


def ask(
    kit: Kit, method: str, path: str, body: bytes | None = None, **headers: str
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", kit.server.port, timeout=WAIT)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_a_json_endpoint_gets_the_object_and_the_query(kit: Kit) -> None:
    headers = {"Content-Type": "application/json"}
    status, _, body = ask(kit, "POST", "/echo?a=1&a=2", b'{"x": [1]}', **headers)
    assert status == 200
    assert json.loads(body) == {"body": {"x": [1]}, "query": {"a": ["1", "2"]}}


def test_pattern_routes_pass_their_groups_and_share_allow(kit: Kit) -> None:
    assert ask(kit, "DELETE", "/item/42")[0] == 204
    assert ask(kit, "GET", "/item/7")[0] == 204
    assert kit.ran == ["DELETE 42", "GET 7"]
    status, headers, _ = ask(kit, "PUT", "/item/7")
    assert status == 405 and headers["Allow"] == "GET, DELETE"
    assert ask(kit, "GET", "/item/x")[0] == 404


def test_a_failing_endpoint_is_500_and_the_server_goes_on(kit: Kit) -> None:
    status, _, body = ask(kit, "GET", "/fail")
    assert status == 500 and json.loads(body)["error"] == "internal_error"
    assert "broken" not in body.decode()  # the log has it, the client does not
    assert ask(kit, "GET", "/item/1")[0] == 204


def test_the_guard_runs_before_any_endpoint(kit: Kit) -> None:
    headers = {"Content-Type": "application/json"}
    assert ask(kit, "POST", "/echo", b"{}", Host="evil.example", **headers)[0] == 403
    assert ask(kit, "POST", "/echo", b"{}", Origin="http://evil.example", **headers)[0] == 403
    assert ask(kit, "POST", "/echo", b"{}")[0] == 415
    assert ask(kit, "DELETE", "/item/1", Origin="http://evil.example")[0] == 403
    assert kit.ran == []


def test_a_stream_is_written_as_it_comes_and_closed(kit: Kit) -> None:
    status, headers, body = ask(kit, "GET", "/stream")
    assert status == 200 and body == b"one\ntwo\n"
    assert "Content-Length" not in headers and headers["Cache-Control"] == "no-store"
    assert "Content-Security-Policy" in headers
    assert kit.closed.wait(WAIT)


def test_a_stalled_body_ends_the_connection_without_running_anything() -> None:
    kit = Kit(connection_timeout=0.2)
    try:
        with socket.create_connection(("127.0.0.1", kit.server.port), timeout=WAIT) as sock:
            sock.sendall(
                b"POST /echo HTTP/1.0\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100\r\n\r\n{"
            )
            started = time.monotonic()
            assert sock.makefile("rb").read() == b""  # closed, no answer
        assert time.monotonic() - started < WAIT
        assert kit.ran == []
    finally:
        kit.server.close()


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.org"])
def test_only_loopback_is_bound(host: str) -> None:
    with pytest.raises(ConfigError, match="kit host must be a loopback address"):
        Kit(host=host)


def test_ipv6_loopback() -> None:
    try:
        kit = Kit(host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    try:
        assert kit.server.origin == f"http://[::1]:{kit.server.port}"
        conn = http.client.HTTPConnection("::1", kit.server.port, timeout=WAIT)
        conn.request("DELETE", "/item/3", headers={"Origin": kit.server.origin})
        assert conn.getresponse().status == 204
        conn.close()
    finally:
        kit.server.close()


# --- a server that requires a bearer token ----------------------------------------------------

TOKEN = secrets.token_urlsafe(32)


@pytest.fixture
def guarded() -> Iterator[Kit]:
    made = Kit(credential=BearerToken(TOKEN))
    yield made
    made.server.close()


@pytest.mark.parametrize("method", ["GET", "DELETE"])
@pytest.mark.parametrize("path", ["/item/1", "/nothing"])
@pytest.mark.parametrize(
    ("authorization", "challenged"),
    [
        (None, 'Bearer realm="onecard"'),
        ("Bearer nope", 'Bearer realm="onecard", error="invalid_token"'),
        (f"Basic {TOKEN}", 'Bearer realm="onecard", error="invalid_token"'),
    ],
)
def test_without_the_token_401_before_any_route(
    guarded: Kit, method: str, path: str, authorization: str | None, challenged: str
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    status, answer_headers, body = ask(guarded, method, path, **headers)
    assert status == 401
    assert answer_headers["WWW-Authenticate"] == challenged
    refusal = json.loads(body)
    assert refusal == {"status": "error", "error": "unauthorized", "reason": refusal["reason"]}
    assert guarded.ran == []


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_with_the_token_the_endpoint_runs(guarded: Kit, method: str) -> None:
    assert ask(guarded, method, "/item/7", Authorization=f"Bearer {TOKEN}")[0] == 204
    assert guarded.ran == [f"{method} 7"]
    # ... and the other checks still apply, after it.
    assert ask(guarded, "PUT", "/item/7", Authorization=f"Bearer {TOKEN}")[0] == 405
    assert ask(guarded, "GET", "/nothing", Authorization=f"Bearer {TOKEN}")[0] == 404


def test_a_foreign_host_is_refused_before_the_token_is_looked_at(guarded: Kit) -> None:
    status, _, body = ask(guarded, "GET", "/item/1", Host="evil.example")
    assert status == 403 and json.loads(body)["error"] == "bad_host"


def test_two_authorization_headers_are_refused(guarded: Kit) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", guarded.server.port, timeout=WAIT)
    try:
        conn.putrequest("GET", "/item/1")
        conn.putheader("Authorization", f"Bearer {TOKEN}")
        conn.putheader("Authorization", "Bearer other")
        conn.endheaders()
        assert conn.getresponse().status == 401
    finally:
        conn.close()
    assert guarded.ran == []


def test_the_token_is_never_logged(guarded: Kit, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    ask(guarded, "GET", "/item/1", Authorization=f"Bearer {TOKEN}")
    ask(guarded, "GET", "/item/1", Authorization=f"Bearer {TOKEN[:-2]}")
    ask(guarded, "DELETE", "/item/1")
    assert "without its bearer token refused" in caplog.text
    assert TOKEN[:-2] not in caplog.text


def test_refusals_are_logged_at_most_once_a_minute(
    guarded: Kit, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    for _ in range(5):
        ask(guarded, "GET", "/item/1")
    assert caplog.text.count("without its bearer token refused") == 1
