"""The wire between ``libonecard_sscard.so`` (the LD/T 33 reader library hospital systems
load) and the counter service: one request line, one answer line (docs/his-integration.md,
"The socket protocol"). Pure functions over bytes, no I/O.

A request is one line of printable ASCII, at most :data:`MAX_REQUEST` bytes with its LF::

    SSCARD/1 <encoding> <function> [<argument>]\\n

``encoding`` is ``GBK`` or ``UTF-8`` (how the answer's text is to be encoded: hospital
systems expect GBK names); ``function`` one of :class:`Function`; the argument is the
``iType`` (1-4) for the card functions, the HSM's answer for ``HSM2`` (may be absent), and
nothing for ``PING``.

An answer is one line, at most :data:`MAX_ANSWER` bytes with its LF::

    <code> <text>\\n

``code`` is the LD/T 33 return value in decimal (``0`` or negative); ``text`` is the
function's output string on success, or a short reason (``no_card: ...``) on failure, in the
requested encoding. Neither GBK nor UTF-8 ever encodes a character with a byte 0x0A, so the
LF ends the line whatever the text; control characters are never sent. The library copies
``text`` into the caller's buffer, which the standard sizes at 1024 bytes or more: answers
are kept below :data:`MAX_TEXT` bytes so that text and NUL always fit.

One request per connection: the library connects, writes its line, reads one line, closes.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from terminal import ldt33
from terminal.errors import OneCardError, ParseError

PROTOCOL = b"SSCARD/1"
MAX_REQUEST = 256
"""Bytes of a request, LF included: a longer line is refused without reading on."""
MAX_TEXT = 1023
"""Bytes of an answer's text: the 1024-byte buffer callers pass, less the NUL."""
MAX_ANSWER = MAX_TEXT + 16
"""Bytes of an answer line: the code, a space, the text and the LF."""

# Return codes of the standard's list (terminal.ldt33) used here, and the ones the standard
# as we know it (shared domain.md section 3) does not name. The latter are the codes LD/T 33
# vendor libraries are seen to use (unconfirmed against the standard's text): hospital
# systems show any negative value as a failure with pOutInfo's text.
UNSUPPORTED = -13
"""The function is not offered (onecard; vendor libraries' "command not supported")."""
BAD_PARAMETER = -14
"""A parameter the library refuses before asking the service (iType out of 1-4, no buffer)
and a request the service refuses (``bad_request``)."""
BAD_ANSWER = -15
"""The service's answer is not a protocol answer (the library's check)."""
PIN_NOT_ENTERED = -55
"""PIN entry cancelled at the pad, or the new PIN not confirmed: nothing sent to the card."""


class Encoding(enum.Enum):
    GBK = "GBK"
    UTF8 = "UTF-8"

    @property
    def codec(self) -> str:
        return "gbk" if self is Encoding.GBK else "utf-8"


class Function(enum.Enum):
    """The library's functions, by their protocol names."""

    READ = "READ"  # iReadCardBas
    HSM1 = "HSM1"  # iReadCardBas_HSM_Step1
    HSM2 = "HSM2"  # iReadCardBas_HSM_Step2
    VERIFY_PIN = "VERIFYPIN"  # iVerifyPIN
    CHANGE_PIN = "CHANGEPIN"  # iChangePIN
    PING = "PING"  # iGetReaderInfo


_TYPED = frozenset({Function.READ, Function.HSM1, Function.VERIFY_PIN, Function.CHANGE_PIN})
ITYPES = frozenset(
    {
        ldt33.TYPE_CONTACT,
        ldt33.TYPE_CONTACTLESS,
        ldt33.TYPE_AUTO_CONTACT_FIRST,
        ldt33.TYPE_AUTO_CONTACTLESS_FIRST,
    }
)
MAX_HSM_KEY = 128
"""Characters of Step2's ``pKey``: the standard's is 16 + 1 + 32."""


class SscardRequestError(ParseError):
    """A request line that is not one of this protocol: refused with :data:`BAD_PARAMETER`."""

    code = "bad_request"


class SscardAnswerError(ParseError):
    """An answer line that is not one of this protocol."""

    code = "bad_answer"


@dataclass(frozen=True)
class SscardRequest:
    function: Function
    encoding: Encoding
    itype: int | None = None
    """The LD/T 33 ``iType`` (READ, HSM1, VERIFYPIN, CHANGEPIN)."""
    key: str = ""
    """Step2's ``pKey`` (HSM2); printable ASCII without spaces."""


def parse_request(line: bytes) -> SscardRequest:
    """The request in ``line`` (LF included or not). :class:`SscardRequestError` with the
    reason for anything else; never anything else raised."""
    if len(line) > MAX_REQUEST:
        raise SscardRequestError(f"request longer than {MAX_REQUEST} bytes")
    if line.endswith(b"\n"):
        line = line[:-1]
    if not line or any(b < 0x20 or b > 0x7E for b in line):
        raise SscardRequestError("a request is one line of printable ASCII")
    words = line.split(b" ")
    if words[0] != PROTOCOL:
        raise SscardRequestError("not an SSCARD/1 request")
    if len(words) < 3:
        raise SscardRequestError("a request names an encoding and a function")
    try:
        encoding = Encoding(words[1].decode("ascii"))
    except ValueError:
        raise SscardRequestError("encoding must be GBK or UTF-8") from None
    try:
        function = Function(words[2].decode("ascii"))
    except ValueError:
        raise SscardRequestError("unknown function") from None
    args = words[3:]
    if function in _TYPED:
        if len(args) != 1:
            raise SscardRequestError(f"{function.value} takes one iType")
        text = args[0].decode("ascii")
        if not (len(text) == 1 and text.isdigit() and int(text) in ITYPES):
            raise SscardRequestError("iType must be 1, 2, 3 or 4")
        return SscardRequest(function, encoding, itype=int(text))
    if function is Function.HSM2:
        if len(args) > 1:
            raise SscardRequestError("HSM2 takes one key")
        key = args[0].decode("ascii") if args else ""
        if len(key) > MAX_HSM_KEY:
            raise SscardRequestError(f"HSM2 key longer than {MAX_HSM_KEY} characters")
        return SscardRequest(function, encoding, key=key)
    if args:
        raise SscardRequestError(f"{function.value} takes no argument")
    return SscardRequest(function, encoding)


def format_request(request: SscardRequest) -> bytes:
    """The line for ``request`` (what the library sends; tests and the bench use it)."""
    words = [PROTOCOL, request.encoding.value.encode(), request.function.value.encode()]
    if request.itype is not None:
        words.append(str(request.itype).encode())
    elif request.function is Function.HSM2 and request.key:
        words.append(request.key.encode("ascii"))
    return b" ".join(words) + b"\n"


def _clean(text: str) -> str:
    """``text`` with control characters replaced: the answer is one line, and a caller's
    log or screen never gets a control sequence from a card."""
    return "".join(" " if ord(ch) < 0x20 or ord(ch) == 0x7F else ch for ch in text)


def format_answer(code: int, text: str, encoding: Encoding) -> bytes:
    """The answer line for ``code`` and ``text``. A character the encoding cannot hold
    becomes ``?`` (GBK holds every character of a Chinese name on a card); a text longer
    than :data:`MAX_TEXT` bytes is not cut (a cut record is a wrong record) but answered
    :data:`BAD_ANSWER` - the standard's strings are far shorter."""
    if code > 0:
        raise ValueError("LD/T 33 codes are 0 or negative")
    body = _clean(text).encode(encoding.codec, errors="replace")
    if len(body) > MAX_TEXT:
        code, body = BAD_ANSWER, b"answer_too_long: the output does not fit the buffer"
    return str(code).encode("ascii") + b" " + body + b"\n"


_CODE = re.compile(rb"0|-[1-9][0-9]{0,6}")


@dataclass(frozen=True)
class SscardAnswer:
    code: int
    text: bytes
    """In the request's encoding."""


def parse_answer(line: bytes) -> SscardAnswer:
    """The answer in ``line`` (what the library checks; the C library does the same)."""
    if len(line) > MAX_ANSWER or not line.endswith(b"\n"):
        raise SscardAnswerError("an answer is one line ending in LF")
    head, sep, text = line[:-1].partition(b" ")
    if not sep:
        raise SscardAnswerError("an answer is a code, a space and a text")
    if _CODE.fullmatch(head) is None:
        raise SscardAnswerError("the code must be 0 or a negative number")
    if len(text) > MAX_TEXT or any(b < 0x20 for b in text):
        raise SscardAnswerError("the text must fit the buffer and hold no control character")
    return SscardAnswer(int(head), text)


# --- transaction outcomes as LD/T 33 codes -------------------------------------------------

CARD_APPLICATION_BLOCKED = -0x9303
"""The card's application is blocked (9303): as a card status word, negative decimal."""

_OUTCOME_CODES: dict[str, int] = {
    # What the card is.
    "not_ssc": ldt33.WRONG_CARD_TYPE,
    "blocked": CARD_APPLICATION_BLOCKED,
    "not_authentic": ldt33.INTERNAL_AUTH_FAILED,
    "card_error": ldt33.NO_ANSWER,
    "unsupported_algorithm": ldt33.PSAM_LACKS_SM4,
    # The holder's PIN at the counter.
    "pin_wrong": ldt33.PIN_WRONG,
    "pin_blocked": ldt33.PIN_BLOCKED,
    "pin_cancelled": PIN_NOT_ENTERED,
    "pin_format": PIN_NOT_ENTERED,
    # The reader, while the card was read.
    "no_card": ldt33.NO_CARD,
    "card_removed": ldt33.NO_ANSWER,
    "card_unresponsive": ldt33.NO_ANSWER,
    "reader_error": ldt33.NO_ANSWER,
    "no_reader": ldt33.READER_CONNECTION,
    "pcsc_unavailable": ldt33.READER_CONNECTION,
    "no_psam": ldt33.NO_PSAM,
    "algorithm_missing": ldt33.PSAM_LACKS_SM4,
    "key_missing": ldt33.NO_RKSSSE,
}
TERMINAL_FAULTS = frozenset(
    {"journal_full", "journal_error", "internal_error", "no_application_list", "no_reader"}
)
"""Refusals that are the terminal's own fault, not the card's: the hospital system is told
the reader side failed (``READER_CONNECTION``) rather than that the card is wrong."""


def outcome_code(reason: str) -> int:
    """The LD/T 33 code of a counter transaction that did not hand the record over, by its
    reason. A refusal of the acceptance policy (``hotlisted``, ``card_expired``,
    ``region_not_accepted``...) is :data:`terminal.ldt33.WRONG_CARD_TYPE`: the card is not
    one this counter takes, and the reason travels in the text. Pure."""
    if reason in _OUTCOME_CODES:
        return _OUTCOME_CODES[reason]
    if reason in TERMINAL_FAULTS:
        return ldt33.READER_CONNECTION
    return ldt33.WRONG_CARD_TYPE


def error_answer(error: OneCardError) -> tuple[int, str]:
    """Code and text for a typed error raised while serving a request."""
    if isinstance(error, SscardRequestError):
        return BAD_PARAMETER, f"bad_request: {error.reason}"
    if error.code in ("pin_cancelled", "pin_format"):
        return PIN_NOT_ENTERED, f"{error.code}: {error.reason}"
    return ldt33.error_code(error), f"{error.code}: {error.reason}"
