"""The holder screen over HTTP on 127.0.0.1 (docs/screen.md).

Routes:

``GET /``                 the page (``/screen.css``, ``/screen.js`` with it); no external resources
``GET /events``           server-sent events: one ``data:`` line of state JSON per change
                          (at most :data:`~terminal.screen.hub.MAX_SUBSCRIBERS` open: when
                          all are taken, the oldest page yields to the new one)
``GET /state``            the current state as JSON
``GET /health``           ``{"status": "ok", "screens": open event streams}``
``GET /complaint.svg``    the QR code of the complaint web address
``GET /voice/<clip>``     a spoken prompt (WAV)
``POST /api/prefs``       ``{"lang": "en", "large": true, "voice": false}`` (any of them)
``POST /api/assist``      ``{"on": true}``: assistance mode
``POST /api/call``        call staff; ``POST /api/call/cancel`` withdraws the call

The server is a :class:`~terminal.loopback.LoopbackServer`: a foreign ``Host`` is refused
before anything runs (``bad_host``), and the POSTs take a JSON object of at most
:data:`MAX_BODY` bytes (``json_required``, ``body_too_large``, ``not_json``,
``not_an_object``) and refuse a foreign ``Origin`` (``foreign_origin``), so no other web
page the kiosk's browser might show can press the holder's buttons. Refusals are the
loopback servers' one JSON error shape (:mod:`terminal.loopback.vocabulary`); a button's
own ``bad_request`` says why in ``reason``. Every answer carries a Content-Security-Policy
that allows this origin only.

An event stream gives its slot back at once when the page goes (the kit watches its
socket), after the kit's write time-out when the page stops reading, and when a new page
needs the slot and this one is the oldest; the page (``screen.js``) reconnects by itself
with a bounded, jittered back-off.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from terminal.loopback.answers import JSON_TYPE, Answer, Request, Routes, Stream, json_answer
from terminal.loopback.server import MAX_BODY, LoopbackServer
from terminal.loopback.static import ASSET_CACHE, StaticFile, content_type, read_files
from terminal.loopback.streams import StreamChannel
from terminal.loopback.vocabulary import BAD_REQUEST, NOT_FOUND, TOO_MANY_STREAMS, Refused
from terminal.screen.clips import ClipIndex
from terminal.screen.complaint import qr_svg
from terminal.screen.hub import MAX_SUBSCRIBERS, ScreenHub, Subscription, TooManySubscribers

log = logging.getLogger(__name__)

KEEPALIVE_SECONDS = 5.0
"""An SSE comment this often keeps proxies and the browser from timing the stream out."""

_PAGES = {
    # path: (file, Cache-Control); the page itself is not cached, so a new version of the
    # software shows at the next load; its assets are.
    "/": ("index.html", "no-store"),
    "/index.html": ("index.html", ASSET_CACHE),
    "/screen.css": ("screen.css", ASSET_CACHE),
    "/screen.js": ("screen.js", ASSET_CACHE),
}

_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "media-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)

Action = Callable[[dict[str, Any]], dict[str, Any]]


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
        self._http = LoopbackServer(
            self._routes(),
            title="holder screen",
            server_version="onecard-screen",
            host=host,
            port=port,
            policy=_CSP,
            max_body=MAX_BODY,
        )
        self.host = self._http.host
        self.port: int = self._http.port

    @property
    def url(self) -> str:
        return self._http.origin + "/"

    def close(self) -> None:
        """Stop serving; open event streams end at once."""
        self._http.close()

    def _routes(self) -> Routes:
        routes = Routes()
        files = read_files("terminal.screen", "page", {name for name, _ in _PAGES.values()})
        for path, (name, cache) in _PAGES.items():
            routes.add(path, "GET", StaticFile(files[name], content_type(name), cache))
        routes.add("/events", "GET", self._events)
        routes.add("/state", "GET", self._state)
        routes.add("/health", "GET", self._health)
        routes.add("/favicon.ico", "GET", lambda request: Answer(204, cache=ASSET_CACHE))
        url = self.hub.settings.complaint_url
        if url:
            svg = qr_svg(url, "投诉网址二维码 / QR code of the complaint web address")
            routes.add(
                "/complaint.svg", "GET", StaticFile(svg.encode(), "image/svg+xml", ASSET_CACHE)
            )
        if self.clips is not None:
            routes.add_pattern(r"/voice/(.*)", "GET", self._clip)
        buttons: dict[str, Action] = {
            "/api/prefs": self._prefs,
            "/api/assist": self._assist,
            "/api/call": self._call,
            "/api/call/cancel": self._cancel,
        }
        for path, action in buttons.items():
            routes.add(path, "POST", _button(action), json=True)
        return routes

    # --- GET ---------------------------------------------------------------------------------

    def _state(self, request: Request) -> Answer:
        return Answer(200, self.hub.state_json().encode(), JSON_TYPE)

    def _health(self, request: Request) -> Answer:
        return json_answer(200, {"status": "ok", "screens": self.hub.subscribers})

    def _clip(self, request: Request) -> Answer:
        assert self.clips is not None
        clip = self.clips.file(request.params[0])
        data = None
        if clip is not None:
            # Evicted from the voice cache between the look-up and the read: as if it had
            # never been (the page shows the words without sound).
            with contextlib.suppress(OSError):
                data = clip.read_bytes()
        if data is None:
            raise Refused(NOT_FOUND, "no such clip")
        return Answer(200, data, "audio/wav", ASSET_CACHE)

    def _events(self, request: Request) -> Stream:
        sub = self._subscribe()
        return Stream(
            "text/event-stream; charset=utf-8",
            lambda channel: self._pump(sub, channel),
            close=sub.close,
        )

    def _subscribe(self) -> Subscription:
        """A subscription for a new page; when every slot is taken the oldest open stream
        ends to make room (a kiosk's page that was reloaded, a tab left open: the page in
        front of the holder is the newest). ``too_many_streams`` only when no stream of this
        server holds a slot to give."""
        for _ in range(MAX_SUBSCRIBERS + 1):
            try:
                return self.hub.subscribe()
            except TooManySubscribers as exc:
                if not self._http.end_oldest_stream():
                    raise Refused(TOO_MANY_STREAMS, str(exc)) from None
                log.info("holder screen: every stream taken; the oldest page made room")
        raise Refused(TOO_MANY_STREAMS, "every screen slot is taken")

    def _pump(self, sub: Subscription, channel: StreamChannel) -> None:
        """The state events of ``sub`` while the stream is open: ``retry:`` first, then
        one ``data:`` line per state, and a comment after ``KEEPALIVE_SECONDS`` of
        silence."""
        channel.write(b"retry: 1000\n\n")
        idle = 0.0
        while channel.open:
            text = sub.get(timeout=1.0)
            if text is None:
                idle += 1.0
                if idle < KEEPALIVE_SECONDS:
                    continue
                frame = b": keep-alive\n\n"
            else:
                frame = b"data: " + text.encode() + b"\n\n"
            idle = 0.0
            channel.write(frame)

    # --- the holder's buttons ----------------------------------------------------------------

    def _prefs(self, body: dict[str, Any]) -> dict[str, Any]:
        lang = body.get("lang")
        large = body.get("large")
        voice = body.get("voice")
        if lang is not None and not isinstance(lang, str):
            raise ValueError("lang must be a string")
        for name, value in (("large", large), ("voice", voice)):
            if value is not None and not isinstance(value, bool):
                raise ValueError(f"{name} must be true or false")
        self.hub.set_prefs(lang=lang, large=large, voice=voice)
        return {"ok": True}

    def _assist(self, body: dict[str, Any]) -> dict[str, Any]:
        on = body.get("on")
        if not isinstance(on, bool):
            raise ValueError("on must be true or false")
        self.hub.set_assist(on)
        return {"ok": True}

    def _call(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"call": self.hub.call_staff()}

    def _cancel(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"cancelled": self.hub.cancel_call()}


def _button(action: Action) -> Callable[[Request], Answer]:
    """An endpoint of a button: the action's answer as JSON; its ValueError (a setting
    the hub does not take) is ``bad_request`` with the reason."""

    def handle(request: Request) -> Answer:
        assert request.body is not None
        try:
            return json_answer(200, action(request.body))
        except ValueError as exc:
            raise Refused(BAD_REQUEST, str(exc)) from None

    return handle
