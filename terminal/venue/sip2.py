"""SIP2 (3M Standard Interchange Protocol 2.00): the client (SC) side, as a pure codec.

No I/O (h11's way): requests are frozen dataclasses that :func:`encode` turns into the bytes
of one message; :class:`Sip2Framer` cuts the bytes a socket delivers into messages;
:func:`parse_message` / :func:`parse_response` turn one message into a frozen dataclass or
raise a :class:`Sip2Error` - never another exception. :mod:`terminal.venue.ils` is the thin
I/O wrapper that runs these over one TCP connection to a library system (ILS).

The wire, as this module writes and reads it::

    93 0 0 CN<user>| CO<password>| CP<location>| AY<n>AZ<cksum> CR      Login
    94 <ok 0|1> AY<n>AZ<cksum> CR                                      Login Response
    99 <status 1> <print width 3> <version 4> AY<n>AZ<cksum> CR        SC Status
    98 <6 Y/N> <timeout 3> <retries 3> <date 18> <version 4> AO..|AM..|BX..|AN..|AF..|
    23 <language 3> <date 18> AO<inst>| AA<patron>| AC<term pwd>| AD<patron pwd>|
    24 <patron status 14> <language 3> <date 18> AO| AA| AE| BL| CQ| BH| BV| AF| AG|
    63 <language 3> <date 18> <summary 10> AO| AA| [AC|] [AD|]
    64 <patron status 14> <language 3> <date 18> <6 counts of 4> AO| AA| AE| ...

Dates are ``YYYYMMDDZZZZHHMMSS`` (``ZZZZ`` the zone, blank for local time). Variable fields
are a two-character identifier, the value, then ``|``. Error detection closes a message with
``AY<n>AZ<cksum>``: ``n`` the sequence digit 0-9 the answer must repeat, ``cksum`` four
upper-case hex digits, the two's complement of the 16-bit sum of every byte up to and
including ``AZ``. Every message ends with CR.

Text is in the configured character set, ``utf-8`` or ``gbk`` (many Chinese library systems
run GBK). A GBK double-byte character may have ``|`` (0x7C) or a letter as its second byte,
so a message is decoded as a whole and split as text, never split as bytes.

What a tap needs of the answer is :class:`PatronStanding`; what the gate does with it is
:meth:`PatronPolicy.decide`. The patron's name (``AE``) is read past and never kept: not in
a dataclass, not in a log line, and masked where the library repeats it in a screen message.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TypeVar

from terminal.errors import ConfigError, OneCardError, ParseError
from terminal.privacy.cardtoken import card_token

CR = b"\r"
DELIMITER = "|"
MAX_MESSAGE_LENGTH = 8192
"""Longest message the framer buffers, in bytes: a real 64 with every item list is a few
hundred bytes; past this an ILS is broken or hostile, and the buffer must not grow."""
CHARSETS = ("utf-8", "gbk")
PROTOCOL_VERSION = "2.00"
LANGUAGE_UNKNOWN = "000"
NAME_MASK = "***"


# --- errors -------------------------------------------------------------------------------


class Sip2Error(ParseError):
    """Bytes from (or for) a library system that are not a SIP2 message we can use."""

    code = "sip2_error"


class Sip2FormatError(Sip2Error):
    """A message that breaks SIP2's layout: truncated, a fixed field out of its format, a
    variable field without its ``|``, an unknown message id, text outside the character
    set, a message longer than the framer's limit - or a request value that cannot be sent
    (one holding ``|`` or CR)."""

    code = "sip2_malformed"


class Sip2ChecksumError(Sip2Error):
    """A message whose ``AZ`` checksum does not add up, or that has none when error
    detection is on."""

    code = "sip2_checksum"


class Sip2SequenceError(Sip2Error):
    """An answer whose ``AY`` sequence number is not the request's (a stale or foreign
    answer), or that has none when the request had one."""

    code = "sip2_sequence"


class Sip2ResendRequested(Sip2Error):
    """The ACS answered ``96`` (Request SC Resend): it received our message damaged."""

    code = "sip2_resend"


class PatronIdError(OneCardError):
    """The gate does not have what the configured patron identifier is made of (e.g. no
    social security number for an electronic card that carries only a card reference)."""

    code = "no_patron_id"


# --- checksum and dates -------------------------------------------------------------------


def checksum(prefix: bytes) -> str:
    """The ``AZ`` value of a message whose bytes up to and including ``AZ`` are ``prefix``:
    the two's complement of their 16-bit sum, four upper-case hex digits."""
    return f"{-sum(prefix) & 0xFFFF:04X}"


def format_date(moment: dt.datetime) -> str:
    """``YYYYMMDDZZZZHHMMSS`` of ``moment``: the zone blank (local time), as most ACSs expect.
    ``moment`` is the terminal's local wall-clock time."""
    return moment.strftime("%Y%m%d") + "    " + moment.strftime("%H%M%S")


# --- requests -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Login:
    """``93``: log the SC in with its ILS account. Sent once per connection."""

    user_id: str
    password: str
    location: str = ""
    uid_algorithm: str = "0"  # 0: not encrypted - the only algorithm ACSs implement
    pwd_algorithm: str = "0"


@dataclass(frozen=True)
class ScStatus:
    """``99``: the SC says it is up (status 0) and which protocol it speaks."""

    status_code: int = 0
    max_print_width: int = 0
    protocol_version: str = PROTOCOL_VERSION


@dataclass(frozen=True)
class PatronStatusRequest:
    """``23``: the standing of one patron - flags, validity, fees - in one short answer."""

    institution_id: str
    patron_id: str
    transaction_date: dt.datetime
    terminal_password: str = ""
    patron_password: str = ""
    language: str = LANGUAGE_UNKNOWN


@dataclass(frozen=True)
class PatronInformationRequest:
    """``63``: as ``23``, with item counts; ``summary`` all blank asks for no item list."""

    institution_id: str
    patron_id: str
    transaction_date: dt.datetime
    terminal_password: str = ""
    patron_password: str = ""
    language: str = LANGUAGE_UNKNOWN


Sip2Request = Login | ScStatus | PatronStatusRequest | PatronInformationRequest


def _value(name: str, value: str) -> str:
    if DELIMITER in value or "\r" in value or "\n" in value or "\x00" in value:
        raise Sip2FormatError(f"{name} holds a delimiter, CR, LF or NUL: it cannot be sent")
    return value


def _var(field_id: str, value: str) -> str:
    return field_id + _value(field_id, value) + DELIMITER


def _body(request: Sip2Request) -> str:
    if isinstance(request, Login):
        for name in ("uid_algorithm", "pwd_algorithm"):
            if len(getattr(request, name)) != 1:
                raise Sip2FormatError(f"login {name} must be one character")
        body = "93" + request.uid_algorithm + request.pwd_algorithm
        body += _var("CN", request.user_id) + _var("CO", request.password)
        if request.location:
            body += _var("CP", request.location)
        return body
    if isinstance(request, ScStatus):
        if request.status_code not in (0, 1, 2) or not 0 <= request.max_print_width <= 999:
            raise Sip2FormatError("SC status code must be 0-2 and print width 0-999")
        if not re.fullmatch(r"\d\.\d\d", request.protocol_version):
            raise Sip2FormatError("protocol version must read like 2.00")
        return f"99{request.status_code}{request.max_print_width:03d}{request.protocol_version}"
    if not re.fullmatch(r"\d{3}", request.language):
        raise Sip2FormatError("language must be three digits")
    date = format_date(request.transaction_date)
    common = _var("AO", request.institution_id) + _var("AA", request.patron_id)
    if isinstance(request, PatronStatusRequest):
        # AC and AD are required fields of 23: present, possibly empty.
        return (
            "23"
            + request.language
            + date
            + common
            + _var("AC", request.terminal_password)
            + _var("AD", request.patron_password)
        )
    # 63: AC and AD are optional; an empty AD is left out, since some ACSs read an empty
    # AD as a wrong password.
    body = "63" + request.language + date + " " * 10 + common
    body += _var("AC", request.terminal_password)
    if request.patron_password:
        body += _var("AD", request.patron_password)
    return body


def encode(request: Sip2Request, *, sequence: int | None, charset: str) -> bytes:
    """The bytes of one message: ``request`` in ``charset``, closed by ``AY<sequence>AZ
    <checksum>`` when ``sequence`` (0-9) is given (error detection), then CR."""
    _check_charset(charset)
    try:
        raw = _body(request).encode(charset)
    except UnicodeEncodeError as exc:
        raise Sip2FormatError(f"request text is not encodable in {charset}") from exc
    if sequence is None:
        return raw + CR
    if not 0 <= sequence <= 9:
        raise Sip2FormatError(f"sequence number {sequence} is not one digit")
    prefix = raw + b"AY" + str(sequence).encode() + b"AZ"
    return prefix + checksum(prefix).encode() + CR


def _check_charset(charset: str) -> None:
    if charset not in CHARSETS:
        raise ConfigError(f"SIP2 charset {charset!r} is not one of {', '.join(CHARSETS)}")


# --- the patron's standing ----------------------------------------------------------------


class PatronFlag(enum.Enum):
    """The 14 positions of SIP2's patron status field, in wire order: ``Y`` means set."""

    charge_privileges_denied = 0
    renewal_privileges_denied = 1
    recall_privileges_denied = 2
    hold_privileges_denied = 3
    card_reported_lost = 4
    too_many_items_charged = 5
    too_many_items_overdue = 6
    too_many_renewals = 7
    too_many_claims_of_items_returned = 8
    too_many_items_lost = 9
    excessive_outstanding_fines = 10
    excessive_outstanding_fees = 11
    recall_overdue = 12
    too_many_items_billed = 13


def _flags(status: str) -> frozenset[PatronFlag]:
    return frozenset(flag for flag in PatronFlag if status[flag.value] == "Y")


def patron_status_field(flags: frozenset[PatronFlag] | set[PatronFlag]) -> str:
    """The 14-character patron status field with ``flags`` set (for tests and tools)."""
    return "".join("Y" if flag in flags else " " for flag in PatronFlag)


@dataclass(frozen=True)
class PatronStanding:
    """What a tap needs of a patron: validity (``BL``; None when the ACS did not say), the
    status flags, the outstanding fee, and the ACS's screen message for the holder. No
    name, no identifier."""

    valid_patron: bool | None
    flags: frozenset[PatronFlag] = frozenset()
    fee_amount: Decimal | None = None
    currency: str | None = None
    screen_message: str = ""


# --- responses ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LoginResponse:
    """``94``."""

    ok: bool


@dataclass(frozen=True)
class AcsStatus:
    """``98``: the ACS's status and parameters (answer to SC Status)."""

    online: bool
    checkin_ok: bool
    checkout_ok: bool
    renewal_policy: bool
    status_update_ok: bool
    offline_ok: bool
    timeout_period: str
    retries_allowed: str
    date_time_sync: str
    protocol_version: str
    institution_id: str
    supported_messages: str
    library_name: str | None = None
    terminal_location: str | None = None
    screen_message: tuple[str, ...] = ()


@dataclass(frozen=True)
class PatronStatusResponse:
    """``24``, without the patron's name and identifier."""

    flags: frozenset[PatronFlag]
    language: str
    transaction_date: str
    institution_id: str
    valid_patron: bool | None = None
    valid_patron_password: bool | None = None
    currency: str | None = None
    fee_amount: Decimal | None = None
    screen_message: tuple[str, ...] = ()
    print_line: tuple[str, ...] = ()

    def standing(self) -> PatronStanding:
        return PatronStanding(
            valid_patron=self.valid_patron,
            flags=self.flags,
            fee_amount=self.fee_amount,
            currency=self.currency,
            screen_message=" ".join(m for m in self.screen_message if m),
        )


@dataclass(frozen=True)
class PatronInformationResponse(PatronStatusResponse):
    """``64``: ``24``'s fields, the six item counts (None when blank) and the fee limit.
    Item lists, addresses and phone numbers are not kept."""

    hold_items_count: int | None = None
    overdue_items_count: int | None = None
    charged_items_count: int | None = None
    fine_items_count: int | None = None
    recall_items_count: int | None = None
    unavailable_holds_count: int | None = None
    fee_limit: Decimal | None = None


@dataclass(frozen=True)
class ResendRequest:
    """``96``: the ACS asks for our last message again."""


Sip2Response = LoginResponse | AcsStatus | PatronStatusResponse | ResendRequest
R = TypeVar("R", LoginResponse, AcsStatus, PatronStatusResponse, PatronInformationResponse)


# --- parsing ------------------------------------------------------------------------------

_DATE = re.compile(r"\d{8}[A-Z ]{4}\d{6}")
_YN = re.compile(r"[YN]")
_Y_BLANK = re.compile(r"[Y ]{14}")
_DIGITS3 = re.compile(r"\d{3}")
_COUNT = re.compile(r"\d{4}| {4}")
_FIELD_ID = re.compile(r"[A-Za-z0-9]{2}")
_MONEY = re.compile(r"-?\d{1,12}(?:\.\d{1,4})?")
_HEX4 = re.compile(rb"[0-9A-Fa-f]{4}")


class _Cursor:
    """Fixed fields, then variable fields, of one decoded message."""

    def __init__(self, text: str, what: str) -> None:
        self.text = text
        self.what = what
        self.at = 2  # past the message id

    def fixed(self, width: int, name: str, pattern: re.Pattern[str]) -> str:
        value = self.text[self.at : self.at + width]
        if len(value) != width:
            raise Sip2FormatError(f"{self.what}: truncated in its fixed field {name}")
        if not pattern.fullmatch(value):
            raise Sip2FormatError(f"{self.what}: fixed field {name} {value!r} is malformed")
        self.at += width
        return value

    def flag(self, name: str) -> bool:
        return self.fixed(1, name, _YN) == "Y"

    def variable(self, repeatable: frozenset[str]) -> dict[str, list[str]]:
        """Every variable field: identifier -> values. Unknown identifiers are kept too
        (the ACS's extensions, ignored by the caller); a non-repeatable one given twice is
        an error, so two answers never hide in one."""
        found: dict[str, list[str]] = {}
        text, at = self.text, self.at
        while at < len(text):
            field_id = text[at : at + 2]
            if not _FIELD_ID.fullmatch(field_id):
                raise Sip2FormatError(f"{self.what}: {field_id!r} is not a field identifier")
            end = text.find(DELIMITER, at + 2)
            if end == -1:
                raise Sip2FormatError(f"{self.what}: field {field_id} has no closing |")
            values = found.setdefault(field_id, [])
            if values and field_id not in repeatable:
                raise Sip2FormatError(f"{self.what}: field {field_id} given twice")
            values.append(text[at + 2 : end])
            at = end + 1
        return found


def _one(fields: dict[str, list[str]], field_id: str, what: str, *, required: bool) -> str | None:
    values = fields.get(field_id)
    if not values:
        if required:
            raise Sip2FormatError(f"{what}: required field {field_id} is missing")
        return None
    return values[0]


def _yn(fields: dict[str, list[str]], field_id: str, what: str) -> bool | None:
    value = _one(fields, field_id, what, required=False)
    if value is None:
        return None
    if not _YN.fullmatch(value):
        raise Sip2FormatError(f"{what}: field {field_id} {value!r} is not Y or N")
    return value == "Y"


def _money(fields: dict[str, list[str]], field_id: str, what: str) -> Decimal | None:
    value = _one(fields, field_id, what, required=False)
    if value is None or not value.strip():
        return None
    if not _MONEY.fullmatch(value.strip()):
        raise Sip2FormatError(f"{what}: field {field_id} {value!r} is not an amount")
    try:
        return Decimal(value.strip())
    except InvalidOperation as exc:  # the pattern admits only what Decimal reads
        raise Sip2FormatError(f"{what}: field {field_id} is not an amount") from exc


def _currency(fields: dict[str, list[str]], what: str) -> str | None:
    value = _one(fields, "BH", what, required=False)
    if value is None or value == "":
        return None
    if not re.fullmatch(r"[A-Z]{3}", value):
        raise Sip2FormatError(f"{what}: currency {value!r} is not three letters")
    return value


def _count(value: str) -> int | None:
    return None if value == "    " else int(value)


def _masked(messages: list[str], name: str | None) -> tuple[str, ...]:
    # ACSs greet by name ("Welcome, Zhang San"): the name is masked before anything keeps
    # the message. Best effort - only the exact AE text is found.
    if not name or not name.strip():
        return tuple(messages)
    return tuple(message.replace(name, NAME_MASK) for message in messages)


_PATRON_REPEATABLE = frozenset({"AF", "AG", "AS", "AT", "AU", "AV", "BU", "CD"})
_ACS_REPEATABLE = frozenset({"AF", "AG"})


def _patron(cursor: _Cursor, information: bool) -> PatronStatusResponse:
    what = cursor.what
    status = cursor.fixed(14, "patron status", _Y_BLANK)
    language = cursor.fixed(3, "language", _DIGITS3)
    date = cursor.fixed(18, "transaction date", _DATE)
    counts: list[int | None] = []
    if information:
        names = ("hold", "overdue", "charged", "fine", "recall", "unavailable holds")
        counts = [_count(cursor.fixed(4, f"{name} items count", _COUNT)) for name in names]
    fields = cursor.variable(_PATRON_REPEATABLE)
    institution = _one(fields, "AO", what, required=True) or ""
    _one(fields, "AA", what, required=True)
    name = _one(fields, "AE", what, required=True)
    common = {
        "flags": _flags(status),
        "language": language,
        "transaction_date": date,
        "institution_id": institution,
        "valid_patron": _yn(fields, "BL", what),
        "valid_patron_password": _yn(fields, "CQ", what),
        "currency": _currency(fields, what),
        "fee_amount": _money(fields, "BV", what),
        "screen_message": _masked(fields.get("AF", []), name),
        "print_line": _masked(fields.get("AG", []), name),
    }
    if not information:
        return PatronStatusResponse(**common)  # type: ignore[arg-type]
    return PatronInformationResponse(
        **common,  # type: ignore[arg-type]
        hold_items_count=counts[0],
        overdue_items_count=counts[1],
        charged_items_count=counts[2],
        fine_items_count=counts[3],
        recall_items_count=counts[4],
        unavailable_holds_count=counts[5],
        fee_limit=_money(fields, "CC", what),
    )


def _acs_status(cursor: _Cursor) -> AcsStatus:
    what = cursor.what
    online = cursor.flag("on-line status")
    checkin = cursor.flag("checkin ok")
    checkout = cursor.flag("checkout ok")
    renewal = cursor.flag("ACS renewal policy")
    status_update = cursor.flag("status update ok")
    offline = cursor.flag("off-line ok")
    timeout = cursor.fixed(3, "timeout period", _DIGITS3)
    retries = cursor.fixed(3, "retries allowed", _DIGITS3)
    date = cursor.fixed(18, "date/time sync", _DATE)
    version = cursor.fixed(4, "protocol version", re.compile(r"\d\.\d\d"))
    fields = cursor.variable(_ACS_REPEATABLE)
    # BX is required from 2.00 on, and absent from a 1.00 ACS's answer: read if present.
    supported = _one(fields, "BX", what, required=False) or ""
    if supported and not re.fullmatch(r"[YN]{1,64}", supported):
        raise Sip2FormatError(f"{what}: supported messages {supported!r} are not Y/N flags")
    return AcsStatus(
        online=online,
        checkin_ok=checkin,
        checkout_ok=checkout,
        renewal_policy=renewal,
        status_update_ok=status_update,
        offline_ok=offline,
        timeout_period=timeout,
        retries_allowed=retries,
        date_time_sync=date,
        protocol_version=version,
        institution_id=_one(fields, "AO", what, required=True) or "",
        supported_messages=supported,
        library_name=_one(fields, "AM", what, required=False),
        terminal_location=_one(fields, "AN", what, required=False),
        screen_message=tuple(fields.get("AF", [])),
    )


def _trailer(body: bytes) -> tuple[bytes, int | None, bool]:
    """``(payload, sequence, had checksum)`` of a CR-less message, its checksum verified.
    Checked on bytes first: a damaged message is a checksum error before it can be a
    decoding one."""
    if len(body) >= 6 and body[-6:-4] == b"AZ" and _HEX4.fullmatch(body[-4:]):
        expected = checksum(body[:-4])
        if body[-4:].decode("ascii").upper() != expected:
            raise Sip2ChecksumError(
                f"checksum {body[-4:].decode('ascii')} does not add up (expected {expected})"
            )
        rest = body[:-6]
        if len(rest) >= 3 and rest[-3:-1] == b"AY" and 0x30 <= rest[-1] <= 0x39:
            return rest[:-3], rest[-1] - 0x30, True
        return rest, None, True
    return body, None, False


def parse_message(
    raw: bytes,
    *,
    charset: str,
    sequence: int | None,
    error_detection: bool = True,
) -> Sip2Response:
    """One message from the ACS (with or without its closing CR) as a dataclass.

    ``sequence`` is the ``AY`` digit of the request it answers (None when the request had
    none); with ``error_detection`` the answer must carry a good checksum and repeat that
    digit (``96`` carries a checksum only). Raises only :class:`Sip2Error` subclasses."""
    _check_charset(charset)
    body = bytes(raw)
    if body.endswith(CR):
        body = body[:-1]
    if b"\r" in body or b"\x00" in body:
        raise Sip2FormatError("a message holds a CR or NUL before its end")
    if len(body) > MAX_MESSAGE_LENGTH:
        raise Sip2FormatError(f"a message of {len(body)} bytes is over {MAX_MESSAGE_LENGTH}")
    payload, answered, checked = _trailer(body)
    if error_detection and not checked:
        raise Sip2ChecksumError("the answer carries no checksum, and error detection is on")
    if len(payload) < 2:
        raise Sip2FormatError(f"a message of {len(payload)} bytes has no message id")
    message_id = payload[:2]
    if message_id == b"96":
        if len(payload) != 2:
            raise Sip2FormatError("96 (Request SC Resend) carries fields")
        return ResendRequest()
    if error_detection and sequence is not None and answered != sequence:
        got = "none" if answered is None else str(answered)
        raise Sip2SequenceError(f"answer sequence number {got}, the request's was {sequence}")
    try:
        text = payload.decode(charset)
    except UnicodeDecodeError as exc:
        raise Sip2FormatError(f"the message is not {charset} text") from exc
    what = message_id.decode("ascii", "replace")
    cursor = _Cursor(text, what)
    if message_id == b"94":
        ok = cursor.fixed(1, "ok", re.compile(r"[01]"))
        if len(text) != 3:
            raise Sip2FormatError("94: bytes after the ok field")
        return LoginResponse(ok=ok == "1")
    if message_id == b"98":
        return _acs_status(cursor)
    if message_id == b"24":
        return _patron(cursor, information=False)
    if message_id == b"64":
        return _patron(cursor, information=True)
    raise Sip2FormatError(f"unknown or unexpected message id {what!r} from the ACS")


def parse_response(
    raw: bytes,
    expected: type[R],
    *,
    charset: str,
    sequence: int | None,
    error_detection: bool = True,
) -> R:
    """:func:`parse_message`, and the answer must be an ``expected`` (e.g. a 94 to a 93).
    ``96`` raises :class:`Sip2ResendRequested`."""
    message = parse_message(
        raw, charset=charset, sequence=sequence, error_detection=error_detection
    )
    if isinstance(message, ResendRequest):
        raise Sip2ResendRequested("the ACS asked for the request again (96)")
    if type(message) is not expected:
        raise Sip2FormatError(
            f"expected a {expected.__name__}, the ACS answered a {type(message).__name__}"
        )
    return message  # type: ignore[return-value]


def parse_standing(
    raw: bytes, *, charset: str, sequence: int | None, error_detection: bool = True
) -> PatronStanding:
    """The standing in a ``24`` or ``64`` answer."""
    message = parse_message(
        raw, charset=charset, sequence=sequence, error_detection=error_detection
    )
    if isinstance(message, ResendRequest):
        raise Sip2ResendRequested("the ACS asked for the request again (96)")
    if not isinstance(message, PatronStatusResponse):
        raise Sip2FormatError(f"expected 24 or 64, the ACS answered {type(message).__name__}")
    return message.standing()


# --- framing ------------------------------------------------------------------------------


class Sip2Framer:
    """Bytes from the socket in, complete messages out (without their CR).

    A message longer than ``max_length`` without its CR is an error, and so is every
    later :meth:`feed`: a connection that sent one is dropped, not resynchronised. An LF
    right after a CR (ACSs that end lines with CR LF) is dropped."""

    def __init__(self, max_length: int = MAX_MESSAGE_LENGTH) -> None:
        self._buffer = bytearray()
        self._max = max_length
        self._broken: Sip2FormatError | None = None

    @property
    def pending(self) -> int:
        """Bytes received that do not yet make a message."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        if self._broken is not None:
            raise self._broken
        self._buffer += data
        return list(self._messages())

    def _messages(self) -> Iterator[bytes]:
        while True:
            if self._buffer[:1] == b"\n":
                del self._buffer[:1]
            end = self._buffer.find(CR)
            if end == -1:
                if len(self._buffer) > self._max:
                    self._buffer.clear()
                    self._broken = Sip2FormatError(
                        f"more than {self._max} bytes without a CR: not SIP2"
                    )
                    raise self._broken
                return
            if end > self._max:
                self._buffer.clear()
                self._broken = Sip2FormatError(f"a message of {end} bytes is over {self._max}")
                raise self._broken
            message = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            yield message


# --- which identifier the ILS knows the holder by ------------------------------------------


class PatronIdKind(enum.StrEnum):
    """What goes in ``AA``: the card number, the social security number (the citizen ID
    number), or a keyed token the library's ILS was loaded with."""

    card_number = "card_number"
    social_security_number = "social_security_number"
    token = "token"


def patron_identifier(
    kind: PatronIdKind | str,
    *,
    card_number: str | None = None,
    social_security_number: str | None = None,
    token_key: bytes | None = None,
) -> str:
    """The ``AA`` value of a holder, from what the gate read. ``token``: the first 8 bytes
    of :func:`terminal.privacy.cardtoken.card_token` of the card number, 16 lower-case hex
    digits (the hotlist's form: the back office computes the same for the ILS)."""
    try:
        kind = PatronIdKind(kind)
    except ValueError as exc:
        raise ConfigError(f"patron_id {kind!r} is not one of {_names(PatronIdKind)}") from exc
    if kind is PatronIdKind.social_security_number:
        value = (social_security_number or "").strip()
        if not value:
            raise PatronIdError("no social security number for the ILS patron identifier")
        return _value("patron identifier", value)
    number = (card_number or "").strip()
    if not number:
        raise PatronIdError("no card number for the ILS patron identifier")
    if kind is PatronIdKind.card_number:
        return _value("patron identifier", number)
    if token_key is None:
        raise ConfigError("patron_id = 'token' needs the card token key")
    return card_token(token_key, number)[:8].hex()


def _names(kind: type[enum.Enum]) -> str:
    return ", ".join(member.name for member in kind)


# --- what the gate does -------------------------------------------------------------------


class FlagDecision(enum.StrEnum):
    refuse = "refuse"
    admit = "admit"
    warn = "warn"  # admit, and show the message


class NotAPatron(enum.StrEnum):
    admit_for_reading = "admit_for_reading"
    refuse = "refuse"


@dataclass(frozen=True)
class FlagRule:
    decision: FlagDecision
    message: str = ""


DEFAULT_FLAG_RULES: Mapping[PatronFlag, FlagRule] = types.MappingProxyType(
    {
        # Borrowing privileges and counts say nothing about entering the building.
        PatronFlag.charge_privileges_denied: FlagRule(FlagDecision.admit),
        PatronFlag.renewal_privileges_denied: FlagRule(FlagDecision.admit),
        PatronFlag.recall_privileges_denied: FlagRule(FlagDecision.admit),
        PatronFlag.hold_privileges_denied: FlagRule(FlagDecision.admit),
        PatronFlag.too_many_items_charged: FlagRule(FlagDecision.admit),
        PatronFlag.too_many_renewals: FlagRule(FlagDecision.admit),
        # A card reported lost may be in someone else's hand.
        PatronFlag.card_reported_lost: FlagRule(FlagDecision.refuse, "借书证已挂失，请到服务台"),
        PatronFlag.too_many_items_overdue: FlagRule(
            FlagDecision.refuse, "有逾期未还图书，请先归还"
        ),
        PatronFlag.excessive_outstanding_fines: FlagRule(
            FlagDecision.refuse, "欠款超过限额，请到服务台缴费"
        ),
        PatronFlag.excessive_outstanding_fees: FlagRule(
            FlagDecision.refuse, "欠费超过限额，请到服务台缴费"
        ),
        PatronFlag.recall_overdue: FlagRule(FlagDecision.warn, "有被召回的图书已逾期，请尽快归还"),
        PatronFlag.too_many_claims_of_items_returned: FlagRule(
            FlagDecision.warn, "有声称已还的图书记录，请到服务台核对"
        ),
        PatronFlag.too_many_items_lost: FlagRule(
            FlagDecision.warn, "有图书丢失记录，请到服务台处理"
        ),
        PatronFlag.too_many_items_billed: FlagRule(
            FlagDecision.warn, "有待缴的图书赔偿，请到服务台处理"
        ),
    }
)
GENERIC_MESSAGE = "请到服务台咨询"
DEFAULT_NOT_A_PATRON_MESSAGE = "您尚未办理借书证，可入馆阅览；办证请持社保卡到服务台"
DEFAULT_NOT_A_PATRON_REFUSED = "您尚未办理借书证，请持社保卡到服务台办理"


@dataclass(frozen=True)
class LibraryDecision:
    """The gate's answer for one holder. ``reason`` is for machines (the journal):
    ``patron_ok``, ``patron_warned:<flag>``, ``patron_blocked:<flag>``, ``not_a_patron``
    (and ``ils_unavailable`` from :func:`terminal.venue.ils.fallback_decision`);
    ``message`` is for the holder's display."""

    admit: bool
    reason: str
    message: str = ""


_POLICY_KEYS = frozenset({"flags", "not_a_patron", "not_a_patron_message", "welcome_message"})


@dataclass(frozen=True)
class PatronPolicy:
    """Flags -> refuse / admit / warn with the holder's message; what to do for a holder
    the ILS does not know (``BL`` N). A standing without ``BL`` is decided by its flags."""

    rules: Mapping[PatronFlag, FlagRule] = field(default_factory=lambda: DEFAULT_FLAG_RULES)
    not_a_patron: NotAPatron = NotAPatron.admit_for_reading
    not_a_patron_message: str = DEFAULT_NOT_A_PATRON_MESSAGE
    welcome_message: str = ""

    @classmethod
    def from_dict(cls, config: Mapping[str, object]) -> PatronPolicy:
        """From a TOML table: ``flags`` (flag name -> ``"refuse"``/``"admit"``/``"warn"``
        or ``{decision = ..., message = ...}``; flags left out keep their default),
        ``not_a_patron``, ``not_a_patron_message``, ``welcome_message``. Unknown keys,
        flags or decisions are a :class:`ConfigError` (a typo must not pass silently)."""
        unknown = set(config) - _POLICY_KEYS
        if unknown:
            raise ConfigError(f"unknown patron policy keys: {', '.join(sorted(unknown))}")
        rules = dict(DEFAULT_FLAG_RULES)
        flags = config.get("flags", {})
        if not isinstance(flags, Mapping):
            raise ConfigError("flags must be a table of flag name -> decision")
        for name, value in flags.items():
            try:
                flag = PatronFlag[name]
            except KeyError:
                raise ConfigError(
                    f"unknown patron flag {name!r}; flags are {_names(PatronFlag)}"
                ) from None
            rules[flag] = _rule(name, value, rules[flag])
        not_a_patron = config.get("not_a_patron", NotAPatron.admit_for_reading.value)
        try:
            kind = NotAPatron(not_a_patron)
        except ValueError:
            raise ConfigError(
                f"not_a_patron {not_a_patron!r} is not one of {_names(NotAPatron)}"
            ) from None
        default_message = (
            DEFAULT_NOT_A_PATRON_MESSAGE
            if kind is NotAPatron.admit_for_reading
            else DEFAULT_NOT_A_PATRON_REFUSED
        )
        return cls(
            rules=types.MappingProxyType(rules),
            not_a_patron=kind,
            not_a_patron_message=_text(config, "not_a_patron_message", default_message),
            welcome_message=_text(config, "welcome_message", ""),
        )

    def decide(self, standing: PatronStanding) -> LibraryDecision:
        """Refuse on the first refusing flag (in wire order); else admit, with the first
        warning's message, or the welcome message."""
        if standing.valid_patron is False:
            return LibraryDecision(
                self.not_a_patron is NotAPatron.admit_for_reading,
                "not_a_patron",
                self.not_a_patron_message,
            )
        flags = sorted(standing.flags, key=lambda flag: flag.value)
        ruled = [(flag, self.rules.get(flag, FlagRule(FlagDecision.admit))) for flag in flags]
        for flag, rule in ruled:
            if rule.decision is FlagDecision.refuse:
                return LibraryDecision(False, f"patron_blocked:{flag.name}", rule.message)
        for flag, rule in ruled:
            if rule.decision is FlagDecision.warn:
                return LibraryDecision(True, f"patron_warned:{flag.name}", rule.message)
        return LibraryDecision(True, "patron_ok", self.welcome_message)


def _rule(name: str, value: object, default: FlagRule) -> FlagRule:
    if isinstance(value, str):
        decision, message = value, None
    elif isinstance(value, Mapping):
        extra = set(value) - {"decision", "message"}
        if extra or "decision" not in value:
            raise ConfigError(f"flag {name}: a table of decision and (optional) message")
        decision, message = value["decision"], value.get("message")
        if message is not None and not isinstance(message, str):
            raise ConfigError(f"flag {name}: message must be text")
    else:
        raise ConfigError(f"flag {name}: a decision or a table of decision and message")
    try:
        chosen = FlagDecision(decision)
    except ValueError:
        raise ConfigError(
            f"flag {name}: decision {decision!r} is not one of {_names(FlagDecision)}"
        ) from None
    if message is None:
        # A flag turned into a refusal or a warning keeps its default text, or a general one.
        message = "" if chosen is FlagDecision.admit else (default.message or GENERIC_MESSAGE)
    return FlagRule(chosen, message)


def _text(config: Mapping[str, object], key: str, default: str) -> str:
    value = config.get(key, default)
    if not isinstance(value, str):
        raise ConfigError(f"{key} must be text")
    return value
