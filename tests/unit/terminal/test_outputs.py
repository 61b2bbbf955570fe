"""Outputs: holder messages for every reason code, console lines, recording, fan-out."""

from __future__ import annotations

import io

import pytest

from terminal.errors import RelayBoardError
from terminal.outputs import (
    MESSAGES,
    SIGNALS,
    ConsoleOutputs,
    HolderMessage,
    MultiOutputs,
    Outcome,
    Outputs,
    RecordingOutputs,
    display_width,
    fit,
    message_for,
)
from terminal.policy import Reason

RUNTIME_CODES = (
    "passback",
    "repeat_tap",
    "insufficient_balance",
    "torn_purchase_recovered",
    "pin_wrong",
    "pin_blocked",
    "journal_full",
    "card_error",
    "replayed",
    "expired_code",
)
ALL_CODES = tuple(r.value for r in Reason) + RUNTIME_CODES


def _has_cjk(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def _has_latin(text: str) -> bool:
    return any(ch.isascii() and ch.isalpha() for ch in text)


def test_every_policy_reason_and_runtime_code_has_a_message():
    assert set(ALL_CODES) <= set(MESSAGES)


@pytest.mark.parametrize("code", ALL_CODES)
def test_message_in_both_languages(code):
    outcome = Outcome.ACCEPTED if code == "ok" else Outcome.REFUSED
    both = message_for(outcome, code)
    zh = message_for(outcome, code, lang="zh")
    en = message_for(outcome, code, lang="en")
    assert both.outcome is outcome
    assert _has_cjk(zh.title) and not _has_latin(zh.title)
    assert _has_latin(en.title) and not _has_cjk(en.title)
    assert both.title == f"{zh.title} / {en.title}"
    if code != "ok":
        # A refusal always says what to do next, in both languages.
        assert _has_cjk(zh.detail) and _has_latin(en.detail)
        assert both.detail == f"{zh.detail} / {en.detail}"


def test_hotlisted_message():
    message = message_for(Outcome.REFUSED, "hotlisted")
    assert message.title == "此卡已挂失 / Card reported lost"
    assert message.detail == "请到服务窗口 / Please go to the service desk"
    assert message.fare is None and message.balance is None


def test_accepted_with_fare_and_balance():
    message = message_for(Outcome.ACCEPTED, "ok", fare=200, balance=4805)
    assert message.title == "请通行 / Please pass"
    assert message.detail == "扣费 2.00 元，余额 48.05 元 / Fare 2.00 yuan, balance 48.05 yuan"
    assert (message.fare, message.balance) == (200, 4805)


def test_free_entry():
    assert message_for(Outcome.ACCEPTED, "ok", fare=0, lang="en").detail == "Free"
    assert message_for(Outcome.ACCEPTED, "ok").detail == ""


def test_insufficient_balance_says_what_to_do_then_the_balance():
    message = message_for(Outcome.REFUSED, "insufficient_balance", balance=50, lang="en")
    assert message.detail == "Please top up and try again, balance 0.50 yuan"


def test_unknown_code_gets_a_generic_message_not_an_error():
    message = message_for(Outcome.ERROR, "no_such_reason")
    assert message.outcome is Outcome.ERROR
    assert _has_cjk(message.title) and _has_latin(message.title)


def test_bad_language_is_refused():
    with pytest.raises(ValueError):
        message_for(Outcome.ACCEPTED, "ok", lang="fr")


# --- console ---------------------------------------------------------------------------------


def test_console_prints_one_line_per_action():
    stream = io.StringIO()
    console = ConsoleOutputs(stream=stream)
    console.open_gate()
    console.indicate(Outcome.ACCEPTED)
    console.show(HolderMessage(Outcome.ACCEPTED, "请通行 / Please pass", "free entry (elderly)"))
    console.indicate(Outcome.REFUSED)
    console.show(message_for(Outcome.REFUSED, "hotlisted"))
    console.close()
    assert stream.getvalue().splitlines() == [
        "[GATE OPEN]",
        "[LAMP GREEN] beep 100 ms",
        "[ACCEPTED] 请通行 / Please pass - free entry (elderly)",
        "[LAMP RED] beep 400 ms",
        "[REFUSED] 此卡已挂失 / Card reported lost - 请到服务窗口 / Please go to the service desk",
    ]


def test_console_cuts_lines_to_the_width_in_columns():
    stream = io.StringIO()
    console = ConsoleOutputs(stream=stream, width=20)
    console.show(message_for(Outcome.REFUSED, "hotlisted"))
    (line,) = stream.getvalue().splitlines()
    assert line.endswith("…")
    assert display_width(line) <= 20


def test_fit_counts_wide_characters_twice():
    assert display_width("此卡ab") == 6
    assert fit("此卡已挂失", 5) == "此卡…"
    assert fit("short", None) == "short"
    assert fit("short", 5) == "short"


def test_every_outcome_has_a_signal():
    assert set(SIGNALS) == set(Outcome)


# --- recording and fan-out -------------------------------------------------------------------


def test_recording_keeps_actions_in_order():
    recording = RecordingOutputs()
    message = message_for(Outcome.ACCEPTED, "ok", fare=0)
    recording.indicate(Outcome.ACCEPTED)
    recording.open_gate()
    recording.show(message)
    assert [a.kind for a in recording.actions] == ["indicate", "open_gate", "show"]
    assert recording.gate_openings == 1
    assert recording.outcomes == [Outcome.ACCEPTED]
    assert recording.last_message == message
    recording.close()
    assert recording.closed
    recording.clear()
    assert recording.actions == [] and recording.last_message is None


class _Broken:
    def open_gate(self) -> None:
        raise RelayBoardError("relay board is gone")

    def indicate(self, outcome: Outcome) -> None:
        pass

    def show(self, message: HolderMessage) -> None:
        pass

    def close(self) -> None:
        pass


def test_multi_outputs_fans_out():
    first, second = RecordingOutputs(), RecordingOutputs()
    outputs: Outputs = MultiOutputs(first, second)
    outputs.open_gate()
    outputs.indicate(Outcome.REFUSED)
    outputs.show(message_for(Outcome.REFUSED, "card_expired"))
    outputs.close()
    assert first.actions == second.actions
    assert [a.kind for a in first.actions] == ["open_gate", "indicate", "show", "close"]


def test_multi_outputs_drives_all_then_raises_the_first_failure():
    recording = RecordingOutputs()
    outputs = MultiOutputs(_Broken(), recording)
    with pytest.raises(RelayBoardError):
        outputs.open_gate()
    assert recording.gate_openings == 1
