"""The holder screen over HTTP on 127.0.0.1 (docs/screen.md).

Routes:

``GET /``                 the page (``/screen.css``, ``/screen.js`` with it); no external resources
``GET /events``           server-sent events: one ``data:`` line of state JSON per change
``GET /state``            the current state as JSON
``GET /complaint.svg``    the QR code of the complaint web address
``GET /voice/<clip>``     a spoken prompt (WAV)
``POST /api/prefs``       ``{"lang": "en", "large": true, "voice": false}`` (any of them)
``POST /api/assist``      ``{"on": true}``: assistance mode
``POST /api/call``        call staff; ``POST /api/call/cancel`` withdraws the call

POSTs take JSON only and refuse a foreign ``Origin``, so no other web page the kiosk's
browser might show can press the holder's buttons. Every response carries a
Content-Security-Policy that allows this origin only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from terminal.screen.clips import ClipIndex
from terminal.screen.complaint import qr_svg
from terminal.screen.hub import ScreenHub, TooManySubscribers

log = logging.getLogger(__name__)

MAX_BODY = 4096
KEEPALIVE_SECONDS = 5.0
"""An SSE comment this often keeps proxies and the browser from timing the stream out."""

_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/screen.css": ("screen.css", "text/css; charset=utf-8"),
    "/screen.js": ("screen.js", "text/javascript; charset=utf-8"),
}

_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "media-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


def _load_static() -> dict[str, bytes]:
    page = resources.files("terminal.screen") / "page"
    return {name: (page / name).read_bytes() for name, _ in set(_STATIC.values())}


class ScreenServer:
    """Serves ``hub`` on ``host:port`` (0: a free port, see :attr:`port`) until
    :meth:`close`. ``clips`` (optional) serves the voice clips."""

    def __init__(
        self,
        hub: ScreenHub,
        port: int = 0,
        host: str = "127.0.0.1",
        clips: ClipIndex | None = None,
    ) -> None:
        self.hub = hub
        self.clips = clips
        self.static = _load_static()
        self.stopping = threading.Event()
        url = hub.settings.complaint_url
        self.complaint_svg = (
            qr_svg(url, "投诉网址二维码 / QR code of the complaint web address").encode()
            if url
            else None
        )

        def handler_factory(*args: Any) -> BaseHTTPRequestHandler:
            return _Handler(self, *args)

        self._server = ThreadingHTTPServer((host, port), handler_factory)
        self._server.daemon_threads = True
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="onecard-screen-http", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def own_origins(self) -> set[str]:
        return {f"http://127.0.0.1:{self.port}", f"http://localhost:{self.port}"}

    def close(self) -> None:
        """Stop serving; open event streams end within a second."""
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    server_version = "onecard-screen"
    timeout = 10.0
    """A client that sends less than it announced does not hold a thread for ever."""

    def __init__(self, screen: ScreenServer, *args: Any) -> None:
        self.screen = screen
        super().__init__(*args)

    def handle(self) -> None:
        # The browser may give up on an answer (a clip replaced by the next one).
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            super().handle()

    def setup(self) -> None:
        super().setup()
        # Each state is one small write; without this, a second change within the peer's
        # delayed-ACK window would wait ~40 ms behind Nagle's algorithm.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # --- GET ---------------------------------------------------------------------------------

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in _STATIC:
            name, kind = _STATIC[path]
            self._send(200, kind, self.screen.static[name], cache=path != "/")
        elif path == "/events":
            self._events()
        elif path == "/state":
            self._send(200, "application/json", self.screen.hub.state_json().encode())
        elif path == "/complaint.svg" and self.screen.complaint_svg is not None:
            self._send(200, "image/svg+xml", self.screen.complaint_svg, cache=True)
        elif path.startswith("/voice/") and self.screen.clips is not None:
            clip = self.screen.clips.file(path[len("/voice/") :])
            if clip is None:
                self._send(404, "text/plain", b"no such clip\n")
            else:
                self._send(200, "audio/wav", clip.read_bytes(), cache=True)
        elif path == "/favicon.ico":
            self._send(204, "image/x-icon", b"", cache=True)
        elif path == "/health":
            body = json.dumps({"status": "ok", "screens": self.screen.hub.subscribers})
            self._send(200, "application/json", body.encode())
        else:
            self._send(404, "text/plain", b"not found\n")

    def _events(self) -> None:
        try:
            sub = self.screen.hub.subscribe()
        except TooManySubscribers as exc:
            self._send(503, "text/plain", f"{exc}\n".encode())
            return
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(b"retry: 1000\n\n")
            self.wfile.flush()
            idle = 0.0
            while not self.screen.stopping.is_set():
                text = sub.get(timeout=1.0)
                if text is None:
                    idle += 1.0
                    if idle < KEEPALIVE_SECONDS:
                        continue
                    frame = b": keep-alive\n\n"
                else:
                    frame = b"data: " + text.encode() + b"\n\n"
                idle = 0.0
                self.wfile.write(frame)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the page went away; EventSource reconnects if it comes back
        finally:
            sub.close()
            self.close_connection = True

    # --- POST --------------------------------------------------------------------------------

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        actions: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "/api/prefs": self._prefs,
            "/api/assist": self._assist,
            "/api/call": self._call,
            "/api/call/cancel": self._cancel,
        }
        action = actions.get(path)
        if action is None:
            self._json(404, {"error": "not_found"})
            return
        origin = self.headers.get("Origin")
        if origin is not None and origin not in self.screen.own_origins():
            self._json(403, {"error": "foreign_origin"})
            return
        if self.headers.get_content_type() != "application/json":
            self._json(415, {"error": "json_only"})
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0:
            # A negative length would make rfile.read() wait for the peer to hang up.
            self._json(400, {"error": "bad_length"})
            return
        if length > MAX_BODY:
            self._json(413, {"error": "too_large"})
            return
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._json(400, {"error": "not_json"})
            return
        if not isinstance(body, dict):
            self._json(400, {"error": "not_an_object"})
            return
        try:
            self._json(200, action(body))
        except ValueError as exc:
            self._json(400, {"error": "bad_request", "reason": str(exc)})

    def _prefs(self, body: dict[str, Any]) -> dict[str, Any]:
        lang = body.get("lang")
        large = body.get("large")
        voice = body.get("voice")
        if lang is not None and not isinstance(lang, str):
            raise ValueError("lang must be a string")
        for name, value in (("large", large), ("voice", voice)):
            if value is not None and not isinstance(value, bool):
                raise ValueError(f"{name} must be true or false")
        self.screen.hub.set_prefs(lang=lang, large=large, voice=voice)
        return {"ok": True}

    def _assist(self, body: dict[str, Any]) -> dict[str, Any]:
        on = body.get("on")
        if not isinstance(on, bool):
            raise ValueError("on must be true or false")
        self.screen.hub.set_assist(on)
        return {"ok": True}

    def _call(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"call": self.screen.hub.call_staff()}

    def _cancel(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"cancelled": self.screen.hub.cancel_call()}

    # --- answers -----------------------------------------------------------------------------

    def end_headers(self) -> None:
        # Here rather than in _send so that every answer has them, the base class's own
        # error pages (501 for an unknown method, 431 for oversized headers) too.
        self.send_header("Content-Security-Policy", _CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        super().end_headers()

    def _send(self, code: int, kind: str, body: bytes, cache: bool = False) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, data: dict[str, Any]) -> None:
        self._send(code, "application/json", json.dumps(data).encode())

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("screen %s", format % args)
