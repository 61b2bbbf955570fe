"""The holder screen's hub (terminal/screen/hub.py): subscribers, staff-call events, voice
hooks and the timer thread, with a manual clock."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from terminal.host.clock import FixedClock
from terminal.outputs import Outcome, Outputs, message_for
from terminal.screen.hub import (
    _QUEUE_DEPTH,
    MAX_SUBSCRIBERS,
    ScreenHub,
    Subscription,
    TooManySubscribers,
)
from terminal.screen.model import ScreenSettings

WAIT = 5.0
"""Seconds any test waits for something that should come at once."""


class Events:
    """An ``on_event`` that records ``(kind, detail)`` in order."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, object]]] = []

    def __call__(self, kind: str, detail: dict[str, object]) -> None:
        self.seen.append((kind, detail))


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def make_hub(clock: FixedClock) -> Iterator[Callable[..., ScreenHub]]:
    hubs: list[ScreenHub] = []

    def make(**kwargs: Any) -> ScreenHub:
        settings = kwargs.pop("settings", ScreenSettings())
        hub = ScreenHub(settings, clock=clock, **kwargs)
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        hub.close()


def next_state(sub: Subscription) -> dict[str, Any]:
    text = sub.get(timeout=WAIT)
    assert text is not None, "no state within the wait"
    state: dict[str, Any] = json.loads(text)
    return state


def drain(sub: Subscription) -> list[dict[str, Any]]:
    out = []
    while (text := sub.get(timeout=0)) is not None:
        out.append(json.loads(text))
    return out


def test_the_hub_is_an_outputs(make_hub: Callable[..., ScreenHub]) -> None:
    hub: Outputs = make_hub()
    hub.open_gate()
    hub.indicate(Outcome.ACCEPTED)
    assert isinstance(hub, ScreenHub)
    assert hub.state.seq == 1  # neither is the screen's business


def test_subscribe_gets_the_current_state_then_each_change(
    make_hub: Callable[..., ScreenHub],
) -> None:
    hub = make_hub()
    hub.set_prefs(lang="en")
    sub = hub.subscribe()
    first = next_state(sub)
    assert first == json.loads(hub.state_json())
    assert (first["phase"], first["prefs"]["lang"]) == ("idle", "en")
    hub.presenting("card")
    busy = next_state(sub)
    assert busy["phase"] == "busy"
    assert busy["seq"] > first["seq"]
    hub.show(message_for(Outcome.REFUSED, "hotlisted"))
    result = next_state(sub)
    assert result["phase"] == "result"
    assert result["result"]["reason"] == "hotlisted"
    assert result["seq"] > busy["seq"]
    assert drain(sub) == []


def test_no_change_publishes_nothing(make_hub: Callable[..., ScreenHub]) -> None:
    hub = make_hub()
    sub = hub.subscribe()
    next_state(sub)
    hub.set_prefs(lang="zh")  # already
    hub.set_assist(False)  # already
    hub.tick()
    assert hub.acknowledge_call(1) is False
    assert hub.cancel_call() is False
    assert drain(sub) == []


def test_bad_language_raises_and_publishes_nothing(make_hub: Callable[..., ScreenHub]) -> None:
    hub = make_hub()
    sub = hub.subscribe()
    next_state(sub)
    with pytest.raises(ValueError):
        hub.set_prefs(lang="de")
    assert drain(sub) == []
    hub.set_prefs(lang="en")  # the lock was released
    assert next_state(sub)["prefs"]["lang"] == "en"


def test_a_subscriber_that_never_reads_does_not_hold_the_hub_up(
    make_hub: Callable[..., ScreenHub],
) -> None:
    hub = make_hub()
    stalled = hub.subscribe()
    rounds = _QUEUE_DEPTH * 3
    done = threading.Event()

    def runtime() -> None:
        for fare in range(rounds):
            hub.show(message_for(Outcome.ACCEPTED, "ok", fare=fare))
        done.set()

    worker = threading.Thread(target=runtime, daemon=True)
    worker.start()
    assert done.wait(WAIT), "show() blocked behind a subscriber that does not read"
    states = drain(stalled)
    assert 0 < len(states) <= _QUEUE_DEPTH
    assert states[-1] == json.loads(hub.state_json())
    assert states[-1]["result"]["fare"] == rounds - 1
    seqs = [s["seq"] for s in states]
    assert seqs == sorted(seqs)  # the oldest were dropped, the order kept


def test_at_most_max_subscribers(make_hub: Callable[..., ScreenHub]) -> None:
    hub = make_hub()
    subs = [hub.subscribe() for _ in range(MAX_SUBSCRIBERS)]
    assert hub.subscribers == MAX_SUBSCRIBERS
    with pytest.raises(TooManySubscribers):
        hub.subscribe()
    assert hub.subscribers == MAX_SUBSCRIBERS
    subs.pop().close()
    assert hub.subscribers == MAX_SUBSCRIBERS - 1
    subs.append(hub.subscribe())
    for sub in subs:
        sub.close()
    assert hub.subscribers == 0
    subs[0].close()  # twice is harmless
    assert hub.subscribers == 0


def test_a_closed_subscription_gets_nothing_more(make_hub: Callable[..., ScreenHub]) -> None:
    hub = make_hub()
    sub = hub.subscribe()
    next_state(sub)
    sub.close()
    hub.presenting("card")
    assert sub.get(timeout=0) is None


def test_staff_call_events_in_order(make_hub: Callable[..., ScreenHub], clock: FixedClock) -> None:
    events = Events()
    hub = make_hub(on_event=events)
    sub = hub.subscribe()
    next_state(sub)

    assert hub.call_staff() == 1
    waiting = next_state(sub)
    assert waiting["call"]["state"] == "waiting"
    assert waiting["assist"] is True
    assert hub.assistance() == {
        "mode": True,
        "calls": [{"id": 1, "at": clock.now(), "state": "waiting"}],
    }
    assert hub.call_staff() == 1  # pressed again: the same call, no event
    clock.advance(7.4)
    assert hub.acknowledge_call(2) is False
    assert hub.acknowledge_call(1) is True
    assert next_state(sub)["call"]["state"] == "acknowledged"
    assert hub.acknowledge_call(1) is False
    assert hub.call_staff() == 2
    assert next_state(sub)["call"]["id"] == 2
    assert hub.cancel_call() is True
    assert next_state(sub)["call"] is None
    assert hub.cancel_call() is False
    assert drain(sub) == []

    assert events.seen == [
        ("call_staff", {"call": 1}),
        ("call_acknowledged", {"call": 1, "waited_seconds": 7}),
        ("call_staff", {"call": 2}),
        ("call_cancelled", {"call": 2}),
    ]


def test_cancelling_an_acknowledged_call_clears_it_without_an_event(
    make_hub: Callable[..., ScreenHub],
) -> None:
    events = Events()
    hub = make_hub(on_event=events)
    hub.call_staff()
    hub.acknowledge_call(1)
    assert hub.cancel_call() is True
    assert hub.state.call is None
    assert [kind for kind, _ in events.seen] == ["call_staff", "call_acknowledged"]


def test_an_event_sink_that_raises_does_not_break_the_call(
    make_hub: Callable[..., ScreenHub],
) -> None:
    def broken(kind: str, detail: dict[str, object]) -> None:
        raise OSError("outbox disk full")

    hub = make_hub(on_event=broken)
    sub = hub.subscribe()
    next_state(sub)
    assert hub.call_staff() == 1
    assert next_state(sub)["call"]["id"] == 1
    assert hub.acknowledge_call(1) is True
    assert next_state(sub)["call"]["state"] == "acknowledged"
    assert hub.call_staff() == 2
    assert hub.cancel_call() is True
    assert hub.state.call is None


def test_voice_urls_go_with_each_state(make_hub: Callable[..., ScreenHub]) -> None:
    asked: list[tuple[str, str]] = []

    def voice_url(lang: str, text: str) -> str:
        asked.append((lang, text))
        return f"/voice/{lang}-{len(text)}.wav"

    hub = make_hub(voice_url=voice_url)
    state = json.loads(hub.state_json())
    spoken = {lang: hub.state.spoken(lang) for lang in ("zh", "en")}
    assert state["voice"] == {lang: f"/voice/{lang}-{len(spoken[lang])}.wav" for lang in spoken}
    assert set(asked) == {("zh", spoken["zh"]), ("en", spoken["en"])}


def test_a_voice_hook_that_raises_gives_no_voice_but_still_publishes(
    make_hub: Callable[..., ScreenHub],
) -> None:
    def voice_url(lang: str, text: str) -> str | None:
        if lang == "en":
            raise RuntimeError("catalog gone")
        return "/voice/zh.wav"

    hub = make_hub(voice_url=voice_url)
    sub = hub.subscribe()
    assert next_state(sub)["voice"] == {"zh": "/voice/zh.wav", "en": None}
    hub.presenting("code")
    state = next_state(sub)
    assert state["phase"] == "busy"
    assert state["voice"] == {"zh": "/voice/zh.wav", "en": None}


def test_without_a_voice_hook_there_is_no_voice_key(make_hub: Callable[..., ScreenHub]) -> None:
    assert "voice" not in json.loads(make_hub().state_json())


def test_close_stops_the_timer_thread(make_hub: Callable[..., ScreenHub]) -> None:
    before = set(threading.enumerate())
    hub = make_hub()
    timers = [t for t in threading.enumerate() if t not in before and t.name == "onecard-screen"]
    assert len(timers) == 1
    assert timers[0].is_alive()
    hub.close()
    assert not timers[0].is_alive()
    hub.close()  # twice is harmless


def test_tick_after_the_time_out_returns_to_idle(
    make_hub: Callable[..., ScreenHub], clock: FixedClock
) -> None:
    settings = ScreenSettings(result_seconds=4.0, reset_seconds=30.0)
    hub = make_hub(settings=settings)
    hub.set_prefs(lang="en", large=True)
    hub.show(message_for(Outcome.ACCEPTED, "ok", fare=200, balance=1000))
    sub = hub.subscribe()
    assert next_state(sub)["phase"] == "result"
    clock.advance(4.0)
    hub.tick()
    state = next_state(sub)
    assert (state["phase"], state["result"]) == ("idle", None)
    assert state["prefs"]["lang"] == "en"
    clock.advance(26.0)
    hub.tick()
    assert next_state(sub)["prefs"] == {"lang": "zh", "large": False, "voice": True}
    assert hub.state.phase.value == "idle"


def test_the_timer_thread_applies_time_outs_by_itself(
    make_hub: Callable[..., ScreenHub], clock: FixedClock
) -> None:
    hub = make_hub(settings=ScreenSettings(busy_seconds=30.0))
    hub.presenting("card")
    sub = hub.subscribe()
    assert next_state(sub)["phase"] == "busy"
    clock.advance(30.0)
    # No tick() here: the timer thread wakes at least once a second and sees the time-out.
    assert next_state(sub)["phase"] == "idle"


def test_show_records_the_wall_time(make_hub: Callable[..., ScreenHub], clock: FixedClock) -> None:
    hub = make_hub()
    hub.show(message_for(Outcome.ACCEPTED, "ok"))
    assert json.loads(hub.state_json())["result"]["decided_at"] == clock.now()
