"""The holder screen's state machine (terminal/screen/model.py): every transition and time-out
with explicit monotonic times, the texts for every reason code, what personal data may show,
and random sequences of events and time steps."""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from terminal.outputs import MESSAGES, HolderMessage, Outcome, message_for
from terminal.screen.model import (
    ASSIST_TEXT,
    BUSY,
    CALL_TEXTS,
    LANGS,
    PROMPT_DETAIL,
    CallState,
    Phase,
    Prefs,
    ScreenModel,
    ScreenSettings,
    Texts,
    all_prompt_texts,
    prompt_for,
)
from terminal.wire.personal import DENIED_EXTRA_KEYS, DENIED_KEY_WORDS

WALL = 1_795_000_000.0

SETTINGS = ScreenSettings(
    result_seconds=4.0,
    assist_factor=3.0,
    reset_seconds=30.0,
    assist_idle_seconds=120.0,
    busy_seconds=30.0,
    acknowledged_seconds=60.0,
)


def model(now: float = 0.0, **changes: Any) -> ScreenModel:
    return ScreenModel(replace(SETTINGS, **changes), now)


def message(
    reason: str = "ok",
    outcome: Outcome = Outcome.ACCEPTED,
    fare: int | None = None,
    balance: int | None = None,
    holder: str | None = None,
) -> HolderMessage:
    return replace(message_for(outcome, reason, fare, balance), holder=holder)


def yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


# --- start and prompts ----------------------------------------------------------------------


def test_starts_idle_with_the_terminal_prompt_and_defaults() -> None:
    m = model(contactless=True, contact=False, code=True, profile="gate")
    s = m.state
    assert s.seq == 1
    assert s.phase is Phase.IDLE
    assert s.prompt == prompt_for(True, False, True)
    assert s.prompt_detail == PROMPT_DETAIL["gate"]
    assert (s.busy, s.result, s.call, s.assist) == (None, None, None, False)
    assert s.prefs == Prefs()
    assert m.next_deadline(0.0) is None
    assert m.tick(1e9) is False
    assert m.state.seq == 1


def test_unknown_default_language_is_refused() -> None:
    with pytest.raises(ValueError):
        model(defaults=Prefs(lang="fr"))


FORMS = list(itertools.product((False, True), repeat=3))


@pytest.mark.parametrize(("contactless", "contact", "code"), FORMS)
def test_prompt_names_only_the_forms_the_terminal_takes(
    contactless: bool, contact: bool, code: bool
) -> None:
    prompt = prompt_for(contactless, contact, code)
    assert prompt.zh and prompt.en
    en = prompt.en.lower()
    if not any((contactless, contact, code)):
        assert prompt == Texts("终端暂停服务", "Terminal out of service")
        return
    assert ("tap" in en) == contactless
    assert ("insert" in en) == contact
    assert ("scan" in en) == code
    assert ("扫" in prompt.zh) == code
    assert model(contactless=contactless, contact=contact, code=code).state.prompt == prompt


def test_every_form_combination_has_its_own_prompt() -> None:
    prompts = [prompt_for(*forms) for forms in FORMS]
    assert len(set(prompts)) == len(FORMS)
    assert set(prompts) <= set(all_prompt_texts())


@pytest.mark.parametrize("profile", sorted(PROMPT_DETAIL))
def test_prompt_detail_per_profile(profile: str) -> None:
    assert model(profile=profile).state.prompt_detail == PROMPT_DETAIL[profile]


def test_unknown_profile_has_an_empty_prompt_detail() -> None:
    assert model(profile="kiosk").state.prompt_detail == Texts("", "")


# --- busy -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "text"), [*BUSY.items(), ("bogus", BUSY["code"])])
def test_present_makes_the_screen_busy(kind: str, text: Texts) -> None:
    m = model()
    assert m.present(kind, 10.0) is True
    s = m.state
    assert (s.phase, s.busy, s.seq) == (Phase.BUSY, text, 2)
    assert s.to_json()["busy"] == text.to_json()


def test_busy_times_out_to_the_prompt() -> None:
    m = model()
    m.present("card", 10.0)
    assert m.next_deadline(10.0) == 40.0
    assert m.tick(39.999) is False
    assert m.state.phase is Phase.BUSY
    assert m.tick(40.0) is True
    s = m.state
    assert (s.phase, s.busy, s.seq) == (Phase.IDLE, None, 3)
    assert m.next_deadline(40.0) is None


def test_outcome_ends_busy() -> None:
    m = model()
    m.present("code", 0.0)
    m.show(message(), 1.0, WALL)
    assert m.state.phase is Phase.RESULT
    assert m.next_deadline(1.0) == 5.0  # the result's time-out, not the busy one's (30)


# --- results --------------------------------------------------------------------------------


def test_result_shows_until_its_time_out() -> None:
    m = model()
    assert m.show(message(), 10.0, WALL) is True
    s = m.state
    assert s.phase is Phase.RESULT
    assert s.result is not None
    assert (s.result.reason, s.result.decided_at) == ("ok", WALL)
    assert m.next_deadline(10.0) == 14.0
    assert m.tick(13.99) is False
    assert m.tick(14.0) is True
    assert (m.state.phase, m.state.result) == (Phase.IDLE, None)


def test_a_new_result_replaces_the_showing_one_and_restarts_the_time_out() -> None:
    m = model()
    m.show(message(), 0.0, WALL)
    m.show(message("hotlisted", Outcome.REFUSED), 3.0, WALL + 3)
    result = m.state.result
    assert result is not None
    assert (result.reason, result.outcome) == ("hotlisted", Outcome.REFUSED)
    assert m.tick(4.0) is False
    assert m.tick(7.0) is True


@pytest.mark.parametrize(
    ("reason", "outcome"), list(itertools.product(sorted(MESSAGES), list(Outcome)))
)
def test_every_reason_code_renders_in_both_languages(reason: str, outcome: Outcome) -> None:
    m = model()
    m.show(message(reason, outcome), 0.0, WALL)
    result = m.state.result
    assert result is not None
    assert result.outcome is outcome
    assert result.reason == reason
    assert result.title == Texts(MESSAGES[reason].title_zh, MESSAGES[reason].title_en)
    assert result.title.zh.strip() and result.title.en.strip()
    out = m.state.to_json()["result"]
    assert out["outcome"] == outcome.value
    assert out["title"] == {"zh": result.title.zh, "en": result.title.en}
    for lang in LANGS:
        assert getattr(result.title, lang) in m.state.spoken(lang).rstrip("。.")


def test_unknown_reason_code_still_has_titles() -> None:
    m = model()
    m.show(message("no_such_reason", Outcome.REFUSED), 0.0, WALL)
    result = m.state.result
    assert result is not None
    assert result.title.zh and result.title.en
    assert result.outcome is Outcome.REFUSED


def test_the_screen_renders_both_languages_whatever_the_message_was_made_in() -> None:
    m = model()
    english_only = message_for(Outcome.REFUSED, "hotlisted", lang="en")
    m.show(english_only, 0.0, WALL)
    result = m.state.result
    assert result is not None
    assert result.title == Texts("此卡已挂失", "Card reported lost")


@settings(max_examples=60, deadline=None)
@given(
    outcome=st.sampled_from(list(Outcome)),
    reason=st.sampled_from(["ok", "insufficient_balance", "repeat_tap", "pay_later"]),
    fare=st.integers(1, 10_000_000),
    balance=st.integers(0, 10_000_000),
)
def test_amounts_appear_in_the_details(
    outcome: Outcome, reason: str, fare: int, balance: int
) -> None:
    m = model()
    m.show(message(reason, outcome, fare, balance), 0.0, WALL)
    result = m.state.result
    assert result is not None
    assert (result.fare, result.balance) == (fare, balance)
    for detail in (result.detail.zh, result.detail.en):
        assert yuan(fare) in detail
        assert yuan(balance) in detail
    assert "元" in result.detail.zh
    assert "yuan" in result.detail.en
    out = m.state.to_json()["result"]
    assert (out["fare"], out["balance"]) == (fare, balance)


def test_a_free_ride_says_free() -> None:
    m = model()
    m.show(message("ok", fare=0, balance=150), 0.0, WALL)
    result = m.state.result
    assert result is not None
    assert "免费" in result.detail.zh and "1.50" in result.detail.zh
    assert "Free" in result.detail.en and "1.50" in result.detail.en


def test_masked_name_is_hidden_unless_show_holder() -> None:
    hidden = model(show_holder=False)
    hidden.show(message(holder="张*"), 0.0, WALL)
    assert hidden.state.result is not None
    assert hidden.state.result.holder is None
    assert hidden.state.to_json()["result"]["holder"] is None
    assert "张" not in json.dumps(hidden.state.to_json(), ensure_ascii=False)

    shown = model(show_holder=True, profile="counter")
    shown.show(message(holder="张*"), 0.0, WALL)
    assert shown.state.result is not None
    assert shown.state.result.holder == "张*"
    assert shown.state.to_json()["result"]["holder"] == "张*"


# --- the holder's choices -------------------------------------------------------------------


def test_prefs_change_and_an_unchanged_press_is_no_change() -> None:
    m = model()
    assert m.set_prefs(1.0, lang="en") is True
    assert m.state.prefs == Prefs(lang="en")
    assert m.state.seq == 2
    assert m.set_prefs(2.0, lang="en") is False
    assert m.set_prefs(2.0) is False
    assert m.state.seq == 2
    assert m.set_prefs(3.0, large=True, voice=False) is True
    assert m.state.prefs == Prefs(lang="en", large=True, voice=False)
    assert m.state.to_json()["prefs"] == {"lang": "en", "large": True, "voice": False}


@pytest.mark.parametrize("lang", ["fr", "zh+en", "", "EN"])
def test_unknown_language_is_refused_and_changes_nothing(lang: str) -> None:
    m = model()
    with pytest.raises(ValueError):
        m.set_prefs(1.0, lang=lang)
    assert (m.state.prefs, m.state.seq) == (Prefs(), 1)


def test_prefs_return_to_defaults_after_reset_seconds_idle() -> None:
    m = model()
    m.set_prefs(0.0, lang="en", large=True)
    assert m.next_deadline(0.0) == 30.0
    assert m.tick(29.99) is False
    assert m.state.prefs.lang == "en"
    assert m.tick(30.0) is True
    assert m.state.prefs == Prefs()
    assert m.next_deadline(30.0) is None


def test_prefs_return_to_the_terminals_own_defaults() -> None:
    defaults = Prefs(lang="en", large=True, voice=False)
    m = model(defaults=defaults)
    assert m.state.prefs == defaults
    m.set_prefs(0.0, lang="zh", large=False, voice=True)
    m.tick(30.0)
    assert m.state.prefs == defaults


def test_prefs_are_not_reset_while_a_result_shows() -> None:
    m = model(result_seconds=100.0)
    m.set_prefs(0.0, lang="en")
    m.show(message(), 1.0, WALL)
    assert m.next_deadline(1.0) == 101.0  # the result's; no reset pending while it shows
    assert m.tick(60.0) is False
    assert m.state.prefs.lang == "en"
    assert m.tick(101.0) is True  # the result ends; the reset was due: both at once
    assert (m.state.phase, m.state.prefs) == (Phase.IDLE, Prefs())


def test_prefs_are_not_reset_while_busy() -> None:
    m = model(busy_seconds=100.0)
    m.set_prefs(0.0, lang="en")
    m.present("card", 1.0)
    assert m.next_deadline(1.0) == 101.0
    assert m.tick(50.0) is False
    assert m.state.prefs.lang == "en"


def test_the_reset_counts_from_the_last_activity() -> None:
    m = model()
    m.set_prefs(0.0, lang="en")
    m.show(message(), 20.0, WALL)  # the result counts as activity
    assert m.tick(24.0) is True  # result over
    assert m.state.prefs.lang == "en"
    assert m.next_deadline(24.0) == 50.0
    assert m.tick(49.0) is False
    assert m.tick(50.0) is True
    assert m.state.prefs == Prefs()


def test_time_passing_is_not_activity() -> None:
    m = model(assist_idle_seconds=10.0)
    m.set_prefs(0.0, lang="en")
    m.set_assist(True, 0.0)
    assert m.tick(10.0) is True  # assistance off: a change, but not the holder's
    assert m.next_deadline(10.0) == 30.0  # the reset still counts from 0


# --- assistance -----------------------------------------------------------------------------


def test_assistance_forces_large_print_and_voice_and_ends_by_itself() -> None:
    m = model(defaults=Prefs(voice=False))
    assert m.set_assist(True, 0.0) is True
    s = m.state
    assert s.assist is True
    assert (s.prefs.large, s.prefs.voice) == (True, True)
    assert s.to_json()["assist_text"] == ASSIST_TEXT.to_json()
    assert m.set_assist(True, 0.0) is False
    assert m.next_deadline(0.0) == 120.0
    assert m.tick(119.0) is False
    assert m.tick(120.0) is True
    s = m.state
    assert s.assist is False
    assert s.prefs == Prefs(voice=False)
    assert s.to_json()["assist_text"] is None


def test_activity_keeps_assistance_on() -> None:
    m = model()
    m.set_assist(True, 0.0)
    assert m.set_prefs(100.0) is False  # a press that changes nothing still counts
    assert m.tick(120.0) is False
    assert m.state.assist is True
    assert m.next_deadline(120.0) == 220.0
    assert m.tick(220.0) is True
    assert m.state.assist is False


def test_assistance_off_by_hand() -> None:
    m = model()
    m.set_assist(True, 0.0)
    assert m.set_assist(False, 1.0) is True
    assert m.state.assist is False
    assert m.next_deadline(1.0) is None


def test_a_result_lasts_longer_in_assistance_mode() -> None:
    m = model()
    m.set_assist(True, 0.0)
    m.show(message(), 1.0, WALL)
    assert m.next_deadline(1.0) == 13.0
    assert m.tick(12.9) is False
    assert m.tick(13.0) is True
    assert m.state.phase is Phase.IDLE


def test_assistance_extends_an_already_showing_result() -> None:
    m = model()
    m.show(message(), 0.0, WALL)
    assert m.set_assist(True, 2.0) is True
    assert m.next_deadline(2.0) == 14.0
    assert m.tick(4.0) is False
    assert m.state.phase is Phase.RESULT
    assert m.tick(14.0) is True
    assert m.state.phase is Phase.IDLE


def test_assistance_never_shortens_a_result() -> None:
    m = model(result_seconds=100.0, assist_factor=0.5)
    m.show(message(), 0.0, WALL)
    m.set_assist(True, 10.0)  # 10 + 100 * 0.5 would end it sooner
    assert m.next_deadline(10.0) == 100.0


# --- staff calls ----------------------------------------------------------------------------


def test_call_staff_waits_and_a_second_press_does_not_call_again() -> None:
    m = model()
    call = m.call_staff(5.0, WALL)
    assert call is not None
    assert (call.id, call.at, call.state, call.changed) == (1, WALL, CallState.WAITING, 5.0)
    s = m.state
    assert (s.call, s.assist, s.seq) == (call, True, 2)
    assert s.to_json()["call"] == {
        "id": 1,
        "at": WALL,
        "state": "waiting",
        "text": CALL_TEXTS[CallState.WAITING].to_json(),
    }
    assert m.call_staff(6.0, WALL + 1) is None
    assert (m.state.call, m.state.seq) == (call, 2)


def test_acknowledge_only_the_waiting_call() -> None:
    m = model()
    m.call_staff(0.0, WALL)
    assert m.acknowledge(2, 1.0) is False
    assert m.acknowledge(0, 1.0) is False
    assert m.state.seq == 2
    assert m.acknowledge(1, 3.0) is True
    call = m.state.call
    assert call is not None
    assert (call.state, call.changed, call.at) == (CallState.ACKNOWLEDGED, 3.0, WALL)
    assert m.state.to_json()["call"]["text"] == CALL_TEXTS[CallState.ACKNOWLEDGED].to_json()
    assert m.acknowledge(1, 4.0) is False


def test_acknowledge_without_a_call() -> None:
    assert model().acknowledge(1, 0.0) is False


def test_acknowledged_call_clears_after_acknowledged_seconds() -> None:
    m = model(assist_idle_seconds=1000.0)
    m.call_staff(0.0, WALL)
    m.acknowledge(1, 10.0)
    assert m.next_deadline(10.0) == 70.0
    assert m.tick(69.0) is False
    assert m.tick(70.0) is True
    assert m.state.call is None
    assert m.state.assist is True  # assistance keeps its own time-out


def test_a_waiting_call_has_no_time_out() -> None:
    m = model()
    m.call_staff(0.0, WALL)
    m.set_assist(False, 0.0)
    assert m.next_deadline(0.0) is None
    assert m.tick(1e6) is False
    call = m.state.call
    assert call is not None
    assert call.state is CallState.WAITING


def test_a_new_call_after_an_acknowledged_one_gets_a_new_id() -> None:
    m = model()
    m.call_staff(0.0, WALL)
    m.acknowledge(1, 1.0)
    call = m.call_staff(2.0, WALL + 2)
    assert call is not None
    assert (call.id, call.state) == (2, CallState.WAITING)


def test_cancel_call() -> None:
    m = model()
    assert m.cancel_call(0.0) is None
    assert m.state.seq == 1
    first = m.call_staff(0.0, WALL)
    cancelled = m.cancel_call(1.0)
    assert cancelled == first
    assert (m.state.call, m.state.seq) == (None, 3)
    assert m.cancel_call(2.0) is None
    again = m.call_staff(3.0, WALL)
    assert again is not None
    assert again.id == 2  # ids are never reused


# --- what is said ---------------------------------------------------------------------------


def test_spoken_follows_the_phase() -> None:
    m = model()
    assert m.state.spoken("en") == "Tap your card or scan your e-card code."
    m.present("card", 0.0)
    assert m.state.spoken("zh") == "正在读卡，请勿移开。"
    m.show(message("hotlisted", Outcome.REFUSED), 1.0, WALL)
    assert m.state.spoken("en") == "Card reported lost. Please go to the service desk."
    assert m.state.spoken("zh") == "此卡已挂失，请到服务窗口。"


# --- personal data --------------------------------------------------------------------------

ALLOWED_KEYS = {
    "result.holder",  # the masked name, only with show_holder
    "complaint.phone",  # the acceptance point's complaint line, from terminal.toml
}


def key_paths(data: object, where: str = "") -> Iterator[str]:
    if isinstance(data, dict):
        for key, value in data.items():
            path = f"{where}.{key}" if where else key
            yield path
            yield from key_paths(value, path)
    elif isinstance(data, list):
        for item in data:
            yield from key_paths(item, where)


def personal(key: str) -> bool:
    words = [w for w in re.split(r"[^0-9a-z]+", key.lower()) if w]
    return "".join(words) in DENIED_EXTRA_KEYS or any(w in DENIED_KEY_WORDS for w in words)


def test_the_key_check_would_catch_personal_keys() -> None:
    assert personal("name")
    assert personal("holder_name")
    assert personal("id_number")
    assert not personal("reason")


def test_to_json_names_no_personal_data_but_the_masked_holder() -> None:
    m = model(show_holder=True, profile="counter", complaint_phone="12333")
    m.show(message("ok", fare=100, balance=900, holder="张*"), 0.0, WALL)
    m.set_assist(True, 0.0)
    m.call_staff(0.0, WALL)
    out = m.state.to_json()
    paths = set(key_paths(out))
    assert {"result.holder", "call.id", "complaint.phone"} <= paths
    assert sorted(p for p in paths if personal(p.rsplit(".", 1)[-1])) == sorted(ALLOWED_KEYS)


# --- random sequences -----------------------------------------------------------------------

EVENTS = st.one_of(
    st.tuples(st.just("present"), st.sampled_from(["card", "code", "pin", "other"])),
    st.tuples(
        st.just("show"),
        st.sampled_from([*MESSAGES, "unknown"]),
        st.sampled_from(list(Outcome)),
        st.none() | st.integers(0, 100_000),
        st.none() | st.integers(0, 100_000),
    ),
    st.tuples(
        st.just("prefs"),
        st.none() | st.sampled_from(LANGS),
        st.none() | st.booleans(),
        st.none() | st.booleans(),
    ),
    st.tuples(st.just("assist"), st.booleans()),
    st.tuples(st.just("call")),
    st.tuples(st.just("ack"), st.integers(0, 5)),
    st.tuples(st.just("cancel")),
    st.tuples(st.just("tick")),
    st.tuples(st.just("deadline")),
)
STEPS = st.lists(
    st.tuples(EVENTS, st.floats(0.0, 200.0, allow_nan=False, allow_infinity=False)),
    max_size=40,
)
SCREENS = st.builds(
    ScreenSettings,
    defaults=st.builds(Prefs, lang=st.sampled_from(LANGS), large=st.booleans()),
    show_holder=st.booleans(),
    result_seconds=st.floats(0.5, 60.0),
    assist_factor=st.floats(1.0, 5.0),
    reset_seconds=st.floats(1.0, 120.0),
    assist_idle_seconds=st.floats(1.0, 300.0),
    busy_seconds=st.floats(1.0, 60.0),
    acknowledged_seconds=st.floats(1.0, 120.0),
)


def apply(m: ScreenModel, event: tuple[Any, ...], now: float) -> tuple[bool, float]:
    """Apply one event at ``now``: (changed, the time it ended at)."""
    kind = event[0]
    if kind == "present":
        return m.present(event[1], now), now
    if kind == "show":
        _, reason, outcome, fare, balance = event
        return m.show(message(reason, outcome, fare, balance, holder="李*"), now, WALL), now
    if kind == "prefs":
        return m.set_prefs(now, lang=event[1], large=event[2], voice=event[3]), now
    if kind == "assist":
        return m.set_assist(event[1], now), now
    if kind == "call":
        return m.call_staff(now, WALL) is not None, now
    if kind == "ack":
        return m.acknowledge(event[1], now), now
    if kind == "cancel":
        return m.cancel_call(now) is not None, now
    if kind == "tick":
        return m.tick(now), now
    # "deadline": nothing happens just before the next deadline; something at it.
    deadline = m.next_deadline(now)
    if deadline is None:
        assert m.tick(now) is False
        return False, now
    before = math.nextafter(deadline, -math.inf)
    if before >= now:
        assert m.tick(before) is False
        now = deadline
    changed = m.tick(now)
    assert changed is True
    return changed, now


@settings(max_examples=300, deadline=None)
@given(screen=SCREENS, steps=STEPS, start=st.floats(0.0, 1e6))
def test_random_sequences_keep_the_model_consistent(
    screen: ScreenSettings, steps: list[tuple[tuple[Any, ...], float]], start: float
) -> None:
    m = ScreenModel(screen, start)
    now = start
    for event, step in steps:
        now += step
        before = m.state
        changed, now = apply(m, event, now)
        after = m.state
        if changed:
            assert after.seq > before.seq
        else:
            assert after == before
        if event[0] in ("tick", "deadline"):
            # Whatever was due is done: nothing pending at or before now.
            pending = m.next_deadline(now)
            assert pending is None or pending > now
        out = after.to_json()
        json.dumps(out)
        assert out["seq"] == after.seq
        assert (out["result"] is None) == (after.phase is not Phase.RESULT)
        assert (out["busy"] is None) == (after.phase is not Phase.BUSY)
        if not screen.show_holder and out["result"] is not None:
            assert out["result"]["holder"] is None
        if after.assist:
            assert after.prefs.large and after.prefs.voice


def test_a_concession_card_is_named_first_and_a_low_balance_said_last() -> None:
    m = model()
    told = replace(
        message("ok", Outcome.ACCEPTED, fare=100, balance=300), concession="4", notice="low_balance"
    )
    m.show(told, 1.0, 1.0)
    state = m.state
    assert state.result is not None and state.result.concession == Texts("老年卡", "Senior card")
    said = state.spoken("zh")
    assert said.startswith("老年卡") and said.rstrip("。").endswith("余额不足，请及时充值")
    assert state.to_json()["result"]["concession"] == {"zh": "老年卡", "en": "Senior card"}


def test_an_adult_card_is_not_named_and_a_shortfall_is_said() -> None:
    m = model()
    told = replace(
        message("insufficient_balance", Outcome.REFUSED, balance=120), concession="3", shortfall=180
    )
    m.show(told, 1.0, 1.0)
    state = m.state
    assert state.result is not None and state.result.concession is None
    assert "还差 1.80 元" in state.spoken("zh") and "1.80 yuan short" in state.spoken("en")


def test_a_venues_own_words_are_the_title_not_a_repeat() -> None:
    m = model()
    told = replace(
        message("patron_blocked:too_many_items_overdue", Outcome.REFUSED),
        note=("有逾期未还图书，请先归还", "Overdue items: please return them first"),
    )
    m.show(told, 1.0, 1.0)
    state = m.state
    assert state.result is not None
    assert state.result.title == Texts(
        "有逾期未还图书，请先归还", "Overdue items: please return them first"
    )
    assert state.spoken("zh") == "有逾期未还图书，请先归还。"
