"""The basic read of the social security application (SSSE), as a state machine.

:class:`BasicReadSession` owns no I/O: ``next_command()`` says what to send, ``receive()``
takes the card's final answer (after the channel's 61xx/6Cxx handling), and ``result()``
gives the typed :class:`SscRead`. :func:`read_ssc` drives it over a
:class:`terminal.devices.reader.CardChannel`. Command headers come from
:data:`terminal.ssc.cardspec.CARD_SPEC`.

Two ways to read a record file:

* **multi-record** (``ReadMode.MULTI_RECORD``): the whole EF in one ``READ RECORD`` in ISO's
  'from P1 to the last record' mode, addressed by SFI (``00 B2 01 2D Le`` for EF05), with the
  exact length the layout predicts. Three APDUs read a card over T=1, where the card offers
  the mode.
* **per tag** (``ReadMode.PER_TAG``): what every reader in the field does (real card logs):
  ``SELECT`` the EF (``00 A4 02 00 02 EF05``), then one ``READ RECORD`` per record by its
  identifier, the tag (``00 B2 <tag> 00 Le``), with exact Le.

``ReadMode.AUTO`` tries multi-record and falls back to per tag on any answer that does not
deliver the file (a refused mode, an unknown SFI, a security status the card may give for a
command it does not know, an answer that lacks the records a card is identified by), then
stays per tag for the rest of the card. A file the card refuses for
security (``6982`` on EF06 of a 3.0 card before external authentication) is reported as
unreadable with its status word and the read goes on; a record the card does not have
(``6A83``) likewise, per item.
"""

from __future__ import annotations

import enum
from collections.abc import Generator
from dataclasses import dataclass, field

from terminal.devices.reader import CardChannel
from terminal.errors import CardError, NotSocialSecurityCardError, TlvError
from terminal.iso7816.apdu import CommandAPDU, ResponseAPDU
from terminal.iso7816.status_words import SW, describe
from terminal.iso7816.tlv import FileControlInfo, parse_fci, records_by_tag
from terminal.ssc import layout
from terminal.ssc.cardspec import CARD_SPEC, CardSpec
from terminal.ssc.records import HolderData, IssuerData, decode_holder_data, decode_issuer_data

# SELECT of the SSSE: the card has no such application.
_NO_APPLICATION = {SW.FILE_NOT_FOUND, SW.WRONG_P1P2, SW.FUNCTION_NOT_SUPPORTED}
# Status words that mean "this file cannot be read now": report it and go on.
_FILE_REFUSED = {
    SW.SECURITY_NOT_SATISFIED,
    SW.AUTH_METHOD_BLOCKED,
    SW.CONDITIONS_NOT_SATISFIED,
    SW.FILE_INVALIDATED,
    SW.APPLICATION_BLOCKED,
    SW.APPLICATION_TEMPORARILY_BLOCKED,
}
_DATA_OK = {SW.OK, SW.END_OF_FILE}

_FILE_NAMES = {layout.EF05_FID: "EF05", layout.EF06_FID: "EF06"}
_SFI = {layout.EF05_FID: layout.EF05_SFI, layout.EF06_FID: layout.EF06_SFI}


class ReadMode(enum.Enum):
    """How the session reads records; AUTO starts with the fastest and falls back."""

    AUTO = "auto"
    MULTI_RECORD = "multi-record"
    PER_TAG = "per-tag"


@dataclass(frozen=True)
class Unreadable:
    """A file (``tag`` None) or one item the card refused, with its status word."""

    file: str
    tag: int | None
    sw: int

    def to_json(self) -> dict[str, object]:
        return {
            "file": self.file,
            "tag": None if self.tag is None else f"{self.tag:02X}",
            "sw": f"{self.sw:04X}",
        }


@dataclass(frozen=True)
class SscRead:
    """What a basic read of the SSSE found."""

    fci: FileControlInfo
    issuer: IssuerData
    holder: HolderData | None
    unreadable: tuple[Unreadable, ...]
    mode: ReadMode


@dataclass
class _State:
    mode: ReadMode
    values: dict[int, dict[int, bytes]] = field(default_factory=dict)
    unreadable: list[Unreadable] = field(default_factory=list)
    selected_ef: int | None = None
    multi_record_answered: bool = False


def _required_tags(fid: int) -> frozenset[int]:
    return frozenset(i.tag for i in layout.ITEMS if i.file == fid and i.required)


class _RecordSession:
    """The state-machine plumbing shared by the SSC read sessions."""

    def __init__(
        self, mode: ReadMode, spec: CardSpec = CARD_SPEC, items: frozenset[str] | None = None
    ) -> None:
        self._spec = spec
        self._items = items
        self._state = _State(mode=ReadMode.MULTI_RECORD if mode is ReadMode.AUTO else mode)
        self._auto = mode is ReadMode.AUTO
        self._pending: CommandAPDU | None = None
        self._steps = self._run()
        self._pending = next(self._steps)

    def _run(self) -> Generator[CommandAPDU, ResponseAPDU, None]:
        raise NotImplementedError

    # -- the state-machine interface ---------------------------------------------------------

    def next_command(self) -> CommandAPDU | None:
        """The command to send next, or None when the read is complete."""
        return self._pending

    def receive(self, response: ResponseAPDU) -> None:
        """Take the card's answer to :meth:`next_command`."""
        if self._pending is None:
            raise RuntimeError("the read is complete; nothing was asked")
        try:
            self._pending = self._steps.send(response)
        except StopIteration:
            self._pending = None

    # -- the steps shared by every read ------------------------------------------------------

    def _read_file(
        self, fid: int, generation: layout.Generation
    ) -> Generator[CommandAPDU, ResponseAPDU, None]:
        state = self._state
        name = _FILE_NAMES[fid]
        if state.mode is ReadMode.MULTI_RECORD:
            spec = self._spec
            p2 = _SFI[fid] << 3 | spec.read_to_last_mode
            le = layout.file_length(generation, fid)
            answer = yield CommandAPDU(0x00, spec.read_record_ins, 0x01, p2, le=le)
            # Until the card has answered the mode once, a refusal may be its way of saying
            # it has no such mode (6985 and 6982 are seen for unsupported commands too): in
            # AUTO the per-tag read then asks again and reports what the file really says.
            settled = not self._auto or state.multi_record_answered
            if answer.sw in _FILE_REFUSED and settled:
                state.unreadable.append(Unreadable(name, None, answer.sw))
                return
            if answer.sw in _DATA_OK:
                values = self._whole_file(fid, answer.data)
                if values is not None:
                    state.values[fid] = values
                    state.multi_record_answered = True
                    return
            elif not self._auto:
                raise CardError(f"READ RECORD {name} refused: {describe(answer.sw)}", answer.sw)
            # The card does not offer the mode (or misread it): read as the field does.
            state.mode = ReadMode.PER_TAG
        yield from self._read_by_tag(fid, generation)

    def _whole_file(self, fid: int, data: bytes) -> dict[int, bytes] | None:
        """The records of a multi-record answer; None (in AUTO) when the answer does not
        hold the file, so the caller falls back to reading it per tag."""
        try:
            values = records_by_tag(data)
        except TlvError as exc:
            if not self._auto:
                raise TlvError(f"{_FILE_NAMES[fid]}: {exc.reason}") from exc
            return None
        if self._auto and not _required_tags(fid) <= values.keys():
            return None
        return values

    def _read_by_tag(
        self, fid: int, generation: layout.Generation
    ) -> Generator[CommandAPDU, ResponseAPDU, None]:
        state, spec = self._state, self._spec
        name = _FILE_NAMES[fid]
        if state.selected_ef != fid:
            cla, ins, p1, p2 = spec.select_ef
            answer = yield CommandAPDU(cla, ins, p1, p2, fid.to_bytes(2, "big"))
            if answer.sw in _FILE_REFUSED or answer.sw == SW.FILE_NOT_FOUND:
                state.unreadable.append(Unreadable(name, None, answer.sw))
                return
            if not answer.ok:
                raise CardError(f"SELECT {name} refused: {describe(answer.sw)}", answer.sw)
            state.selected_ef = fid
        values: dict[int, bytes] = {}
        for tag in layout.file_tags(generation, fid):
            item = layout.BY_TAG[tag]
            if self._items is not None and item.name not in self._items:
                continue
            answer = yield CommandAPDU(
                0x00, spec.read_record_ins, tag, spec.read_by_identifier_p2, le=2 + item.length
            )
            if answer.sw in _FILE_REFUSED:
                # The whole file is closed to us: asking tag after tag only costs APDUs.
                state.unreadable.append(Unreadable(name, None, answer.sw))
                return
            if answer.sw in _DATA_OK:
                try:
                    record = records_by_tag(answer.data)
                except TlvError as exc:
                    if item.required:
                        raise TlvError(f"{name} tag {tag:02X}: {exc.reason}") from exc
                    state.unreadable.append(Unreadable(name, tag, answer.sw))
                    continue
                if tag in record:
                    values[tag] = record[tag]
                elif item.required:
                    raise CardError(
                        f"READ RECORD {name} tag {tag:02X} answered another record", answer.sw
                    )
                else:
                    state.unreadable.append(Unreadable(name, tag, answer.sw))
            elif answer.sw == SW.RECORD_NOT_FOUND and item.optional_record:
                continue
            elif item.required:
                raise CardError(
                    f"READ RECORD {name} tag {tag:02X}: {describe(answer.sw)}", answer.sw
                )
            else:
                state.unreadable.append(Unreadable(name, tag, answer.sw))
        state.values[fid] = values


def select_ssse(spec: CardSpec = CARD_SPEC) -> CommandAPDU:
    """``00 A4 04 00 0F sx1.sh.社会保障``: SELECT the SSSE by DF name, without Le as real
    readers send it (the card answers its FCI; ``61xx`` over T=0)."""
    cla, ins, p1, p2 = spec.select_by_name
    return CommandAPDU(cla, ins, p1, p2, layout.SSSE_NAME)


def ssse_selected(answer: ResponseAPDU) -> FileControlInfo:
    """The FCI of the SSSE from the card's answer to :func:`select_ssse`.

    :class:`NotSocialSecurityCardError` when the card has no such application, a
    :class:`CardError` for any other refusal, a :class:`TlvError` for an FCI that does not
    parse. A 9000 without data is an FCI without template (a DES/3DES card).
    """
    if answer.sw in _NO_APPLICATION:
        raise NotSocialSecurityCardError(
            f"no social security application on this card ({describe(answer.sw)})", answer.sw
        )
    if not answer.ok:
        raise CardError(f"SELECT SSSE refused: {describe(answer.sw)}", answer.sw)
    if not answer.data:
        return FileControlInfo(df_name=None, sfi_of_dir=None, algorithm=None)
    try:
        return parse_fci(answer.data)
    except TlvError as exc:
        raise TlvError(f"FCI of the SSSE: {exc.reason}") from exc


class BasicReadSession(_RecordSession):
    """Read EF05 (issuer data) and, where the card allows, EF06 (holder data).

    ``mode`` forces one read mode (benchmarks, cards known to misbehave); AUTO picks the
    fastest the card accepts. ``read_holder`` False stops after EF05. ``items`` (item names,
    e.g. :data:`terminal.ssc.layout.DECISION_ITEMS`) limits a per-tag read of EF05 to what
    the caller needs; a multi-record read has the whole file in one APDU anyway.
    """

    def __init__(
        self,
        mode: ReadMode = ReadMode.AUTO,
        read_holder: bool = True,
        spec: CardSpec = CARD_SPEC,
        items: frozenset[str] | None = None,
    ) -> None:
        self._read_holder = read_holder
        self._result: SscRead | None = None
        super().__init__(mode, spec, items)

    def result(self) -> SscRead:
        if self._result is None:
            raise RuntimeError("the read is not complete")
        return self._result

    def _run(self) -> Generator[CommandAPDU, ResponseAPDU, None]:
        fci = ssse_selected((yield select_ssse(self._spec)))

        state = self._state
        # EF05 has the same records in every generation; its tag 03 tells the generation.
        yield from self._read_file(layout.EF05_FID, layout.Generation.V2)
        if layout.EF05_FID not in state.values:
            sw = next((u.sw for u in state.unreadable if u.file == "EF05"), SW.FILE_NOT_FOUND)
            raise CardError(f"EF05 (issuer data) cannot be read: {describe(sw)}", sw)
        issuer = decode_issuer_data(state.values[layout.EF05_FID])
        holder = None
        if self._read_holder:
            yield from self._read_file(layout.EF06_FID, holder_generation(issuer))
            if layout.EF06_FID in state.values:
                holder = decode_holder_data(state.values[layout.EF06_FID])
        self._result = SscRead(fci, issuer, holder, tuple(state.unreadable), state.mode)


def holder_generation(issuer: IssuerData) -> layout.Generation:
    """The generation whose EF06 layout to read: the card's, or 2.0 for a version we do not
    know (the layout with tag 4E, whose absence a per-tag read tolerates)."""
    return issuer.generation or layout.Generation.V2


class HolderReadSession(_RecordSession):
    """Read EF06 alone, the SSSE already selected: after EXTERNAL AUTHENTICATE unlocked it.

    ``mode`` is the one the EF05 read settled on, so a card read per tag is not probed again.
    """

    def __init__(
        self,
        generation: layout.Generation,
        mode: ReadMode = ReadMode.AUTO,
        spec: CardSpec = CARD_SPEC,
    ) -> None:
        self._generation = generation
        self._result: tuple[HolderData | None, tuple[Unreadable, ...]] | None = None
        super().__init__(mode, spec)

    def result(self) -> tuple[HolderData | None, tuple[Unreadable, ...]]:
        if self._result is None:
            raise RuntimeError("the read is not complete")
        return self._result

    def _run(self) -> Generator[CommandAPDU, ResponseAPDU, None]:
        state = self._state
        yield from self._read_file(layout.EF06_FID, self._generation)
        values = state.values.get(layout.EF06_FID)
        holder = decode_holder_data(values) if values is not None else None
        self._result = (holder, tuple(state.unreadable))


class ReadModeMemo:
    """What each kind of card taught about reading it: the read mode by chip and card OS.

    Cards of one chip vendor, OS and manufacturer (ATR historical bytes T1..T7) answer the
    multi-record mode alike, so once one of them has settled AUTO on a mode, the next card of
    that kind starts there: a card without the mode does not pay the refused probe (one
    APDU, 5-20 ms on air) on every tap. Bounded; pure (no I/O), not thread-safe - one per
    transaction loop.
    """

    KIND_BYTES = 7  # T1-T2 chip vendor, T3-T5 OS vendor, T6-T7 card manufacturer
    MAX_KINDS = 64

    def __init__(self) -> None:
        self._modes: dict[bytes, ReadMode] = {}

    def mode_for(self, historical: bytes) -> ReadMode:
        """The mode to read a card with these ATR historical bytes: learned, else AUTO."""
        return self._modes.get(bytes(historical[: self.KIND_BYTES]), ReadMode.AUTO)

    def learn(self, historical: bytes, mode: ReadMode) -> None:
        """Remember the mode an AUTO read of such a card settled on. Only per tag is kept:
        it works on every card, and a card that offers multi-record is tried with it anyway,
        whereas forcing multi-record would fail the one card of a kind that lacks it."""
        if len(historical) < self.KIND_BYTES or mode is not ReadMode.PER_TAG:
            return
        kind = bytes(historical[: self.KIND_BYTES])
        if kind not in self._modes and len(self._modes) >= self.MAX_KINDS:
            self._modes.pop(next(iter(self._modes)))
        self._modes[kind] = mode


def run_session(channel: CardChannel, session: _RecordSession) -> None:
    """Drive ``session`` over ``channel`` until it has no more commands."""
    while (command := session.next_command()) is not None:
        session.receive(channel.transmit(command))


def read_ssc(
    channel: CardChannel,
    mode: ReadMode = ReadMode.AUTO,
    read_holder: bool = True,
    items: frozenset[str] | None = None,
) -> SscRead:
    """Run a :class:`BasicReadSession` over ``channel``."""
    session = BasicReadSession(mode, read_holder, items=items)
    run_session(channel, session)
    return session.result()


def read_holder_data(
    channel: CardChannel, generation: layout.Generation, mode: ReadMode = ReadMode.AUTO
) -> tuple[HolderData | None, tuple[Unreadable, ...]]:
    """Run a :class:`HolderReadSession` over ``channel``."""
    session = HolderReadSession(generation, mode)
    run_session(channel, session)
    return session.result()
