"""Recording a trace from a real reader, with the holder's data kept out of it.

``onecard read --trace`` and ``onecard verify --trace`` wrap the reader back-end in a
:class:`RecordingBackend`: every exchange with the card and the PSAM is kept, in order, as an
:class:`terminal.trace.format.Exchange`, and :meth:`RecordingBackend.trace` gives the session as
a :class:`terminal.trace.format.Trace` to write. :class:`RecordingRandom` keeps the terminal's
random values (the process factors and originals a replay must draw again).

What a card connection may write (:class:`PrivacyFilter`), unless ``raw``:

* commands: the data of every PIN-carrying command (VERIFY ``00 20``, CHANGE REFERENCE DATA
  ``00 24``, RESET RETRY COUNTER ``00 2C``, CHANGE PIN ``80 5E``) is zeroed, header and Lc
  kept (:func:`terminal.devices.reader.hide_pin`, the terminal's one rule) - also with ``raw``;
* every answer while the current file is EF06 (holder data): record answers (``00 B2`` and
  the GET RESPONSE that fetches one) keep their SIMPLE-TLV shape with every value replaced by
  a synthetic filler of the same length and format (:func:`anonymise_holder_records`), so
  the trace still replays and decodes; any other answer's data is zeroed;
* every answer while the current file is EF07 (fingerprint) or EF08 (photo): data zeroed;
* every answer while the recorder cannot tell the current file: masked as for EF06 (fail
  closed).

"Every answer" but those that by definition hold no file data, so that a verify trace stays
consistent with its PSAM exchanges: GET CHALLENGE, INTERNAL and EXTERNAL AUTHENTICATE (the
card's random, cryptograms over the terminal's own data), the PIN commands (status words)
and the reader's class FF (the UID).

The recorder follows what makes a file current on a card: SELECT (by FID, name, path ...),
and READ BINARY / READ RECORD naming an EF by SFI (``00 B2 01 34``: SFI 06, EF06 is then the
current EF and ``00 B2 <tag> 00`` reads it). A SELECT or SFI read of EF06/EF07/EF08 makes it
the current file whatever the card answered; one of any other file only when the card
accepted it. A masked answer that announces more data (``61xx``) masks the GET RESPONSEs that
fetch it, ``6Cxx`` re-issues included.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Iterable

from terminal.devices.reader import (
    GET_RESPONSE_INS,
    PIN_INSTRUCTIONS,
    CardConnection,
    Interface,
    ReaderBackend,
    ReaderInfo,
    hide_pin,
)
from terminal.errors import ApduError
from terminal.iso7816.apdu import CommandAPDU
from terminal.trace.format import Exchange, Expectation, Flow, Slot, Trace

HOLDER_FID = 0xEF06
HOLDER_SFI = 0x06
BIOMETRIC_FIDS = frozenset({0xEF07, 0xEF08})  # fingerprint, photo (domain.md 2)
BIOMETRIC_SFIS = frozenset({0x07, 0x08})
HOLDER_TAGS = frozenset({0x08, 0x09, 0x4E, 0x0A, 0x0B, 0x0C, 0x0D})
"""EF06 records whose values are personal data: SSN, name, name extension, sex, ethnicity,
birthplace, birth date (domain.md 2)."""

PRIVACY_NOTE = "EF06 values replaced by a synthetic filler, EF07/EF08 zeroed"
"""The ``holder-data`` header of a trace recorded with the privacy filter."""

INS_SELECT = 0xA4
INS_READ_BINARY = 0xB0
INS_READ_RECORD = 0xB2
ODD_READS = frozenset({0xB1, 0xB3})  # READ BINARY / READ RECORD with a data object: any file
READ_BINARY_BY_SFI = 0x80  # READ BINARY P1 bit 8: SFI in bits 5-1
SELECT_BY_PATH = frozenset({0x08, 0x09})  # SELECT P1: path from the MF / the current DF
NO_FILE_DATA = frozenset({0x84, 0x88, 0x82})
"""GET CHALLENGE, INTERNAL AUTHENTICATE, EXTERNAL AUTHENTICATE: answers that never hold file
data (with the PIN instructions and class FF, see the module docstring)."""
CLA_READER = 0xFF  # PC/SC part 3 pseudo-APDUs, answered by the reader (the UID)
ACCEPTED_SW1 = frozenset({0x90, 0x61, 0x62, 0x63, 0x6C})
"""An answer whose SW1 is one of these leaves the named file current on the card (done, more
data, a warning, a wrong Le); any other refused the command."""

_FILLER: dict[int, bytes] = {
    0x08: b"0" * 18,  # an: not a citizen ID (no region 000000 exists)
    0x09: "测试".encode("gbk"),  # GBK name "test", padded with 00
    0x0A: b"9",  # sex not stated
    0x0B: b"\x01",
    0x0C: b"\x00\x00\x00",
    0x0D: b"\x19\x70\x01\x01",
}


def holder_filler(tag: int, length: int) -> bytes:
    """A synthetic value of ``length`` bytes for EF06 record ``tag``, in the item's format
    (so a replay still decodes it): zeros, "测试", "9", 19700101 - never the holder's."""
    base = _FILLER.get(tag, b"")[:length]
    if tag == 0x09 and len(base) % 2:
        base = base[:-1]  # never half a GBK character
    return base + bytes(length - len(base))


def anonymise_holder_records(data: bytes) -> bytes:
    """``data`` (EF06 records, SIMPLE-TLV, one or many) with the value of every holder tag
    replaced by :func:`holder_filler` and any other value zeroed; data that does not walk as
    records is zeroed whole."""
    out = bytearray(data)
    offset = 0
    while offset < len(data):
        tag = data[offset]
        if offset + 1 >= len(data):
            return bytes(len(data))
        length, start = data[offset + 1], offset + 2
        if length == 0xFF:
            if offset + 3 >= len(data):
                return bytes(len(data))
            length, start = int.from_bytes(data[offset + 2 : offset + 4], "big"), offset + 4
        if start + length > len(data) or tag in (0x00, 0xFF):
            return bytes(len(data))
        out[start : start + length] = (
            holder_filler(tag, length) if tag in HOLDER_TAGS else bytes(length)
        )
        offset = start + length
    return bytes(out)


class CurrentFile(enum.Enum):
    """What the recorder knows of the card's current file."""

    PLAIN = "plain"  # the MF, a DF, or an EF without personal data
    HOLDER = "holder"  # EF06
    BIOMETRIC = "biometric"  # EF07 / EF08
    UNKNOWN = "unknown"  # lost track: masked like EF06


def _file_of_fid(fid: int) -> CurrentFile:
    if fid == HOLDER_FID:
        return CurrentFile.HOLDER
    return CurrentFile.BIOMETRIC if fid in BIOMETRIC_FIDS else CurrentFile.PLAIN


def _file_of_sfi(sfi: int) -> CurrentFile:
    if sfi == HOLDER_SFI:
        return CurrentFile.HOLDER
    return CurrentFile.BIOMETRIC if sfi in BIOMETRIC_SFIS else CurrentFile.PLAIN


def _selected(command: CommandAPDU) -> CurrentFile:
    """The file a SELECT makes current, as far as its P1 and data tell."""
    p1, data = command.p1, command.data
    if p1 in (0x00, 0x02) and len(data) == 2:  # by FID, EF under the current DF
        return _file_of_fid(int.from_bytes(data, "big"))
    if p1 == 0x00 and not data:  # the MF
        return CurrentFile.PLAIN
    if p1 in SELECT_BY_PATH and len(data) >= 2 and len(data) % 2 == 0:
        return _file_of_fid(int.from_bytes(data[-2:], "big"))  # the path ends at the file
    if p1 in (0x01, 0x03, 0x04):  # child DF, parent DF, DF name: a DF
        return CurrentFile.PLAIN
    return CurrentFile.UNKNOWN


class PrivacyFilter:
    """What one card connection may write: PIN data zeroed in commands and, unless ``raw``,
    the answers read from EF06, EF07, EF08 (or from a file it cannot name) masked. Follows
    every command that changes the current file (module docstring)."""

    def __init__(self, raw: bool) -> None:
        self.raw = raw
        self.current = CurrentFile.PLAIN  # after power-on the MF is current
        self.pending: CurrentFile | None = None
        """Where the data an answer announced (61xx) comes from, for the GET RESPONSEs that
        fetch it (PLAIN: data that is not the holder's, e.g. a cryptogram)."""
        self._pending_records = False  # ... and whether that answer is records

    def command(self, apdu: bytes) -> bytes:
        """The command as it may be written."""
        return hide_pin(apdu)

    def answer(self, apdu: bytes, answer: bytes) -> bytes:
        """The answer to ``apdu`` as it may be written (after following the current file)."""
        sw1 = answer[-2] if len(answer) >= 2 else None
        ins = apdu[1] if len(apdu) >= 4 else None
        if ins == GET_RESPONSE_INS and self.pending is not None:
            source, records = self.pending, self._pending_records
            if sw1 not in (0x61, 0x6C):  # 61xx: more of it; 6Cxx: the same again, right Le
                self.pending = None
        else:
            source, records = self._follow(apdu, sw1), ins == INS_READ_RECORD
            if _no_file_data(apdu):
                source = CurrentFile.PLAIN
            self.pending = source if sw1 == 0x61 else None
            self._pending_records = records
        if self.raw or source is CurrentFile.PLAIN or len(answer) <= 2:
            return answer
        data = answer[:-2]
        if records and source is not CurrentFile.BIOMETRIC:
            return anonymise_holder_records(data) + answer[-2:]
        return bytes(len(data)) + answer[-2:]

    def lost(self) -> None:
        """The exchange failed (no answer): from here the card's state is unknown."""
        self.current, self.pending = CurrentFile.UNKNOWN, None

    def _follow(self, apdu: bytes, sw1: int | None) -> CurrentFile:
        """Update :attr:`current` for ``apdu`` answered with ``sw1``; the file the answer
        comes from. A file with personal data becomes current whatever the card answered
        (fail closed); any other only if the card accepted the command."""
        try:
            command = CommandAPDU.from_bytes(apdu)
        except ApduError:
            # Not a command as ISO reads it: what a card made of it cannot be known.
            self.current = CurrentFile.UNKNOWN
            return self.current
        named = _named(command)
        if named is None or (named is CurrentFile.PLAIN and sw1 not in ACCEPTED_SW1):
            return self.current
        self.current = named
        return named


def _no_file_data(apdu: bytes) -> bool:
    """True for a command whose answer holds no file data whatever file is current."""
    if len(apdu) < 4:
        return False
    cla, ins = apdu[0], apdu[1]
    return cla == CLA_READER or ins in NO_FILE_DATA or ins in PIN_INSTRUCTIONS


def _named(command: CommandAPDU) -> CurrentFile | None:
    """The file ``command`` makes current on a card, or None if it leaves the current file."""
    ins = command.ins
    if ins == INS_SELECT:
        return _selected(command)
    if ins in ODD_READS:
        return CurrentFile.UNKNOWN
    if ins == INS_READ_BINARY and command.p1 & READ_BINARY_BY_SFI:
        return _file_of_sfi(command.p1 & 0x1F)
    if ins == INS_READ_RECORD and command.p2 >> 3:
        return _file_of_sfi(command.p2 >> 3)
    return None


class _RecordingConnection:
    """A :class:`CardConnection` that notes every exchange before handing the answer on."""

    def __init__(self, inner: CardConnection, slot: Slot, recorder: RecordingBackend) -> None:
        self._inner = inner
        self._slot = slot
        self._recorder = recorder
        # The PSAM's exchanges hold no holder data; its PIN-free commands are kept as sent.
        self._filter = PrivacyFilter(recorder.raw or slot is Slot.PSAM)
        self.reader = inner.reader
        self.atr = inner.atr
        self.protocol = inner.protocol
        self.interface = inner.interface

    def transmit_raw(self, apdu: bytes) -> bytes:
        shown = self._filter.command(bytes(apdu))
        try:
            answer = self._inner.transmit_raw(apdu)
        except BaseException:
            # The card left (or the reader failed) with the command on the wire: keep it.
            self._filter.lost()
            self._recorder.exchanges.append(Exchange(self._slot, shown, None))
            raise
        written = self._filter.answer(bytes(apdu), bytes(answer))
        self._recorder.exchanges.append(Exchange(self._slot, shown, written))
        return answer

    def close(self) -> None:
        self._inner.close()


class RecordingBackend:
    """A :class:`ReaderBackend` around another that records what crosses every connection.

    Connections to ``psam_reader`` are the PSAM slot, all others the card. Unless ``raw``,
    answers from EF06, EF07 and EF08 are masked (:class:`PrivacyFilter`); PIN data is never
    kept either way. :meth:`trace` gives what was recorded so far as a :class:`Trace`.
    """

    def __init__(
        self, backend: ReaderBackend, *, psam_reader: str | None = None, raw: bool = False
    ) -> None:
        self._backend = backend
        self.psam_reader = psam_reader
        self.raw = raw
        self.exchanges: list[Exchange] = []
        self.card: CardConnection | None = None
        self.psam: CardConnection | None = None

    def readers(self) -> list[ReaderInfo]:
        return self._backend.readers()

    def connect(self, reader: str) -> CardConnection:
        inner = self._backend.connect(reader)
        slot = Slot.PSAM if reader == self.psam_reader else Slot.CARD
        if slot is Slot.PSAM:
            self.psam = self.psam or inner
        else:
            self.card = self.card or inner
        return _RecordingConnection(inner, slot, self)

    def trace(
        self,
        *,
        title: str = "",
        flow: Flow | None = None,
        randoms: Iterable[bytes] = (),
        today: dt.date | None = None,
        expect: Iterable[Expectation] = (),
        extra: Iterable[tuple[str, str]] = (),
    ) -> Trace:
        """The session so far, with the card's ATR, protocol and interface."""
        card, psam = self.card, self.psam
        privacy = "raw" if self.raw else PRIVACY_NOTE
        where = [("reader", card.reader)] if card is not None else []
        return Trace(
            exchanges=tuple(self.exchanges),
            atr=card.atr if card is not None else None,
            protocol=card.protocol if card is not None else "T=0",
            interface=card.interface if card is not None else Interface.CONTACT,
            psam_atr=psam.atr if psam is not None else None,
            psam_protocol=psam.protocol if psam is not None else "T=0",
            title=title,
            randoms=tuple(randoms),
            flow=flow,
            today=today,
            expect=tuple(expect),
            extra=(*tuple(extra), *where, ("holder-data", privacy)),
        )


class RecordingRandom:
    """A random source that hands out ``source``'s bytes and keeps them, in order: the
    terminal's process factors and originals, which a replay must draw again."""

    def __init__(self, source: Callable[[int], bytes]) -> None:
        self._source = source
        self.values: list[bytes] = []

    def __call__(self, n: int) -> bytes:
        value = self._source(n)
        self.values.append(bytes(value))
        return value
