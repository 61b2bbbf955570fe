"""What the terminal does after a decision: open the gate, light the lamp, sound the buzzer,
tell the holder (docs/runtime.md, "Outputs").

The runtime talks to one :class:`Outputs`; drivers implement it (``drivers.relay_board``),
and so do the plain implementations here: :class:`ConsoleOutputs` for the demo,
:class:`RecordingOutputs` for tests and the demo's table, :class:`MultiOutputs` to drive
several at once. :func:`message_for` turns a decision's reason code into the short bilingual
text the holder sees, with what to do next.

Nothing here carries personal data: a :class:`HolderMessage` is built from reason codes and
amounts only - except ``holder``, the masked name a counter may greet the holder with, which
only a display configured to show it does.
"""

from __future__ import annotations

import enum
import logging
import sys
import threading
import unicodedata
from dataclasses import dataclass
from typing import Protocol, TextIO

log = logging.getLogger(__name__)


class Outcome(enum.Enum):
    """How a transaction ended, as the holder sees it (lamp colour, buzzer pattern)."""

    ACCEPTED = "accepted"
    REFUSED = "refused"
    ERROR = "error"


@dataclass(frozen=True)
class HolderMessage:
    """What the holder's display shows for one transaction."""

    outcome: Outcome
    title: str
    """Short, e.g. ``请通行 / Please pass``."""
    detail: str
    """The reason in words, and what to do next; no personal data."""
    fare: int | None = None
    """Fen, when a fare was charged."""
    balance: int | None = None
    """Fen, the e-purse balance after the purchase."""
    reason: str = ""
    """The reason code the texts were made from (:data:`MESSAGES`), for displays that
    render the message in another language."""
    holder: str | None = None
    """The holder's masked name (``张*``), set only by profiles that may show it (counter)."""
    concession: str | None = None
    """The card's category at a validator or rail gate (``elderly``...): shown and spoken
    first (:data:`CONCESSION_NAMES`), with its own tone, so staff can check the rider."""
    notice: str | None = None
    """An extra prompt's code (:data:`NOTICES`), e.g. ``low_balance``."""
    shortfall: int | None = None
    """Fen missing for the fare, when refused for balance."""
    note: tuple[str, str] | None = None
    """A free text (Chinese, English) beyond the reason's: a venue's word on the holder."""


class Outputs(Protocol):
    def open_gate(self) -> None:
        """Pulse the gate relay (gate profile only)."""
        ...

    def indicate(self, outcome: Outcome) -> None:
        """Lamp and buzzer for ``outcome``."""
        ...

    def show(self, message: HolderMessage) -> None:
        """Put ``message`` on the holder's display."""
        ...

    def close(self) -> None: ...


# --- signals: one lamp colour and one buzz per outcome --------------------------------------


@dataclass(frozen=True)
class Signal:
    """The lamp colour (``GREEN`` / ``RED``) and buzz length (ms) shown for an outcome."""

    lamp: str
    buzz_ms: int


SIGNALS: dict[Outcome, Signal] = {
    # A short chirp for yes, a longer tone for no, the longest for "ask the staff": holders
    # and staff tell them apart without looking at the lamp.
    Outcome.ACCEPTED: Signal("GREEN", 100),
    Outcome.REFUSED: Signal("RED", 400),
    Outcome.ERROR: Signal("RED", 800),
}


# --- holder messages ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Text:
    title_zh: str
    title_en: str
    detail_zh: str
    detail_en: str


_SERVICE_DESK = ("请到服务窗口", "Please go to the service desk")
_ASK_STAFF = ("请咨询工作人员", "Please ask the staff")
_BUY_TICKET = ("请购票或咨询工作人员", "Please buy a ticket or ask the staff")
_REFRESH_CODE = ("请刷新电子社保卡二维码", "Please refresh the e-card code")
_TAP_AGAIN = ("请重新刷卡", "Please tap the card again")


def _text(title: tuple[str, str], detail: tuple[str, str]) -> _Text:
    return _Text(title[0], title[1], detail[0], detail[1])


MESSAGES: dict[str, _Text] = {
    # Reason codes of terminal.policy.decide.
    "ok": _text(("请通行", "Please pass"), ("", "")),
    "not_authentic": _text(("卡片验证未通过", "Card could not be verified"), _SERVICE_DESK),
    "hotlisted": _text(("此卡已挂失", "Card reported lost"), _SERVICE_DESK),
    "service_not_offered": _text(("本机不提供此服务", "Service not offered here"), _ASK_STAFF),
    "service_not_in_force": _text(("此服务今日未开放", "Service not open today"), _ASK_STAFF),
    "region_not_accepted": _text(
        ("此地区的卡不适用", "Cards of this region not accepted"), _BUY_TICKET
    ),
    "category_not_accepted": _text(("此类卡不适用", "This card type not accepted"), _BUY_TICKET),
    "credential_not_accepted": _text(
        ("此处不受理该凭证", "Not accepted here"),
        ("请改用社保卡或电子社保卡", "Please use the other form: card or e-card code"),
    ),
    "card_kind_not_accepted": _text(
        ("此处不受理该卡", "This card is not accepted here"),
        ("请使用社会保障卡", "Please use the social security card"),
    ),
    "card_expired": _text(
        ("此卡已过期", "Card expired"), ("请到服务窗口换卡", "Please renew it at the service desk")
    ),
    # Runtime codes.
    "card_read": _text(
        ("读卡成功", "Card read"), ("请等候工作人员办理", "The desk will now serve you")
    ),
    "passback": _text(("已通行，请勿重复刷卡", "Already passed - do not tap again"), _ASK_STAFF),
    "repeat_tap": _text(
        ("已扣费，请勿重复刷卡", "Already paid - do not tap again"), ("请上车", "Please board")
    ),
    "insufficient_balance": _text(
        ("余额不足", "Insufficient balance"), ("请充值后再试", "Please top up and try again")
    ),
    "rail_entry": _text(("请进站", "Please enter"), ("", "")),
    "rail_reentry": _text(("请进站", "Please enter"), ("同站再次进站，免费", "Re-entry: free")),
    "exit_without_entry": _text(
        ("无进站记录", "No entry recorded"), ("请到服务窗口补票", "Please see the station staff")
    ),
    "already_inside": _text(
        ("上次未出站", "Last trip not closed"), ("请到服务窗口处理", "Please see the station staff")
    ),
    "ride_limit": _text(
        ("今日乘车次数已用完", "Today's rides are used up"), ("请购票乘车", "Please buy a ticket")
    ),
    "unknown_station": _text(("票价无法计算", "Fare cannot be computed"), _ASK_STAFF),
    "no_fare_table": _text(("终端暂停服务", "Terminal out of service"), _ASK_STAFF),
    "no_journey_record": _text(("此卡不能乘地铁", "Card not valid for the metro"), _SERVICE_DESK),
    "bad_journey_record": _text(("卡内记录异常", "Card record unreadable"), _SERVICE_DESK),
    # Venue gates (terminal.venue.gate): a plain title; the venue's own words on why (its
    # configured texts, a library system's message) come as the message's note.
    **dict.fromkeys(
        (
            "patron_ok",
            "patron_warned",
            "not_a_patron",
            "ils_unreachable",
            "reservation_ok",
            "pass_ok",
        ),
        _text(("请进", "Please enter"), ("", "")),
    ),
    **dict.fromkeys(
        (
            "patron_blocked",
            "not_a_patron_refused",
            "ils_unreachable_refused",
            "no_reservation",
            "no_reservations",
            "reservation_used",
            "identity_unreadable",
            "no_pass",
            "no_passes",
            "pass_expired",
            "pass_not_yet_valid",
            "pass_used_today",
        ),
        _text(("暂不能入内", "Entry refused"), ("", "")),
    ),
    "venue_full": _text(("请稍候", "Please wait"), ("", "")),
    "venue_exit": _text(("再见", "Goodbye"), ("", "")),
    "inspection_paid": _text(("已付费", "Paid"), ("", "")),
    "inspection_unpaid": _text(("未查到付费记录", "No paid ride found"), ("请补票", "Fare due")),
    "not_inspectable": _text(("请刷实体卡", "Please tap the card"), ("", "")),
    "no_transit_application": _text(
        ("不是交通卡", "Not a transit card"), ("请使用交通联合卡", "Please use a T-Union card")
    ),
    "torn_purchase_recovered": _text(
        ("上次扣费已完成", "Previous payment completed"),
        ("未重复扣费，请通行", "You were not charged twice - please pass"),
    ),
    "pin_wrong": _text(("密码错误", "Wrong PIN"), ("请重新输入", "Please enter it again")),
    "pin_blocked": _text(
        ("密码已锁定", "PIN blocked"), ("请到服务窗口解锁", "Please unblock it at the service desk")
    ),
    "journal_full": _text(("终端暂停服务", "Terminal out of service"), _ASK_STAFF),
    "card_error": _text(("读卡失败", "Card could not be read"), _TAP_AGAIN),
    "not_ssc": _text(
        ("不是社会保障卡", "Not a social security card"),
        ("请使用社会保障卡", "Please use the social security card"),
    ),
    "replayed": _text(("此码已使用", "Code already used"), _REFRESH_CODE),
    "expired_code": _text(("此码已过期", "Code expired"), _REFRESH_CODE),
    "card_removed": _text(("卡片移开过早", "Card removed too soon"), _TAP_AGAIN),
    "torn": _text(("支付未完成", "Payment not finished"), _TAP_AGAIN),
    "pay_later": _text(("请上车", "Please board"), ("车费稍后结算", "Fare charged later")),
    "purchase_refused": _text(("扣费失败", "Payment refused"), _SERVICE_DESK),
    "mac2_mismatch": _text(("支付校验失败", "Payment could not be verified"), _SERVICE_DESK),
    "pin_cancelled": _text(("已取消", "Cancelled"), _TAP_AGAIN),
    # Code verdicts (terminal.ecode.verify.CodeVerdict): a holder with a bad code can act on
    # what is wrong with it, unlike a card (docs/screen.md).
    "expired": _text(("此码已过期", "Code expired"), _REFRESH_CODE),
    "not_yet_valid": _text(
        ("此码尚未生效", "Code not valid yet"),
        ("请检查手机时间后刷新", "Check the phone's clock, then refresh the code"),
    ),
    "bad_signature": _text(("二维码验证未通过", "Code could not be verified"), _REFRESH_CODE),
    "unknown_issuer": _text(("此码不适用", "Code not accepted here"), _ASK_STAFF),
    "issuer_revoked": _text(("此码不适用", "Code not accepted here"), _ASK_STAFF),
    "malformed": _text(("二维码无法识别", "Code could not be read"), _REFRESH_CODE),
    "not_our_code": _text(
        ("不是电子社保卡二维码", "Not an e-card code"),
        ("请出示电子社保卡二维码", "Please show your e-card code"),
    ),
    "codes_not_accepted": _text(("本机不受理二维码", "Codes not accepted here"), _ASK_STAFF),
    "no_application_list": _text(("终端暂停服务", "Terminal out of service"), _ASK_STAFF),
    "no_reader": _text(("终端暂停服务", "Terminal out of service"), _ASK_STAFF),
    "internal_error": _text(("终端故障", "Terminal fault"), _ASK_STAFF),
}
"""Holder texts by reason code: the policy's reasons, then the runtime's own."""

CONCESSION_NAMES: dict[str, tuple[str, str]] = {
    "4": ("老年卡", "Senior card"),
    "2": ("学生卡", "Student card"),
    "1": ("儿童卡", "Child card"),
}
"""Card categories (EF05 tag 02 codes, as the journal keeps them) a validator names aloud
(article 21: the rider must be the card's holder); an adult card (3) is not named."""

NOTICES: dict[str, tuple[str, str]] = {
    "low_balance": ("余额不足，请及时充值", "Low balance: please top up soon"),
    "transfer_discount": ("换乘优惠", "Transfer discount"),
}

_FALLBACK: dict[Outcome, _Text] = {
    Outcome.ACCEPTED: MESSAGES["ok"],
    Outcome.REFUSED: _text(("请勿通行", "Not accepted"), _ASK_STAFF),
    Outcome.ERROR: _text(("暂时无法处理", "Cannot process now"), _ASK_STAFF),
}

LANGUAGES = ("zh", "en", "zh+en")


def _yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole}.{cents:02d}"


def _money(fare: int | None, balance: int | None) -> tuple[str, str]:
    zh: list[str] = []
    en: list[str] = []
    if fare is not None:
        zh.append("免费" if fare == 0 else f"扣费 {_yuan(fare)} 元")
        en.append("Free" if fare == 0 else f"Fare {_yuan(fare)} yuan")
    if balance is not None:
        zh.append(f"余额 {_yuan(balance)} 元")
        en.append(f"balance {_yuan(balance)} yuan" if en else f"Balance {_yuan(balance)} yuan")
    return "，".join(zh), ", ".join(en)


def _pick(zh: str, en: str, lang: str) -> str:
    if lang == "zh":
        return zh
    if lang == "en":
        return en
    return " / ".join(part for part in (zh, en) if part)


def message_for(
    outcome: Outcome,
    reason_code: str,
    fare: int | None = None,
    balance: int | None = None,
    lang: str = "zh+en",
) -> HolderMessage:
    """The holder's message for a transaction that ended with ``outcome`` for
    ``reason_code`` (a :class:`terminal.policy.Reason` value or a runtime code, see
    :data:`MESSAGES`); ``fare`` and ``balance`` (fen) are added to the detail when given.

    ``lang`` is ``zh``, ``en`` or ``zh+en`` (``中文 / English``). An unknown reason code
    gets a generic message for the outcome rather than an error: the holder must always be
    told something.
    """
    if lang not in LANGUAGES:
        raise ValueError(f"lang must be one of {', '.join(LANGUAGES)}, not {lang!r}")
    text = MESSAGES.get(reason_code) or MESSAGES.get(reason_code.split(":", 1)[0])
    if text is None:
        log.warning("no holder message for reason %r; using the generic one", reason_code)
        text = _FALLBACK[outcome]
    money_zh, money_en = _money(fare, balance)
    # Amounts come first for an accepted purchase (that is what the holder looks for);
    # for a refusal, what to do next comes first.
    if outcome is Outcome.ACCEPTED:
        detail_zh = "，".join(p for p in (money_zh, text.detail_zh) if p)
        detail_en = ", ".join(p for p in (money_en, text.detail_en) if p)
    else:
        detail_zh = "，".join(p for p in (text.detail_zh, money_zh) if p)
        detail_en = ", ".join(p for p in (text.detail_en, money_en.lower()) if p)
    return HolderMessage(
        outcome=outcome,
        title=_pick(text.title_zh, text.title_en, lang),
        detail=_pick(detail_zh, detail_en, lang),
        fare=fare,
        balance=balance,
        reason=reason_code,
    )


def message_line(message: HolderMessage) -> str:
    """One display line: ``title - detail`` (the detail omitted when empty); a venue's
    note, when there is one, is the line (both languages)."""
    if message.note:
        return " / ".join(part for part in message.note if part)
    return f"{message.title} - {message.detail}" if message.detail else message.title


# --- console --------------------------------------------------------------------------------


def display_width(text: str) -> int:
    """Terminal columns ``text`` takes: East Asian wide and full-width characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def fit(text: str, width: int | None) -> str:
    """``text`` cut to ``width`` columns, ending in ``…`` when cut; None: no limit."""
    if width is None or display_width(text) <= width:
        return text
    out: list[str] = []
    used = 0
    for ch in text:
        w = display_width(ch)
        if used + w > width - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + "…"


class ConsoleOutputs:
    """The demo's outputs: one line per action on ``stream``, cut to ``width`` columns
    (None: never cut). ``[GATE OPEN]``, ``[LAMP GREEN] beep 100 ms``,
    ``[ACCEPTED] 请通行 / Please pass - Free``."""

    def __init__(self, stream: TextIO | None = None, width: int | None = 120) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.width = width
        self._lock = threading.Lock()

    def _line(self, text: str) -> None:
        with self._lock:
            self.stream.write(fit(text, self.width) + "\n")
            self.stream.flush()

    def open_gate(self) -> None:
        self._line("[GATE OPEN]")

    def indicate(self, outcome: Outcome) -> None:
        signal = SIGNALS[outcome]
        self._line(f"[LAMP {signal.lamp}] beep {signal.buzz_ms} ms")

    def show(self, message: HolderMessage) -> None:
        self._line(f"[{message.outcome.name}] {message_line(message)}")

    def close(self) -> None:
        with self._lock:
            self.stream.flush()


# --- recording ------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputCall:
    """One call on an :class:`Outputs`: ``kind`` is ``open_gate``, ``indicate``, ``show`` or
    ``close``; ``outcome`` is set for ``indicate``, ``message`` for ``show``."""

    kind: str
    outcome: Outcome | None = None
    message: HolderMessage | None = None


class RecordingOutputs:
    """Keeps every call as an :class:`OutputCall`, in order (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._actions: list[OutputCall] = []
        self.closed = False

    @property
    def actions(self) -> list[OutputCall]:
        """A copy of the actions so far."""
        with self._lock:
            return list(self._actions)

    @property
    def gate_openings(self) -> int:
        return sum(1 for a in self.actions if a.kind == "open_gate")

    @property
    def outcomes(self) -> list[Outcome]:
        return [a.outcome for a in self.actions if a.outcome is not None]

    @property
    def messages(self) -> list[HolderMessage]:
        return [a.message for a in self.actions if a.message is not None]

    @property
    def last_message(self) -> HolderMessage | None:
        messages = self.messages
        return messages[-1] if messages else None

    def clear(self) -> None:
        with self._lock:
            self._actions.clear()

    def _record(self, action: OutputCall) -> None:
        with self._lock:
            self._actions.append(action)

    def open_gate(self) -> None:
        self._record(OutputCall("open_gate"))

    def indicate(self, outcome: Outcome) -> None:
        self._record(OutputCall("indicate", outcome=outcome))

    def show(self, message: HolderMessage) -> None:
        self._record(OutputCall("show", message=message))

    def close(self) -> None:
        self.closed = True
        self._record(OutputCall("close"))


# --- fan-out --------------------------------------------------------------------------------


class MultiOutputs:
    """Drives several outputs with each call, in the order given.

    Every output is called even when one before it fails - a dead relay board must not
    keep the message off the console - and then the first failure is raised, so the
    caller still learns of it (and logs it) as with a single output.
    """

    def __init__(self, *outputs: Outputs) -> None:
        self.outputs = outputs

    def _each(self, call: str, *args: object) -> None:
        first: Exception | None = None
        for output in self.outputs:
            try:
                getattr(output, call)(*args)
            except Exception as exc:
                if first is None:
                    first = exc
                else:
                    log.warning("output %s.%s also failed: %s", type(output).__name__, call, exc)
        if first is not None:
            raise first

    def open_gate(self) -> None:
        self._each("open_gate")

    def indicate(self, outcome: Outcome) -> None:
        self._each("indicate", outcome)

    def show(self, message: HolderMessage) -> None:
        self._each("show", message)

    def close(self) -> None:
        self._each("close")
