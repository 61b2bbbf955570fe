"""The holder screen over HTTP (terminal/screen/server.py): a real ScreenServer on a free
loopback port, asked with http.client and raw sockets."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from terminal.host.clock import FixedClock
from terminal.screen.clips import ClipIndex
from terminal.screen.hub import MAX_SUBSCRIBERS, ScreenHub
from terminal.screen.model import ScreenSettings
from terminal.screen.server import MAX_BODY, ScreenServer
from terminal.screen.voice import VoiceCatalog, clip_info

WAIT = 5.0
"""Socket time-out: the bound on anything that should come at once."""

CSP = "Content-Security-Policy"
JSON = "application/json; charset=utf-8"
COMPLAINT_URL = "https://12333.example.gov.cn/complaint?site=gate-7"


class Answer:
    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = response.headers
        self.body = response.read()

    @property
    def kind(self) -> str:
        return self.headers.get("Content-Type", "")

    def json(self) -> Any:
        return json.loads(self.body)


class EventStream:
    """``GET /events`` on a raw socket, read one server-sent event at a time."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.sock.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        self.file = self.sock.makefile("rb")
        self.status = int(self.file.readline().split()[1])
        self.headers: dict[str, str] = {}
        while (line := self.file.readline().decode()) not in ("\r\n", ""):
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()

    def state(self) -> dict[str, Any]:
        """The next ``data:`` event as JSON (``retry:`` and comments skipped)."""
        while True:
            line = self.file.readline()
            assert line, "the stream ended"
            if line.startswith(b"data: "):
                assert self.file.readline() == b"\n"
                state: dict[str, Any] = json.loads(line[len(b"data: ") :])
                return state

    def ended(self) -> bool:
        """Read to the end; True when the server closed the stream (within WAIT)."""
        while self.file.readline():
            pass
        return True

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture
def make_server() -> Iterator[Callable[..., ScreenServer]]:
    made: list[tuple[ScreenServer, ScreenHub]] = []

    def make(settings: ScreenSettings | None = None, **kwargs: Any) -> ScreenServer:
        voice_url = kwargs.pop("voice_url", None)
        hub = ScreenHub(settings or ScreenSettings(), clock=FixedClock(), voice_url=voice_url)
        server = ScreenServer(hub, **kwargs)
        made.append((server, hub))
        return server

    yield make
    for server, hub in made:
        server.close()
        hub.close()


# Closing a server waits for its accept loop's next poll (POLL_INTERVAL): tests that change
# nothing share one server; tests that press buttons or close it make their own.
@pytest.fixture(scope="module")
def shared() -> Iterator[ScreenServer]:
    """For tests that change nothing."""
    hub = ScreenHub(ScreenSettings(), clock=FixedClock())
    server = ScreenServer(hub)
    yield server
    server.close()
    hub.close()


@pytest.fixture
def server(make_server: Callable[..., ScreenServer]) -> ScreenServer:
    """A fresh server for a test that changes its state."""
    return make_server()


def request(server: ScreenServer, method: str, path: str, **kwargs: Any) -> Answer:
    """One request on a new connection (``kwargs``: ``body``, ``headers``)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=WAIT)
    try:
        conn.request(method, path, **kwargs)
        return Answer(conn.getresponse())
    finally:
        conn.close()


def post(
    server: ScreenServer, path: str, data: Any = None, headers: dict[str, str] | None = None
) -> Answer:
    body = data if isinstance(data, bytes) else json.dumps({} if data is None else data).encode()
    headers = {"Content-Type": "application/json", **(headers or {})}
    return request(server, "POST", path, body=body, headers=headers)


def state(server: ScreenServer) -> dict[str, Any]:
    answer = request(server, "GET", "/state")
    assert answer.status == 200
    data: dict[str, Any] = answer.json()
    return data


# --- static files and GETs ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "kind", "marker"),
    [
        ("/", "text/html; charset=utf-8", b"<html"),
        ("/index.html", "text/html; charset=utf-8", b"<html"),
        ("/screen.css", "text/css; charset=utf-8", b"{"),
        ("/screen.js", "text/javascript; charset=utf-8", b"EventSource"),
    ],
)
def test_static_files(shared: ScreenServer, path: str, kind: str, marker: bytes) -> None:
    answer = request(shared, "GET", path)
    assert answer.status == 200
    assert answer.kind == kind
    assert marker in answer.body
    name = "index.html" if path == "/" else path.lstrip("/")
    assert answer.body == (resources.files("terminal.screen") / "page" / name).read_bytes()
    assert int(answer.headers["Content-Length"]) == len(answer.body)
    assert "default-src 'none'" in answer.headers[CSP]
    assert "script-src 'self'" in answer.headers[CSP]
    assert answer.headers["X-Content-Type-Options"] == "nosniff"


def test_the_page_loads_nothing_from_elsewhere(shared: ScreenServer) -> None:
    for path in ("/", "/screen.css", "/screen.js"):
        body = request(shared, "GET", path).body
        assert b"http://" not in body and b"https://" not in body, path


def test_the_page_is_not_cached_but_its_assets_are(shared: ScreenServer) -> None:
    assert request(shared, "GET", "/").headers["Cache-Control"] == "no-store"
    assert "max-age" in request(shared, "GET", "/screen.js").headers["Cache-Control"]


def test_query_strings_are_ignored(shared: ScreenServer) -> None:
    assert request(shared, "GET", "/screen.css?v=3").status == 200


def test_state_is_the_hubs(shared: ScreenServer) -> None:
    answer = request(shared, "GET", "/state")
    assert answer.kind == JSON
    assert answer.body.decode() == shared.hub.state_json()
    assert answer.headers["Cache-Control"] == "no-store"
    assert CSP in answer.headers


def test_health_and_favicon(shared: ScreenServer) -> None:
    health = request(shared, "GET", "/health")
    assert (health.status, health.json()) == (200, {"status": "ok", "screens": 0})
    icon = request(shared, "GET", "/favicon.ico")
    assert (icon.status, icon.body) == (204, b"")
    assert CSP in icon.headers


@pytest.mark.parametrize("path", ["/nothing", "/voice/x.wav", "/complaint.svg", "/../etc"])
def test_unknown_gets_are_404_with_csp(shared: ScreenServer, path: str) -> None:
    answer = request(shared, "GET", path)
    assert answer.status == 404
    assert CSP in answer.headers


@pytest.mark.parametrize("method", ["PUT", "DELETE", "HEAD", "PATCH", "POST", "OPTIONS"])
def test_other_methods_are_refused_with_csp(shared: ScreenServer, method: str) -> None:
    answer = request(shared, method, "/")
    assert answer.status == 405
    assert answer.headers["Allow"] == "GET"
    assert "default-src 'none'" in answer.headers[CSP]
    if method != "HEAD":
        assert answer.json()["error"] == "method_not_allowed"


def test_a_method_http_does_not_know_is_501_with_csp(shared: ScreenServer) -> None:
    answer = request(shared, "BREW", "/")
    assert answer.status == 501
    assert answer.json()["error"] == "not_implemented"
    assert "default-src 'none'" in answer.headers[CSP]


def test_the_base_classs_own_error_answers_carry_the_csp(shared: ScreenServer) -> None:
    with socket.create_connection(("127.0.0.1", shared.port), timeout=WAIT) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n" + b"X: a\r\n" * 200 + b"\r\n")
        head = sock.makefile("rb").read().split(b"\r\n\r\n", 1)[0].decode()
    assert head.startswith("HTTP/1.0 431")
    assert f"\r\n{CSP}: default-src 'none'" in head


# --- the complaint code ---------------------------------------------------------------------


def test_complaint_svg_when_a_url_is_configured(make_server: Callable[..., ScreenServer]) -> None:
    server = make_server(ScreenSettings(complaint_url=COMPLAINT_URL))
    answer = request(server, "GET", "/complaint.svg")
    assert answer.status == 200
    assert answer.kind == "image/svg+xml"
    assert answer.body.startswith(b"<svg")
    assert b'role="img"' in answer.body
    assert CSP in answer.headers
    assert state(server)["complaint"]["url"] == COMPLAINT_URL


# --- voice clips ----------------------------------------------------------------------------


@pytest.fixture
def clips(tmp_path: Path) -> Iterator[ClipIndex]:
    index = ClipIndex(VoiceCatalog(tmp_path / "voice"))
    yield index
    index.close()


def test_unknown_clip_is_404(make_server: Callable[..., ScreenServer], clips: ClipIndex) -> None:
    server = make_server(clips=clips)
    for name in ("0" * 32 + ".wav", "..%2F..%2Fetc%2Fpasswd", "x.wav", ""):
        answer = request(server, "GET", f"/voice/{name}")
        assert answer.status == 404, name
        assert CSP in answer.headers


def test_a_clip_evicted_before_it_is_read_is_404(
    make_server: Callable[..., ScreenServer], tmp_path: Path
) -> None:
    class Evicted:
        """Clips found, then gone before the read (the voice cache made room meanwhile)."""

        def file(self, name: str) -> Path:
            return tmp_path / name

    server = make_server(clips=Evicted())
    assert request(server, "GET", "/voice/" + "a" * 32 + ".wav").status == 404


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_a_clip_the_screen_names_is_served_as_wav(
    make_server: Callable[..., ScreenServer], clips: ClipIndex
) -> None:
    server = make_server(clips=clips, voice_url=clips.url)
    voice = state(server)["voice"]
    assert set(voice) == {"zh", "en"}
    for url in voice.values():
        assert url.startswith("/voice/")
        answer = request(server, "GET", url)
        assert answer.status == 200
        assert answer.kind == "audio/wav"
        assert clip_info(answer.body).frames > 0
        assert CSP in answer.headers


# --- the holder's buttons -------------------------------------------------------------------


def test_prefs(server: ScreenServer) -> None:
    answer = post(server, "/api/prefs", {"lang": "en", "large": True})
    assert (answer.status, answer.json()) == (200, {"ok": True})
    assert CSP in answer.headers
    assert state(server)["prefs"] == {"lang": "en", "large": True, "voice": True}
    assert post(server, "/api/prefs", {"voice": False}).status == 200
    assert state(server)["prefs"] == {"lang": "en", "large": True, "voice": False}


def test_assist(server: ScreenServer) -> None:
    assert post(server, "/api/assist", {"on": True}).json() == {"ok": True}
    assert state(server)["assist"] is True
    assert post(server, "/api/assist", {"on": False}).status == 200
    assert state(server)["assist"] is False


def test_call_and_cancel(server: ScreenServer) -> None:
    assert post(server, "/api/call").json() == {"call": 1}
    assert post(server, "/api/call").json() == {"call": 1}
    assert state(server)["call"]["state"] == "waiting"
    assert post(server, "/api/call/cancel").json() == {"cancelled": True}
    assert state(server)["call"] is None
    assert post(server, "/api/call/cancel").json() == {"cancelled": False}


def test_own_origins_and_parameters_of_the_content_type_are_accepted(
    server: ScreenServer,
) -> None:
    for origin in (f"http://127.0.0.1:{server.port}", f"http://localhost:{server.port}"):
        assert post(server, "/api/assist", {"on": True}, {"Origin": origin}).status == 200
    answer = post(
        server, "/api/assist", {"on": False}, {"Content-Type": "application/json; charset=utf-8"}
    )
    assert answer.status == 200


def test_a_body_of_max_body_bytes_is_accepted(server: ScreenServer) -> None:
    body = b'{"lang": "en"' + b" " * (MAX_BODY - 14) + b"}"
    assert len(body) == MAX_BODY
    assert post(server, "/api/prefs", body).status == 200


REFUSALS = [
    ("unknown path", "/api/nothing", {}, b"{}", 404, "not_found"),
    (
        "foreign origin",
        "/api/call",
        {"Origin": "http://evil.example"},
        b"{}",
        403,
        "foreign_origin",
    ),
    ("other port", "/api/call", {"Origin": "http://127.0.0.1:1"}, b"{}", 403, "foreign_origin"),
    ("null origin", "/api/call", {"Origin": "null"}, b"{}", 403, "foreign_origin"),
    ("foreign host", "/api/call", {"Host": "evil.example"}, b"{}", 403, "bad_host"),
    ("form post", "/api/call", {"Content-Type": "text/plain"}, b"{}", 415, "json_required"),
    (
        "url-encoded",
        "/api/assist",
        {"Content-Type": "application/x-www-form-urlencoded"},
        b"on=true",
        415,
        "json_required",
    ),
    ("too large", "/api/prefs", {}, b"{" + b" " * MAX_BODY + b"}", 413, "body_too_large"),
    ("not json", "/api/prefs", {}, b"{lang: en}", 400, "not_json"),
    ("not utf-8", "/api/prefs", {}, b'{"lang": "\xff"}', 400, "not_json"),
    ("array", "/api/prefs", {}, b'["en"]', 400, "not_an_object"),
    ("nested too deep", "/api/prefs", {}, b"[" * 4000, 400, "not_json"),
    ("unknown lang", "/api/prefs", {}, b'{"lang": "fr"}', 400, "bad_request"),
    ("lang not a string", "/api/prefs", {}, b'{"lang": 1}', 400, "bad_request"),
    ("large not a bool", "/api/prefs", {}, b'{"large": "yes"}', 400, "bad_request"),
    ("voice a number", "/api/prefs", {}, b'{"voice": 1}', 400, "bad_request"),
    ("assist without on", "/api/assist", {}, b"{}", 400, "bad_request"),
    ("assist on null", "/api/assist", {}, b'{"on": null}', 400, "bad_request"),
]


@pytest.mark.parametrize(
    ("path", "headers", "body", "status", "error"),
    [r[1:] for r in REFUSALS],
    ids=[r[0] for r in REFUSALS],
)
def test_refusals(
    shared: ScreenServer,
    path: str,
    headers: dict[str, str],
    body: bytes,
    status: int,
    error: str,
) -> None:
    before = state(shared)
    answer = post(shared, path, body, headers)
    assert answer.status == status
    assert answer.kind == JSON
    assert CSP in answer.headers
    assert answer.json() == {"status": "error", "error": error, "reason": answer.json()["reason"]}
    assert state(shared) == before  # nothing pressed


@pytest.mark.parametrize("length", [b"-1", b"-4096", b"ten"])
def test_a_bad_content_length_is_refused_at_once(server: ScreenServer, length: bytes) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
        sock.sendall(
            b"POST /api/call HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: " + length + b"\r\n\r\n{}"
        )
        # The client keeps its side open: an answer must not wait for it to hang up.
        head = sock.makefile("rb").readline()
    assert head.split()[1] == b"400"
    assert state(server)["call"] is None


# --- server-sent events ---------------------------------------------------------------------


def test_events_start_with_the_state_then_each_change(server: ScreenServer) -> None:
    stream = EventStream(server.port)
    try:
        assert stream.status == 200
        assert stream.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert stream.headers["cache-control"] == "no-store"
        assert CSP.lower() in stream.headers
        first = stream.state()
        assert first == json.loads(server.hub.state_json())
        assert first["phase"] == "idle"

        started = time.monotonic()
        server.hub.presenting("card")
        busy = stream.state()
        assert time.monotonic() - started < 2.0
        assert busy["phase"] == "busy"
        assert busy["seq"] > first["seq"]

        assert post(server, "/api/prefs", {"lang": "en"}).status == 200
        assert stream.state()["prefs"]["lang"] == "en"
        assert request(server, "GET", "/health").json()["screens"] == 1
    finally:
        stream.close()


def test_close_ends_open_event_streams(make_server: Callable[..., ScreenServer]) -> None:
    server = make_server()
    streams = [EventStream(server.port) for _ in range(3)]
    for stream in streams:
        stream.state()
    started = time.monotonic()
    server.close()
    try:
        for stream in streams:
            assert stream.ended()
    finally:
        for stream in streams:
            stream.close()
    assert time.monotonic() - started < 3.0
    assert server.hub.subscribers == 0
    with pytest.raises(OSError):
        request(server, "GET", "/health")


def test_when_every_slot_is_taken_the_oldest_page_yields(
    make_server: Callable[..., ScreenServer],
) -> None:
    server = make_server()
    streams = [EventStream(server.port) for _ in range(MAX_SUBSCRIBERS)]
    try:
        for stream in streams:
            assert stream.status == 200
            stream.state()
        assert request(server, "GET", "/health").json()["screens"] == MAX_SUBSCRIBERS
        # A new page (the kiosk reloaded, the old tab stalled): it gets its stream ...
        newest = EventStream(server.port)
        streams.append(newest)
        assert newest.status == 200
        assert newest.state()["phase"] == "idle"
        # ... and the oldest gave up its slot for it.
        assert streams[0].ended()
        assert request(server, "GET", "/health").json()["screens"] == MAX_SUBSCRIBERS

        server.hub.presenting("code")
        for stream in streams[1:]:
            assert stream.state()["phase"] == "busy"
        server.close()
        for stream in streams[1:]:
            assert stream.ended()
    finally:
        for stream in streams:
            stream.close()
    assert server.hub.subscribers == 0


def test_pages_that_come_and_go_never_lock_the_screen_out(
    make_server: Callable[..., ScreenServer],
) -> None:
    server = make_server()
    # Three times as many pages as slots, none closed by its client: each new one gets in.
    streams = []
    try:
        for _ in range(3 * MAX_SUBSCRIBERS):
            stream = EventStream(server.port)
            streams.append(stream)
            assert stream.status == 200
            stream.state()
        assert server.hub.subscribers == MAX_SUBSCRIBERS
    finally:
        for stream in streams:
            stream.close()


def watch_unsubscribe(hub: ScreenHub) -> threading.Event:
    """Set when a page's subscription is given back to the hub."""
    given_back = threading.Event()
    unsubscribe = hub.unsubscribe

    def recorded(sub: Any) -> None:
        unsubscribe(sub)
        given_back.set()

    hub.unsubscribe = recorded  # type: ignore[method-assign]
    return given_back


@pytest.mark.parametrize("how", ["reset", "close"])
def test_a_page_that_goes_gives_its_slot_back_at_once(
    make_server: Callable[..., ScreenServer], how: str
) -> None:
    server = make_server()
    given_back = watch_unsubscribe(server.hub)
    stream = EventStream(server.port)
    stream.state()
    assert server.hub.subscribers == 1
    started = time.monotonic()
    if how == "reset":
        stream.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.close()
    # At once: not at the next keep-alive (KEEPALIVE_SECONDS) or the one after it.
    assert given_back.wait(WAIT)
    assert time.monotonic() - started < 1.0
    assert server.hub.subscribers == 0


def test_events_start_with_a_retry_hint(server: ScreenServer) -> None:
    stream = EventStream(server.port)
    try:
        assert stream.file.readline() == b"retry: 1000\n"
    finally:
        stream.close()
