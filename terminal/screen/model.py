"""What the holder screen shows, as a state machine with no I/O (docs/screen.md).

:class:`ScreenModel` takes the runtime's events - a credential presented, a transaction's
message, the holder's buttons (language, large print, voice, assistance, call staff), the
operator acknowledging a call - and the passing of time (:meth:`ScreenModel.tick`, with a
monotonic ``now`` the caller supplies), and keeps the one :class:`ScreenState` every display
renders. :meth:`ScreenState.to_json` is exactly what the page receives.

Time-outs are the model's: a result stays up for ``result_seconds`` (three times longer in
assistance mode, article 15), the holder's choices (English, large print, voice) return to
the terminal's defaults once the screen has been idle for ``reset_seconds`` - the next holder
is a different person - and assistance mode ends after ``assist_idle_seconds`` without use.

No personal data enters the state except the masked name a counter may show
(``show_holder``); every text comes from reason codes (:mod:`terminal.outputs`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any

from terminal.outputs import CONCESSION_NAMES, NOTICES, HolderMessage, Outcome, message_for
from terminal.screen.voice import spoken_text

LANGS = ("zh", "en")


class Phase(enum.Enum):
    """What the screen is doing: waiting for a holder, working on a credential, or showing
    the outcome."""

    IDLE = "idle"
    BUSY = "busy"
    RESULT = "result"


class CallState(enum.Enum):
    WAITING = "waiting"
    ACKNOWLEDGED = "acknowledged"


@dataclass(frozen=True)
class Texts:
    """One text in both screen languages."""

    zh: str
    en: str

    def to_json(self) -> dict[str, str]:
        return {"zh": self.zh, "en": self.en}


def _texts(table: dict[str, tuple[str, str]], code: str | None) -> Texts | None:
    pair = table.get(code) if code is not None else None
    return Texts(*pair) if pair is not None else None


def _notice(message: HolderMessage) -> Texts | None:
    """The extra prompt: how much is missing for the fare, or the low-balance prompt."""
    shortfall = getattr(message, "shortfall", None)
    if shortfall:
        yuan = f"{shortfall // 100}.{shortfall % 100:02d}"
        return Texts(f"还差 {yuan} 元", f"{yuan} yuan short")
    return _texts(NOTICES, getattr(message, "notice", None))


# What to do, by the credential forms the terminal takes. The prompt names only what this
# terminal accepts: a validator without a scanner must not ask for a code.
_PROMPTS: dict[tuple[bool, bool, bool], Texts] = {
    # (contactless card, contact card, code)
    (True, False, False): Texts("请刷社保卡", "Tap your social security card"),
    (False, True, False): Texts("请插入社保卡", "Insert your social security card"),
    (True, True, False): Texts("请刷卡或插卡", "Tap or insert your card"),
    (True, False, True): Texts(
        "请刷社保卡或扫电子社保卡", "Tap your card or scan your e-card code"
    ),
    (False, True, True): Texts("请插卡或扫电子社保卡", "Insert your card or scan your e-card code"),
    (True, True, True): Texts("请刷卡、插卡或扫码", "Tap, insert or scan your card"),
    (False, False, True): Texts("请扫电子社保卡二维码", "Scan your e-card code"),
}
_NO_INPUT = Texts("终端暂停服务", "Terminal out of service")

PROMPT_DETAIL: dict[str, Texts] = {
    "gate": Texts("通行请看屏幕提示", "Watch this screen for the result"),
    "validator": Texts("上车请刷卡", "Tap once when you board"),
    "counter": Texts(
        "插卡后请按提示输入密码", "After inserting the card, enter your PIN when asked"
    ),
}

BUSY = {
    "card": Texts("正在读卡，请勿移开", "Reading your card - keep it still"),
    "code": Texts("正在验证，请稍候", "Checking your code - please wait"),
    "pin": Texts("请在密码键盘上输入密码", "Enter your PIN on the keypad"),
}

CALL_TEXTS = {
    CallState.WAITING: Texts("已呼叫工作人员，请稍候", "Staff called - please wait"),
    CallState.ACKNOWLEDGED: Texts("工作人员正在赶来", "Staff are on the way"),
}

ASSIST_TEXT = Texts(
    "协助模式：字体放大，语音提示，显示时间延长",
    "Assistance on: large text, spoken prompts, more time",
)


def prompt_for(contactless: bool, contact: bool, code: bool) -> Texts:
    """The idle prompt for a terminal taking the given credential forms."""
    return _PROMPTS.get((contactless, contact, code), _NO_INPUT)


def all_prompt_texts() -> list[Texts]:
    """Every fixed text of the screen that is spoken (for pre-rendered voices)."""
    return [
        *_PROMPTS.values(),
        _NO_INPUT,
        *BUSY.values(),
        *CALL_TEXTS.values(),
        ASSIST_TEXT,
    ]


@dataclass(frozen=True)
class Prefs:
    """The holder's choices on the screen."""

    lang: str = "zh"
    large: bool = False
    voice: bool = True


@dataclass(frozen=True)
class ScreenSettings:
    """The terminal's side of the screen: from ``[screen]`` of terminal.toml."""

    profile: str = "gate"
    contactless: bool = True
    contact: bool = False
    code: bool = True
    defaults: Prefs = field(default_factory=Prefs)
    result_seconds: float = 4.0
    assist_factor: float = 3.0
    """Result time-out multiplier in assistance mode."""
    reset_seconds: float = 30.0
    assist_idle_seconds: float = 120.0
    busy_seconds: float = 30.0
    """A busy screen that no outcome follows (a transaction that failed unexpectedly) goes
    back to the prompt after this long rather than saying "please wait" forever."""
    acknowledged_seconds: float = 60.0
    """How long "staff are on the way" stays up after the operator acknowledged."""
    show_holder: bool = False
    """Show the masked name a counter profile passes (``张*``); never anything else."""
    complaint_phone: str = ""
    complaint_url: str = ""


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    reason: str
    title: Texts
    detail: Texts
    fare: int | None
    balance: int | None
    holder: str | None
    decided_at: float
    """Wall time (epoch seconds) the runtime told the screen: decision-to-screen figures."""
    concession: Texts | None = None
    """The card's concession (老年卡 / Senior card), said first and with its own tone."""
    notice: Texts | None = None
    """An extra prompt (low balance), said last."""


@dataclass(frozen=True)
class StaffCall:
    id: int
    at: float
    """Wall time of the call."""
    state: CallState
    changed: float
    """Monotonic time of the last change."""


@dataclass(frozen=True)
class ScreenState:
    """Everything a display renders. ``seq`` grows with every change."""

    seq: int
    phase: Phase
    prompt: Texts
    prompt_detail: Texts
    busy: Texts | None
    result: Result | None
    prefs: Prefs
    assist: bool
    call: StaffCall | None
    complaint_phone: str
    complaint_url: str

    def spoken(self, lang: str) -> str:
        """What is said now in ``lang``: the outcome, else the busy text, else the prompt."""
        if self.phase is Phase.RESULT and self.result is not None:
            r = self.result
            title, detail = getattr(r.title, lang), getattr(r.detail, lang)
            if r.concession is not None:
                # The concession comes first: the driver hears who should be riding.
                title = spoken_text(getattr(r.concession, lang), title, lang).rstrip("。.")
            if r.notice is not None:
                detail = spoken_text(detail, getattr(r.notice, lang), lang).rstrip("。.")
            return spoken_text(title, detail, lang)
        if self.phase is Phase.BUSY and self.busy is not None:
            return spoken_text(getattr(self.busy, lang), "", lang)
        return spoken_text(getattr(self.prompt, lang), "", lang)

    def to_json(self) -> dict[str, Any]:
        result = None
        if self.result is not None:
            r = self.result
            result = {
                "outcome": r.outcome.value,
                "reason": r.reason,
                "title": r.title.to_json(),
                "detail": r.detail.to_json(),
                "fare": r.fare,
                "balance": r.balance,
                "holder": r.holder,
                "decided_at": r.decided_at,
                "concession": r.concession.to_json() if r.concession is not None else None,
                "notice": r.notice.to_json() if r.notice is not None else None,
            }
        call = None
        if self.call is not None:
            call = {
                "id": self.call.id,
                "at": self.call.at,
                "state": self.call.state.value,
                "text": CALL_TEXTS[self.call.state].to_json(),
            }
        return {
            "seq": self.seq,
            "phase": self.phase.value,
            "prompt": self.prompt.to_json(),
            "prompt_detail": self.prompt_detail.to_json(),
            "busy": self.busy.to_json() if self.busy is not None else None,
            "result": result,
            "prefs": {
                "lang": self.prefs.lang,
                "large": self.prefs.large,
                "voice": self.prefs.voice,
            },
            "assist": self.assist,
            "assist_text": ASSIST_TEXT.to_json() if self.assist else None,
            "call": call,
            "complaint": {"phone": self.complaint_phone, "url": self.complaint_url},
        }


class ScreenModel:
    """The holder screen's state machine. Not thread-safe: :class:`terminal.screen.hub.ScreenHub`
    serialises calls. Every method returns True when the state changed."""

    def __init__(self, settings: ScreenSettings, now: float) -> None:
        if settings.defaults.lang not in LANGS:
            raise ValueError(f"default language must be one of {', '.join(LANGS)}")
        self.settings = settings
        self._prefs = settings.defaults
        self._phase = Phase.IDLE
        self._busy: Texts | None = None
        self._result: Result | None = None
        self._result_until = 0.0
        self._busy_until = 0.0
        self._assist = False
        self._last_activity = now
        self._call: StaffCall | None = None
        self._next_call_id = 1
        self._seq = 1
        self._prompt = prompt_for(settings.contactless, settings.contact, settings.code)
        self._prompt_detail = PROMPT_DETAIL.get(settings.profile, Texts("", ""))

    # --- reading -----------------------------------------------------------------------------

    @property
    def state(self) -> ScreenState:
        return ScreenState(
            seq=self._seq,
            phase=self._phase,
            prompt=self._prompt,
            prompt_detail=self._prompt_detail,
            busy=self._busy if self._phase is Phase.BUSY else None,
            result=self._result if self._phase is Phase.RESULT else None,
            prefs=replace(
                self._prefs,
                large=self._prefs.large or self._assist,
                voice=self._prefs.voice or self._assist,
            ),
            assist=self._assist,
            call=self._call,
            complaint_phone=self.settings.complaint_phone,
            complaint_url=self.settings.complaint_url,
        )

    @property
    def call(self) -> StaffCall | None:
        return self._call

    def next_deadline(self, now: float) -> float | None:
        """The monotonic time :meth:`tick` next has something to do, or None."""
        s = self.settings
        times: list[float] = []
        waiting = self._call is not None and self._call.state is CallState.WAITING
        if self._phase is Phase.RESULT:
            times.append(self._result_until)
        if self._phase is Phase.BUSY:
            times.append(self._busy_until)
        if self._phase is Phase.IDLE and self._prefs != s.defaults and not waiting:
            times.append(self._last_activity + s.reset_seconds)
        if self._assist and not waiting:
            times.append(self._last_activity + s.assist_idle_seconds)
        if self._call is not None and self._call.state is CallState.ACKNOWLEDGED:
            times.append(self._call.changed + s.acknowledged_seconds)
        return min(times) if times else None

    # --- events ------------------------------------------------------------------------------

    def _changed(self, now: float) -> bool:
        self._seq += 1
        self._last_activity = now
        return True

    def present(self, kind: str, now: float) -> bool:
        """A credential arrived (``card``, ``code``) or the PIN is asked for (``pin``)."""
        self._phase = Phase.BUSY
        self._busy = BUSY.get(kind, BUSY["code"])
        self._busy_until = now + self.settings.busy_seconds
        return self._changed(now)

    def show(self, message: HolderMessage, now: float, wall: float) -> bool:
        """The transaction's outcome: shown until the result time-out."""
        reason = message.reason
        zh = message_for(message.outcome, reason, message.fare, message.balance, lang="zh")
        en = message_for(message.outcome, reason, message.fare, message.balance, lang="en")
        holder = message.holder if self.settings.show_holder else None
        title, detail = Texts(zh.title, en.title), Texts(zh.detail, en.detail)
        note = getattr(message, "note", None)
        if note:
            # A venue's own words say it all (有逾期未还图书，请先归还): they are the title,
            # not a repeat of a generic one.
            title, detail = Texts(*note), Texts("", "")
        self._result = Result(
            outcome=message.outcome,
            reason=reason,
            title=title,
            detail=detail,
            fare=message.fare,
            balance=message.balance,
            holder=holder,
            decided_at=wall,
            concession=_texts(CONCESSION_NAMES, getattr(message, "concession", None)),
            notice=_notice(message),
        )
        self._phase = Phase.RESULT
        factor = self.settings.assist_factor if self._assist else 1.0
        self._result_until = now + self.settings.result_seconds * factor
        return self._changed(now)

    def set_prefs(
        self,
        now: float,
        lang: str | None = None,
        large: bool | None = None,
        voice: bool | None = None,
    ) -> bool:
        """The holder's language, large-print and voice buttons."""
        if lang is not None and lang not in LANGS:
            raise ValueError(f"lang must be one of {', '.join(LANGS)}, not {lang!r}")
        prefs = Prefs(
            lang=self._prefs.lang if lang is None else lang,
            large=self._prefs.large if large is None else large,
            voice=self._prefs.voice if voice is None else voice,
        )
        if prefs == self._prefs:
            self._last_activity = now
            return False
        self._prefs = prefs
        return self._changed(now)

    def set_assist(self, on: bool, now: float) -> bool:
        """Assistance mode (article 15): large print, voice, longer time-outs."""
        if on == self._assist:
            self._last_activity = now
            return False
        self._assist = on
        if self._phase is Phase.RESULT and on:
            self._result_until = max(
                self._result_until, now + self.settings.result_seconds * self.settings.assist_factor
            )
        return self._changed(now)

    def call_staff(self, now: float, wall: float) -> StaffCall | None:
        """The holder asks for help: a new waiting call, or None when one is already
        waiting (pressing twice does not call twice). Assistance mode comes on with it."""
        if self._call is not None and self._call.state is CallState.WAITING:
            self._last_activity = now
            return None
        self._call = StaffCall(self._next_call_id, wall, CallState.WAITING, now)
        self._next_call_id += 1
        self._assist = True
        self._changed(now)
        return self._call

    def acknowledge(self, call_id: int, now: float) -> bool:
        """The operator is on the way: False when ``call_id`` is not the waiting call."""
        call = self._call
        if call is None or call.id != call_id or call.state is not CallState.WAITING:
            return False
        self._call = replace(call, state=CallState.ACKNOWLEDGED, changed=now)
        return self._changed(now)

    def cancel_call(self, now: float) -> StaffCall | None:
        """The holder no longer needs help: the cancelled call, or None."""
        call = self._call
        if call is None:
            return None
        self._call = None
        self._changed(now)
        return call

    def tick(self, now: float) -> bool:
        """Apply the time-outs due at ``now``."""
        s = self.settings
        changed = False
        if self._phase is Phase.RESULT and now >= self._result_until:
            self._phase = Phase.IDLE
            self._result = None
            changed = True
        if self._phase is Phase.BUSY and now >= self._busy_until:
            self._phase = Phase.IDLE
            changed = True
        waiting = self._call is not None and self._call.state is CallState.WAITING
        # While a holder waits for staff, the screen keeps the help and the language they
        # chose: the time-outs are for the next holder, not this one.
        if self._assist and not waiting and now >= self._last_activity + s.assist_idle_seconds:
            self._assist = False
            changed = True
        if (
            self._phase is Phase.IDLE
            and not waiting
            and self._prefs != s.defaults
            and now >= self._last_activity + s.reset_seconds
        ):
            self._prefs = s.defaults
            changed = True
        call = self._call
        if (
            call is not None
            and call.state is CallState.ACKNOWLEDGED
            and now >= call.changed + s.acknowledged_seconds
        ):
            self._call = None
            changed = True
        if changed:
            # Time passing is not holder activity: keep _last_activity as it was.
            self._seq += 1
        return changed
