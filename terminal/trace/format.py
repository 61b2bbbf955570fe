"""Trace files: what a terminal and a card (and a PSAM) said to each other, as text.

A trace is the field's record of one card session: the card's ATR, the protocol and
interface, and the ordered APDU exchanges, each on its slot (the card or the PSAM), plus the
terminal's own random values in the order it drew them (the process factor and originals of
INTERNAL/EXTERNAL AUTHENTICATE), so that a replay can make the terminal send exactly the
recorded bytes. ``firmware_sim.trace_card`` replays a trace as a strict card; ``onecard read
--trace`` and ``onecard verify --trace`` record one (:mod:`terminal.trace.record`, which also
keeps the holder's data out of it). This module reads and writes the text.

Three text shapes are read (docs/traces.md):

* **onecard traces** (written here): the request/answer lines of the vendor reader log below,
  one each, with ``#`` header lines; the first line is ``# onecard-trace: 1``::

      # onecard-trace: 1
      # ats: 127880A0020081544C96868451011A2B3C4D
      # random: 832859DC5C8D44E4
      请求=[SLOT:0][Len:20][00A404000F7378312E73682EC9E7BBE1B1A3D5CF]
      应答=[SLOT:0][Len:32][6F1C840F7378312E73682EC9E7BBE1B1A3D5CFA50988011E9F0C038601039000]

  SLOT:0 is the card, SLOT:17 the PSAM; ``Len`` is the byte count of the hex and is checked.
* **vendor reader logs** (gdgly/SI_3rdCard ``docs/EgAPP-20180611.log``): the same lines with
  a ``[hh:mm:ss]`` prefix and a ``; reader.cpp[..]`` suffix, every request and answer logged
  twice by two layers (the copy is dropped), the reset as ``复位信息[<ATS or ATR>]`` (an
  ISO 14443-4 ATS becomes the PC/SC pseudo-ATR ``3B 8n 80 01 <historical bytes> TCK``), and
  everything else noise.
* **HSM command streams** (``docs/加密机方式指令流.txt``): ``上电<ATR>``, then a command line
  and its answer line (hex), ``//`` comments, ``----`` separators, and the exchanges with the
  HSM (``加密机`` lines, ``|``-separated lines) skipped.

``#`` header lines (``# key: value``) are read in all three, so a vendor log can be given a
``# flow:``, ``# expect:`` and ``# random:`` lines without being rewritten.

Parsing is pure (text in, :class:`Trace` out) and raises only :class:`TraceFileError`, a
:class:`~terminal.errors.ParseError` naming the line.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from dataclasses import dataclass, field

from terminal.devices.reader import Interface
from terminal.errors import ApduError, ParseError
from terminal.iso7816.apdu import CommandAPDU
from terminal.iso7816.atr import historical_bytes

FORMAT_VERSION = "1"
MAGIC_KEY = "onecard-trace"
"""The key of the first header line of an onecard trace: ``# onecard-trace: 1``."""

CARD_SLOT = 0
PSAM_SLOT = 17
"""Slot numbers as the vendor reader library logs them: 0 the card (1 its contact slot),
17 (0x11) the first SAM slot."""

PROTOCOLS = ("T=0", "T=1")


class TraceFileError(ParseError):
    """A trace that does not parse; ``line`` is the 1-based line at fault (None: the whole)."""

    code = "malformed_trace"

    def __init__(self, reason: str, line: int | None = None) -> None:
        super().__init__(reason if line is None else f"line {line}: {reason}")
        self.line = line


class Slot(enum.Enum):
    """Who answered an exchange."""

    CARD = "card"
    PSAM = "psam"


_SLOT_OF_NUMBER = {0: Slot.CARD, 1: Slot.CARD, PSAM_SLOT: Slot.PSAM}
_NUMBER_OF_SLOT = {Slot.CARD: CARD_SLOT, Slot.PSAM: PSAM_SLOT}


class TraceFormat(enum.Enum):
    """The text shape a trace was read from."""

    ONECARD = "onecard"
    READER_LOG = "reader-log"
    HSM_LOG = "hsm-log"


class Flow(enum.Enum):
    """The terminal flow a trace records (``# flow:``), which a replay runs again."""

    READ = "read"
    VERIFY = "verify"
    PURCHASE = "purchase"


@dataclass(frozen=True)
class Exchange:
    """One command and the answer to it (data + SW1 SW2), as they crossed the wire.

    ``answer`` is None when the log holds no answer: the transmit failed (card gone), or a
    hand-written log left it out (``note`` says so). ``line`` is where the command was read.
    """

    slot: Slot
    command: bytes
    answer: bytes | None
    line: int = field(default=0, compare=False)
    note: str = field(default="", compare=False)


@dataclass(frozen=True)
class Expectation:
    """One ``key=value`` of a ``# expect:`` line: an outcome the replayed flow must give."""

    key: str
    value: str


@dataclass(frozen=True)
class Trace:
    """A parsed trace: metadata, exchanges in order, and the terminal's random values.

    ``atr`` is the ATR a PC/SC reader shows (for a contactless card the pseudo-ATR made from
    ``ats``); ``protocol`` is ``"T=0"`` or ``"T=1"``. ``extra`` keeps header lines this module
    gives no meaning to (``card``, ``source``, ...), in order.
    """

    exchanges: tuple[Exchange, ...]
    atr: bytes | None = None
    protocol: str = "T=0"
    interface: Interface = Interface.CONTACT
    ats: bytes | None = None
    psam_atr: bytes | None = None
    psam_protocol: str = "T=0"
    title: str = ""
    randoms: tuple[bytes, ...] = ()
    flow: Flow | None = None
    today: dt.date | None = None
    when: dt.datetime | None = None
    amount: int | None = None
    expect: tuple[Expectation, ...] = ()
    extra: tuple[tuple[str, str], ...] = ()
    format: TraceFormat = field(default=TraceFormat.ONECARD, compare=False)

    @property
    def has_psam(self) -> bool:
        return any(e.slot is Slot.PSAM for e in self.exchanges)

    def header(self, key: str) -> str | None:
        """The value of the first extra header ``key``, if any."""
        return next((v for k, v in self.extra if k == key), None)


# --- ATR and ATS ----------------------------------------------------------------------------


def check_atr(atr: bytes) -> bytes:
    """``atr`` if it opens with TS and T0 and its historical bytes (after the interface bytes
    T0 announces, :func:`terminal.iso7816.atr.historical_bytes`) are all there; ValueError
    otherwise."""
    if len(atr) < 2 or atr[0] not in (0x3B, 0x3F):
        raise ValueError("an ATR starts with TS 3B or 3F and T0")
    if len(historical_bytes(atr)) != atr[1] & 0x0F:
        raise ValueError("ATR interface or historical bytes cut short")
    return atr


def atr_protocol(atr: bytes) -> str:
    """The protocol a reader picks for a contact ``atr``: the one TD1 names (T=0 when the
    ATR has no TD1, ISO 7816-3)."""
    check_atr(atr)
    t0 = atr[1]
    td1 = 2 + bin(t0 & 0x70).count("1")  # after TA1 TB1 TC1
    if not t0 & 0x80 or td1 >= len(atr):
        return "T=0"
    return "T=1" if atr[td1] & 0x0F == 1 else "T=0"


def is_pseudo_atr(atr: bytes) -> bool:
    """True for a PC/SC part 3 pseudo-ATR of a contactless card, ``3B 8n 80 01 ...``."""
    return len(atr) >= 4 and atr[0] == 0x3B and atr[1] & 0xF0 == 0x80 and atr[2:4] == b"\x80\x01"


def pseudo_atr_from_ats(ats: bytes) -> bytes:
    """The PC/SC part 3 pseudo-ATR of an ISO 14443-4 card: ``3B 8n 80 01 <historical> TCK``
    from its ATS ``TL T0 [TA1] [TB1] [TC1] <historical>``; ValueError for a malformed ATS."""
    if len(ats) < 2 or ats[0] != len(ats):
        raise ValueError("an ATS opens with TL, its own length")
    t0 = ats[1]
    start = 2 + bin(t0 & 0x70).count("1")
    if start > len(ats):
        raise ValueError("ATS interface bytes cut short")
    historical = ats[start:]
    if len(historical) > 15:
        raise ValueError("a pseudo-ATR holds at most 15 historical bytes")
    body = bytes((0x80 | len(historical), 0x80, 0x01)) + historical
    tck = 0
    for b in body:
        tck ^= b
    return b"\x3b" + body + bytes((tck,))


# --- parsing --------------------------------------------------------------------------------

_EXCHANGE = re.compile(
    r"^(?:\[[0-9]{1,2}:[0-9]{2}:[0-9]{2}\]\s*)?(请求|应答)=\[SLOT:([0-9]{1,3})\]\[(Len:)?([0-9]{1,6})\]"
    r"\[([0-9A-Fa-f]*)\](.*)$"
)
_HEADER = re.compile(r"^#\s*([A-Za-z][A-Za-z0-9_-]*)\s*:\s*(.*?)\s*$")
_RESET_SLOT = re.compile(r"上电复位\[SLOT:([0-9]{1,3})\]")
_RESET_INFO = re.compile(r"复位信息:?\[([0-9A-Fa-f]*)\]")
_EXPECT_ITEM = re.compile(r"^([A-Za-z][A-Za-z0-9_.-]*)=(\S+)$")
# Status words an answer line of an HSM stream may end with: ISO 7816-4's 61xx..6Fxx and
# 9000, the e-purse's 93xx/94xx. Wider would take a written-out random (no SW) for an answer.
_PLAUSIBLE_SW1 = frozenset(range(0x61, 0x70)) | {0x93, 0x94}

_SINGLE_KEYS = frozenset(
    {
        MAGIC_KEY,
        "title",
        "atr",
        "ats",
        "protocol",
        "interface",
        "psam-atr",
        "psam-protocol",
        "flow",
        "today",
        "when",
        "amount",
    }
)


def _hex(text: str, line: int, what: str) -> bytes:
    digits = "".join(text.split())
    if len(digits) % 2 or not all(c in "0123456789abcdefABCDEF" for c in digits):
        raise TraceFileError(f"{what} is not hex: {text[:60]!r}", line)
    return bytes.fromhex(digits)


class _Builder:
    """Collects what the lines say; shared by the three text shapes."""

    def __init__(self, fmt: TraceFormat) -> None:
        self.fmt = fmt
        self.exchanges: list[Exchange] = []
        self.pending: Exchange | None = None
        self.headers: dict[str, tuple[str, int]] = {}
        self.randoms: list[bytes] = []
        self.expect: list[Expectation] = []
        self.extra: list[tuple[str, str]] = []
        self.reset_atr: dict[Slot, tuple[bytes, bool]] = {}  # slot -> (bytes, is ATS)

    # -- exchanges -----------------------------------------------------------------------

    def request(self, slot: Slot, command: bytes, line: int) -> None:
        if len(command) < 4:
            raise TraceFileError(f"a command of {len(command)} bytes has no header", line)
        self.flush()
        self.pending = Exchange(slot, command, None, line)

    def answer(self, slot: Slot, answer: bytes, line: int) -> None:
        if self.pending is None:
            raise TraceFileError("an answer without a command before it", line)
        if self.pending.slot is not slot:
            raise TraceFileError(
                f"an answer on the {slot.value} slot to a command for the "
                f"{self.pending.slot.value}",
                line,
            )
        if len(answer) < 2:
            raise TraceFileError(f"an answer of {len(answer)} bytes has no status word", line)
        pending = self.pending
        self.exchanges.append(Exchange(pending.slot, pending.command, answer, pending.line))
        self.pending = None

    def unanswered(self, note: str) -> None:
        if self.pending is not None:
            pending = self.pending
            self.exchanges.append(Exchange(pending.slot, pending.command, None, pending.line, note))
            self.pending = None

    def flush(self) -> None:
        self.unanswered("")

    # -- header lines --------------------------------------------------------------------

    def header(self, key: str, value: str, line: int) -> None:
        key = key.lower()
        if key in _SINGLE_KEYS:
            if key in self.headers:
                raise TraceFileError(f"header {key!r} given twice", line)
            self.headers[key] = (value, line)
            return
        if key == "random":
            value_bytes = _hex(value, line, "random value")
            if not value_bytes:
                raise TraceFileError("empty random value", line)
            self.randoms.append(value_bytes)
        elif key == "expect":
            items = value.split()
            if not items:
                raise TraceFileError("an expect line names no outcome", line)
            for item in items:
                m = _EXPECT_ITEM.match(item)
                if m is None:
                    raise TraceFileError(f"expected key=value, got {item!r}", line)
                self.expect.append(Expectation(m.group(1), m.group(2)))
        else:
            self.extra.append((key, value))

    def reset(self, slot: Slot, raw: bytes, line: int) -> None:
        if not raw:
            raise TraceFileError("empty reset answer", line)
        is_ats = raw[0] not in (0x3B, 0x3F)
        seen = self.reset_atr.get(slot)
        if seen is not None and seen[0] != raw:
            raise TraceFileError(
                f"a second {slot.value} with another reset answer: one card per trace", line
            )
        self.reset_atr[slot] = (raw, is_ats)

    # -- the result ----------------------------------------------------------------------

    def _get(self, key: str) -> tuple[str, int] | None:
        return self.headers.get(key)

    def _atr_header(self, key: str) -> tuple[bytes, int] | None:
        found = self._get(key)
        if found is None:
            return None
        raw = _hex(found[0], found[1], key)
        return raw, found[1]

    def build(self) -> Trace:
        self.flush()
        if not self.exchanges:
            raise TraceFileError("no exchange found: not a trace")
        atr: bytes | None = None
        ats: bytes | None = None
        atr_line: int | None = None
        given_atr = self._atr_header("atr")
        given_ats = self._atr_header("ats")
        if given_atr is not None and given_ats is not None:
            raise TraceFileError("give the atr or the ats, not both", given_ats[1])
        reset = self.reset_atr.get(Slot.CARD)
        if given_ats is not None:
            ats, atr_line = given_ats
        elif given_atr is not None:
            atr, atr_line = given_atr
        elif reset is not None:
            atr, ats = (None, reset[0]) if reset[1] else (reset[0], None)
        if ats is not None:
            try:
                atr = pseudo_atr_from_ats(ats)
            except ValueError as exc:
                raise TraceFileError(f"ats {ats.hex().upper()}: {exc}", atr_line) from None
        if atr is not None:
            try:
                check_atr(atr)
            except ValueError as exc:
                raise TraceFileError(f"atr {atr.hex().upper()}: {exc}", atr_line) from None

        interface = self._interface(atr, ats)
        protocol = self._protocol("protocol", atr, interface)
        psam_atr: bytes | None = None
        given_psam = self._atr_header("psam-atr")
        psam_reset = self.reset_atr.get(Slot.PSAM)
        if given_psam is not None:
            psam_atr = given_psam[0]
        elif psam_reset is not None and not psam_reset[1]:
            psam_atr = psam_reset[0]
        if psam_atr is not None:
            try:
                check_atr(psam_atr)
            except ValueError as exc:
                where = given_psam[1] if given_psam else None
                raise TraceFileError(f"psam-atr {psam_atr.hex().upper()}: {exc}", where) from None
        psam_protocol = self._protocol("psam-protocol", psam_atr, Interface.CONTACT)

        title = self._get("title")
        return Trace(
            exchanges=tuple(self.exchanges),
            atr=atr,
            protocol=protocol,
            interface=interface,
            ats=ats,
            psam_atr=psam_atr,
            psam_protocol=psam_protocol,
            title=title[0] if title else "",
            randoms=tuple(self.randoms),
            flow=self._flow(),
            today=self._today(),
            when=self._when(),
            amount=self._amount(),
            expect=tuple(self.expect),
            extra=tuple(self.extra),
            format=self.fmt,
        )

    def _interface(self, atr: bytes | None, ats: bytes | None) -> Interface:
        found = self._get("interface")
        if found is not None:
            try:
                return Interface(found[0].lower())
            except ValueError:
                raise TraceFileError(
                    f"interface is contact or contactless, not {found[0]!r}", found[1]
                ) from None
        if ats is not None or (atr is not None and is_pseudo_atr(atr)):
            return Interface.CONTACTLESS
        return Interface.CONTACT

    def _protocol(self, key: str, atr: bytes | None, interface: Interface) -> str:
        found = self._get(key)
        if found is not None:
            value = found[0].upper().replace(" ", "")
            if value not in PROTOCOLS:
                raise TraceFileError(f"{key} is T=0 or T=1, not {found[0]!r}", found[1])
            return value
        if interface is Interface.CONTACTLESS:
            return "T=1"
        return atr_protocol(atr) if atr is not None else "T=0"

    def _flow(self) -> Flow | None:
        found = self._get("flow")
        if found is None:
            return None
        try:
            return Flow(found[0].lower())
        except ValueError:
            names = ", ".join(f.value for f in Flow)
            raise TraceFileError(f"flow is one of {names}, not {found[0]!r}", found[1]) from None

    def _today(self) -> dt.date | None:
        found = self._get("today")
        if found is None:
            return None
        try:
            return dt.date.fromisoformat(found[0])
        except ValueError:
            raise TraceFileError(f"today is YYYY-MM-DD, not {found[0]!r}", found[1]) from None

    def _when(self) -> dt.datetime | None:
        found = self._get("when")
        if found is None:
            return None
        try:
            return dt.datetime.fromisoformat(found[0])
        except ValueError:
            raise TraceFileError(
                f"when is YYYY-MM-DDTHH:MM:SS, not {found[0]!r}", found[1]
            ) from None

    def _amount(self) -> int | None:
        found = self._get("amount")
        if found is None:
            return None
        if not (found[0].isascii() and found[0].isdigit() and len(found[0]) <= 10):
            raise TraceFileError(f"amount is a number of fen, not {found[0]!r}", found[1])
        return int(found[0])


def _header_line(builder: _Builder, text: str, number: int) -> bool:
    """Take a ``#`` line: a ``key: value`` header or a comment. False if not a ``#`` line."""
    if not text.startswith("#"):
        return False
    m = _HEADER.match(text)
    if m is not None:
        builder.header(m.group(1), m.group(2), number)
    return True


def _exchange_line(builder: _Builder, m: re.Match[str], number: int, dedupe: bool) -> None:
    kind, slot_text, _len_prefix, length_text, digits, _rest = m.groups()
    slot = _SLOT_OF_NUMBER.get(int(slot_text))
    if slot is None:
        raise TraceFileError(
            f"SLOT:{slot_text} is neither the card (0, 1) nor the PSAM (17)", number
        )
    data = _hex(digits, number, "APDU")
    if int(length_text) != len(data):
        raise TraceFileError(
            f"Len says {int(length_text)} bytes, the hex holds {len(data)}", number
        )
    if kind == "请求":
        pending = builder.pending
        if dedupe and pending is not None and pending.slot is slot and pending.command == data:
            return  # the same request logged by the second layer of the reader library
        builder.request(slot, data, number)
        return
    if dedupe and builder.pending is None and builder.exchanges:
        last = builder.exchanges[-1]
        if last.slot is slot and last.answer == data:
            return  # the same answer logged by the second layer
    builder.answer(slot, data, number)


def _parse_line_format(lines: list[str], fmt: TraceFormat) -> Trace:
    """onecard traces (strict: no other lines) and vendor reader logs (noise skipped, the
    double logging of each APDU folded)."""
    strict = fmt is TraceFormat.ONECARD
    builder = _Builder(fmt)
    reset_slot = Slot.CARD
    for number, raw_line in enumerate(lines, 1):
        text = raw_line.strip()
        if not text or _header_line(builder, text, number):
            continue
        m = _EXCHANGE.match(text)
        if m is not None:
            rest = m.group(6)
            if strict and rest and rest[0] not in ",;":
                raise TraceFileError(f"unexpected text after the APDU: {rest[:40]!r}", number)
            _exchange_line(builder, m, number, dedupe=not strict)
            continue
        if strict:
            raise TraceFileError(f"neither a # line nor a 请求=/应答= line: {text[:60]!r}", number)
        if "请求=" in text or "应答=" in text:
            raise TraceFileError(f"malformed request/answer line: {text[:80]!r}", number)
        slot_match = _RESET_SLOT.search(text)
        if slot_match is not None:
            found = _SLOT_OF_NUMBER.get(int(slot_match.group(1)))
            reset_slot = found if found is not None else reset_slot
        info = _RESET_INFO.search(text)
        if info is not None:
            builder.reset(reset_slot, _hex(info.group(1), number, "reset answer"), number)
    return builder.build()


def _plausible_answer(data: bytes) -> bool:
    return len(data) >= 2 and (data[-2] in _PLAUSIBLE_SW1 or data[-2:] == b"\x90\x00")


def _is_command(data: bytes) -> bool:
    if len(data) < 4:
        return False
    try:
        CommandAPDU.from_bytes(data)
    except ApduError:
        return False
    return True


def _parse_hsm_stream(lines: list[str]) -> Trace:
    """An HSM command stream: ``上电<ATR>``, command line, answer line, noise between."""
    builder = _Builder(TraceFormat.HSM_LOG)
    hsm_next = False  # the next data line belongs to the HSM (after a 加密机 label)
    for number, raw_line in enumerate(lines, 1):
        text = raw_line.strip()
        if _header_line(builder, text, number):
            continue
        text = text.split("//", 1)[0].strip()  # comments, also trailing an answer
        if not text or set(text) <= set("-=_*"):
            continue
        if text.startswith("上电"):
            raw = _hex(text[2:].lstrip(":： "), number, "ATR")
            builder.reset(Slot.CARD, raw, number)
            continue
        if "加密机" in text:
            hsm_next = True
            continue
        if "|" in text:
            hsm_next = False  # an HSM input or output line
            continue
        digits = "".join(text.split())
        if len(digits) % 2 or not all(c in "0123456789abcdefABCDEF" for c in digits):
            continue  # a label: "UNBLOCK PIN", "一、", "密钥地址：0090"
        data = bytes.fromhex(digits)
        if hsm_next:
            hsm_next = False
            continue
        if builder.pending is not None and _plausible_answer(data):
            builder.answer(Slot.CARD, data, number)
        elif _is_command(data):
            builder.request(Slot.CARD, data, number)
        elif builder.pending is not None:
            builder.unanswered(f"answer written without status word: {data.hex().upper()}")
        else:
            raise TraceFileError(f"hex that is neither a command nor an answer: {digits}", number)
    return builder.build()


def parse_trace(text: str) -> Trace:
    """Parse any of the three shapes (see the module docstring), telling them apart by their
    lines: ``# onecard-trace:`` first, else request/answer lines, else an HSM stream."""
    if not isinstance(text, str):
        raise TraceFileError("a trace is text")
    lines = text.splitlines()
    first = next((line.strip() for line in lines if line.strip()), "")
    m = _HEADER.match(first)
    if m is not None and m.group(1).lower() == MAGIC_KEY:
        if m.group(2) != FORMAT_VERSION:
            raise TraceFileError(f"onecard trace version {m.group(2)!r} is not {FORMAT_VERSION}")
        return _parse_line_format(lines, TraceFormat.ONECARD)
    if any("请求=" in line or "应答=" in line for line in lines):
        return _parse_line_format(lines, TraceFormat.READER_LOG)
    return _parse_hsm_stream(lines)


def decode_trace_bytes(raw: bytes) -> str:
    """The text of a trace file: UTF-8 (with or without BOM), else GB 18030 - the encoding
    of vendor logs written on Chinese Windows."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("gb18030")
    except UnicodeDecodeError as exc:
        raise TraceFileError(f"neither UTF-8 nor GB 18030 text (byte {exc.start})") from None


# --- writing --------------------------------------------------------------------------------


def exchange_lines(exchange: Exchange) -> list[str]:
    """``请求=[SLOT:n][Len:n][HEX]`` and, if answered, ``应答=[SLOT:n][Len:n][HEX]``."""
    slot = _NUMBER_OF_SLOT[exchange.slot]
    out = [f"请求=[SLOT:{slot}][Len:{len(exchange.command)}][{exchange.command.hex().upper()}]"]
    if exchange.answer is not None:
        out.append(
            f"应答=[SLOT:{slot}][Len:{len(exchange.answer)}][{exchange.answer.hex().upper()}]"
        )
    return out


def format_trace(trace: Trace) -> str:
    """The onecard trace text of ``trace``; :func:`parse_trace` reads it back equal."""
    out = [f"# {MAGIC_KEY}: {FORMAT_VERSION}"]
    if trace.title:
        out.append(f"# title: {_one_line(trace.title)}")
    for key, value in trace.extra:
        out.append(f"# {key}: {_one_line(value)}")
    if trace.flow is not None:
        out.append(f"# flow: {trace.flow.value}")
    if trace.today is not None:
        out.append(f"# today: {trace.today.isoformat()}")
    if trace.when is not None:
        out.append(f"# when: {trace.when.isoformat()}")
    if trace.amount is not None:
        out.append(f"# amount: {trace.amount}")
    for item in trace.expect:
        out.append(f"# expect: {item.key}={item.value}")
    if trace.ats is not None:
        out.append(f"# ats: {trace.ats.hex().upper()}")
    elif trace.atr is not None:
        out.append(f"# atr: {trace.atr.hex().upper()}")
    out.append(f"# interface: {trace.interface.value}")
    out.append(f"# protocol: {trace.protocol}")
    if trace.psam_atr is not None:
        out.append(f"# psam-atr: {trace.psam_atr.hex().upper()}")
    if trace.has_psam or trace.psam_atr is not None or trace.psam_protocol != "T=0":
        out.append(f"# psam-protocol: {trace.psam_protocol}")
    for value in trace.randoms:
        out.append(f"# random: {value.hex().upper()}")
    for exchange in trace.exchanges:
        out.extend(exchange_lines(exchange))
    return "\n".join(out) + "\n"


def _one_line(text: str) -> str:
    """``text`` with every character that would end a line (str.splitlines) made a space."""
    return " ".join(text.splitlines())
