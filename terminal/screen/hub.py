"""The holder screen's live state, shared between the runtime and every open page.

:class:`ScreenHub` wraps the pure :class:`~terminal.screen.model.ScreenModel` with a lock,
a clock and a timer thread, and pushes every new state to its subscribers (one queue per
open page: the server-sent event streams of :mod:`terminal.screen.server`). It is also the
runtime's :class:`terminal.outputs.Outputs` for the display, and the operator page's view of
staff calls.

A staff call, its acknowledgement and its cancellation go to ``on_event(kind, detail)`` -
the runtime connects that to the terminal event outbox, which delivers them to the back
office (docs/sync.md, "Terminal events").
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from terminal.host.clock import Clock, SystemClock
from terminal.outputs import HolderMessage, Outcome
from terminal.screen.model import CallState, ScreenModel, ScreenSettings, ScreenState

log = logging.getLogger(__name__)

EventSink = Callable[[str, dict[str, object]], None]
"""``(kind, detail)``: a terminal event for the back office (``call_staff``...)."""

MAX_SUBSCRIBERS = 16
"""Open pages at once; a kiosk has one or two. More is a leak or an attack, not a display."""

_QUEUE_DEPTH = 64


class TooManySubscribers(Exception):
    """Every subscriber slot is taken."""


class Subscription:
    """One open page's stream of states, as JSON text (newest last)."""

    def __init__(self, hub: ScreenHub) -> None:
        self._hub = hub
        self.queue: queue.Queue[str] = queue.Queue(maxsize=_QUEUE_DEPTH)

    def get(self, timeout: float) -> str | None:
        """The next state, or None after ``timeout`` seconds without one."""
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def put(self, text: str) -> None:
        # A page that stopped reading must not hold the hub up: drop its oldest state, since
        # only the newest matters to a display.
        while True:
            try:
                self.queue.put_nowait(text)
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self.queue.get_nowait()

    def close(self) -> None:
        self._hub.unsubscribe(self)


class ScreenHub:
    """The screen state, thread-safe, with subscribers and time-outs.

    ``voice_url(lang, text)`` (optional) names the audio clip for a spoken text; the states
    sent to pages then carry ``voice: {"zh": url, "en": url}``.

    The time-outs run in a thread of the hub's own, or - with ``timer=False`` - wherever the
    owner runs :meth:`run_timer` (the runtime's supervisor, which restarts it should it
    fail).
    """

    def __init__(
        self,
        settings: ScreenSettings,
        clock: Clock | None = None,
        on_event: EventSink | None = None,
        voice_url: Callable[[str, str], str | None] | None = None,
        timer: bool = True,
    ) -> None:
        self.clock = clock or SystemClock()
        self._model = ScreenModel(settings, self.clock.monotonic())
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._subscribers: list[Subscription] = []
        self._on_event = on_event
        self._voice_url = voice_url
        self._text = self._render(self._model.state)
        self._closed = False
        self._timer: threading.Thread | None = None
        if timer:
            self._timer = threading.Thread(
                target=self.run_timer, name="onecard-screen", daemon=True
            )
            self._timer.start()

    @property
    def settings(self) -> ScreenSettings:
        return self._model.settings

    # --- state out ---------------------------------------------------------------------------

    def _render(self, state: ScreenState) -> str:
        data = state.to_json()
        if self._voice_url is not None:
            voice: dict[str, str | None] = {}
            for lang in ("zh", "en"):
                try:
                    voice[lang] = self._voice_url(lang, state.spoken(lang))
                except Exception as exc:  # no voice is better than no screen
                    log.warning("no voice clip for the screen: %s", exc)
                    voice[lang] = None
            data["voice"] = voice
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))

    def state_json(self) -> str:
        """The current state as the JSON text pages receive."""
        with self._lock:
            return self._text

    @property
    def state(self) -> ScreenState:
        with self._lock:
            return self._model.state

    def subscribe(self) -> Subscription:
        """A stream of states, starting with the current one. Raises
        :class:`TooManySubscribers` when :data:`MAX_SUBSCRIBERS` pages are open."""
        sub = Subscription(self)
        with self._lock:
            if len(self._subscribers) >= MAX_SUBSCRIBERS:
                raise TooManySubscribers(f"{MAX_SUBSCRIBERS} screens already open")
            self._subscribers.append(sub)
            sub.put(self._text)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subscribers:
                self._subscribers.remove(sub)

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def _publish_locked(self) -> None:
        self._text = self._render(self._model.state)
        for sub in self._subscribers:
            sub.put(self._text)
        self._wake.notify_all()

    def _apply(self, change: Callable[[ScreenModel, float], Any]) -> Any:
        with self._lock:
            result = change(self._model, self.clock.monotonic())
            if result:
                self._publish_locked()
            return result

    # --- the runtime's side: Outputs ---------------------------------------------------------

    def presenting(self, kind: str) -> None:
        """A credential is being processed (``card``, ``code``) or a PIN is asked (``pin``)."""
        self._apply(lambda m, now: m.present(kind, now))

    def open_gate(self) -> None:
        """The gate relay is another output's; nothing to show for it."""

    def indicate(self, outcome: Outcome) -> None:
        """Lamp and buzzer are another output's; the screen shows the outcome with the message."""

    def show(self, message: HolderMessage) -> None:
        """Put the transaction's outcome on every open page."""
        if not isinstance(message, HolderMessage):
            # A custom message factory (tests, integrators) may tell the holder in its own
            # form; the screen has nothing it could render from that.
            log.warning("holder screen: not a HolderMessage (%s); not shown", type(message))
            return
        wall = self.clock.now()
        self._apply(lambda m, now: m.show(message, now, wall))

    def close(self) -> None:
        """Stop the timer thread (pages keep the last state)."""
        with self._lock:
            self._closed = True
            self._wake.notify_all()
        if self._timer is not None and threading.current_thread() is not self._timer:
            self._timer.join(timeout=5)

    # --- the holder's buttons ----------------------------------------------------------------

    def set_prefs(
        self, lang: str | None = None, large: bool | None = None, voice: bool | None = None
    ) -> None:
        """Language, large print, voice. Raises ValueError on an unknown language."""
        self._apply(lambda m, now: m.set_prefs(now, lang=lang, large=large, voice=voice))

    def set_assist(self, on: bool) -> None:
        changed = self._apply(lambda m, now: m.set_assist(on, now))
        if changed:
            log.info("holder screen: assistance mode %s", "on" if on else "off")

    def call_staff(self) -> int:
        """The holder asks for staff: the call's id (the waiting one when already called)."""
        wall = self.clock.now()
        with self._lock:
            call = self._model.call_staff(self.clock.monotonic(), wall)
            if call is None:
                existing = self._model.call
                assert existing is not None
                return existing.id
            self._publish_locked()
        log.warning("holder called staff (call %d)", call.id)
        self._emit("call_staff", {"call": call.id})
        return call.id

    def cancel_call(self) -> bool:
        with self._lock:
            call = self._model.cancel_call(self.clock.monotonic())
            if call is not None:
                self._publish_locked()
        if call is None:
            return False
        log.info("holder cancelled staff call %d", call.id)
        if call.state is CallState.WAITING:
            self._emit("call_cancelled", {"call": call.id})
        return True

    # --- the operator's side -----------------------------------------------------------------

    def acknowledge_call(self, call_id: int) -> bool:
        """The operator is on the way; False when ``call_id`` is not a waiting call."""
        with self._lock:
            waited = self._model.call
            done = self._model.acknowledge(call_id, self.clock.monotonic())
            if done:
                self._publish_locked()
        if not done:
            return False
        seconds = round(self.clock.now() - waited.at) if waited is not None else None
        log.info("operator acknowledged staff call %d", call_id)
        self._emit("call_acknowledged", {"call": call_id, "waited_seconds": seconds})
        return True

    def assistance(self) -> dict[str, Any]:
        """For the operator page: assistance mode and the current staff call."""
        with self._lock:
            state = self._model.state
        calls = []
        call = state.call
        if call is not None:
            calls.append({"id": call.id, "at": call.at, "state": call.state.value})
        return {"mode": state.assist, "calls": calls}

    def _emit(self, kind: str, detail: dict[str, object]) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(kind, detail)
        except Exception:  # the back office hears later or not at all; the holder is served
            log.exception("could not record the %s event", kind)

    # --- time-outs ---------------------------------------------------------------------------

    def tick(self) -> None:
        """Apply the time-outs due now (the timer thread does this by itself; tests with a
        manual clock call it)."""
        self._apply(lambda m, now: m.tick(now))

    def run_timer(self, stop: threading.Event | None = None) -> None:
        """Apply the time-outs as they fall due until :meth:`close` (or ``stop``: set it,
        then :meth:`close` or another change wakes the wait)."""
        with self._lock:
            while not self._closed and not (stop is not None and stop.is_set()):
                now = self.clock.monotonic()
                if self._model.tick(now):
                    self._publish_locked()
                deadline = self._model.next_deadline(now)
                wait = 1.0 if deadline is None else max(0.01, min(1.0, deadline - now))
                self._wake.wait(wait)
