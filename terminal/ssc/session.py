"""The basic read of the social security application (SSSE), as a state machine.

:class:`BasicReadSession` owns no I/O: ``next_command()`` says what to send, ``receive()``
takes the card's final answer (after the channel's 61xx/6Cxx handling), and ``result()``
gives the typed :class:`SscRead`. :func:`read_ssc` drives it over a
:class:`terminal.reader.CardChannel`.

The read uses the fewest APDUs the card supports:

1. ``SELECT`` the SSSE DDF by name (``00 A4 04 00 0F sx1.sh.社会保障``) - FCI gives the
   algorithm flag.
2. EF05 in one ``READ RECORD`` in 'from P1 to the last record' mode addressed by SFI
   (``00 B2 01 2D Le``) with the exact length the layout predicts, so the card never has to
   answer ``6Cxx``.
3. EF06 the same way (``00 B2 01 35 Le``), Le from the generation read in EF05 tag 03.

A card that refuses the multi-record mode (``6A86``/``6A81``/``6B00``/``6D00``) is read one
record per tag by record identifier (``00 B2 <tag> <SFI<<3> Le``), still with the exact Le.
If the card does not accept SFI addressing either, the EF is selected once and read by tag
from the current EF. A file the card refuses (``6982`` security status, ``6A82`` not found)
is reported as unreadable with its status word; the rest of the read goes on.
"""

from __future__ import annotations

import enum
from collections.abc import Generator
from dataclasses import dataclass, field

from terminal.apdu import CommandAPDU, ResponseAPDU
from terminal.errors import CardError, NotSocialSecurityCardError
from terminal.reader import CardChannel
from terminal.ssc import layout
from terminal.ssc.records import HolderData, IssuerData, decode_holder_data, decode_issuer_data
from terminal.status import SW, describe
from terminal.tlv import FileControlInfo, parse_fci, records_by_tag

INS_SELECT = 0xA4
INS_READ_RECORD = 0xB2

# Status words that mean "this addressing mode is not supported here", not "no such data".
_MODE_REFUSED = {
    SW.WRONG_P1P2,
    SW.FUNCTION_NOT_SUPPORTED,
    SW.WRONG_PARAMETERS,
    SW.INS_NOT_SUPPORTED,
    SW.COMMAND_INCOMPATIBLE,
}
# Status words that mean "this file cannot be read now": report it and go on.
_FILE_REFUSED = {
    SW.SECURITY_NOT_SATISFIED,
    SW.AUTH_METHOD_BLOCKED,
    SW.CONDITIONS_NOT_SATISFIED,
    SW.FILE_NOT_FOUND,
    SW.FILE_INVALIDATED,
    SW.APPLICATION_BLOCKED,
    SW.APPLICATION_TEMPORARILY_BLOCKED,
}

_FILE_NAMES = {layout.EF05_FID: "EF05", layout.EF06_FID: "EF06"}
_SFI = {layout.EF05_FID: layout.EF05_SFI, layout.EF06_FID: layout.EF06_SFI}


class ReadMode(enum.Enum):
    """How the session reads records; AUTO starts with the fastest and falls back."""

    AUTO = "auto"
    MULTI_RECORD = "multi-record"
    PER_TAG_SFI = "per-tag-sfi"
    PER_TAG_SELECT = "per-tag-select"


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


class _RecordSession:
    """The state-machine plumbing shared by the SSC read sessions."""

    def __init__(self, mode: ReadMode) -> None:
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
            sfi = _SFI[fid]
            le = layout.file_length(generation, fid)
            answer = yield CommandAPDU(0x00, INS_READ_RECORD, 0x01, sfi << 3 | 0x05, le=le)
            if answer.ok or answer.sw == SW.END_OF_FILE:
                state.values[fid] = records_by_tag(answer.data)
                return
            if answer.sw in _FILE_REFUSED:
                state.unreadable.append(Unreadable(name, None, answer.sw))
                return
            if not (self._auto and answer.sw in _MODE_REFUSED):
                raise CardError(f"READ RECORD {name} refused: {describe(answer.sw)}", answer.sw)
            state.mode = ReadMode.PER_TAG_SFI
        yield from self._read_by_tag(fid, generation)

    def _read_by_tag(
        self, fid: int, generation: layout.Generation
    ) -> Generator[CommandAPDU, ResponseAPDU, None]:
        state = self._state
        name = _FILE_NAMES[fid]
        values: dict[int, bytes] = {}
        selected = False
        for tag in layout.file_tags(generation, fid):
            item = layout.BY_TAG[tag]
            while True:
                if state.mode is ReadMode.PER_TAG_SELECT and not selected:
                    answer = yield CommandAPDU(0x00, INS_SELECT, 0x02, 0x0C, fid.to_bytes(2, "big"))
                    if not answer.ok:
                        if answer.sw in _FILE_REFUSED:
                            state.unreadable.append(Unreadable(name, None, answer.sw))
                            return
                        raise CardError(f"SELECT {name} refused: {describe(answer.sw)}", answer.sw)
                    selected = True
                p2 = _SFI[fid] << 3 if state.mode is ReadMode.PER_TAG_SFI else 0x00
                answer = yield CommandAPDU(0x00, INS_READ_RECORD, tag, p2, le=2 + item.length)
                if (
                    self._auto
                    and state.mode is ReadMode.PER_TAG_SFI
                    and answer.sw in _MODE_REFUSED | {SW.FILE_NOT_FOUND}
                ):
                    state.mode = ReadMode.PER_TAG_SELECT
                    continue
                break
            if answer.ok or answer.sw == SW.END_OF_FILE:
                values.update(records_by_tag(answer.data))
            elif answer.sw == SW.RECORD_NOT_FOUND:
                state.unreadable.append(Unreadable(name, tag, answer.sw))
            elif answer.sw in _FILE_REFUSED:
                # The whole file is closed to us: asking tag after tag only costs APDUs.
                state.unreadable.append(Unreadable(name, None, answer.sw))
                return
            else:
                raise CardError(
                    f"READ RECORD {name} tag {tag:02X}: {describe(answer.sw)}", answer.sw
                )
        state.values[fid] = values


class BasicReadSession(_RecordSession):
    """Read EF05 (issuer data) and, where the card allows, EF06 (holder data).

    ``mode`` forces one read mode (benchmarks, cards known to misbehave); AUTO picks the
    fastest the card accepts. ``read_holder`` False stops after EF05.
    """

    def __init__(self, mode: ReadMode = ReadMode.AUTO, read_holder: bool = True) -> None:
        self._read_holder = read_holder
        self._result: SscRead | None = None
        super().__init__(mode)

    def result(self) -> SscRead:
        if self._result is None:
            raise RuntimeError("the read is not complete")
        return self._result

    def _run(self) -> Generator[CommandAPDU, ResponseAPDU, None]:
        answer = yield CommandAPDU(0x00, INS_SELECT, 0x04, 0x00, layout.SSSE_NAME, 256)
        if answer.sw in (SW.FILE_NOT_FOUND, SW.WRONG_P1P2, SW.FUNCTION_NOT_SUPPORTED):
            raise NotSocialSecurityCardError(
                f"no social security application on this card ({describe(answer.sw)})", answer.sw
            )
        if not answer.ok:
            raise CardError(f"SELECT SSSE refused: {describe(answer.sw)}", answer.sw)
        fci = parse_fci(answer.data)

        state = self._state
        yield from self._read_file(layout.EF05_FID, layout.Generation.V2)
        issuer = decode_issuer_data(state.values.get(layout.EF05_FID, {}))
        holder = None
        if self._read_holder:
            generation = issuer.generation or layout.Generation.V2
            yield from self._read_file(layout.EF06_FID, generation)
            if layout.EF06_FID in state.values:
                holder = decode_holder_data(state.values[layout.EF06_FID])
        self._result = SscRead(fci, issuer, holder, tuple(state.unreadable), state.mode)


class HolderReadSession(_RecordSession):
    """Read EF06 alone, the SSSE already selected: after EXTERNAL AUTHENTICATE unlocked it.

    ``mode`` is the one the EF05 read settled on, so a card read per tag is not probed again.
    """

    def __init__(self, generation: layout.Generation, mode: ReadMode = ReadMode.AUTO) -> None:
        self._generation = generation
        self._result: tuple[HolderData | None, tuple[Unreadable, ...]] | None = None
        super().__init__(mode)

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


def run_session(channel: CardChannel, session: _RecordSession) -> None:
    """Drive ``session`` over ``channel`` until it has no more commands."""
    while (command := session.next_command()) is not None:
        session.receive(channel.transmit(command))


def read_ssc(
    channel: CardChannel, mode: ReadMode = ReadMode.AUTO, read_holder: bool = True
) -> SscRead:
    """Run a :class:`BasicReadSession` over ``channel``."""
    session = BasicReadSession(mode, read_holder)
    run_session(channel, session)
    return session.result()


def read_holder_data(
    channel: CardChannel, generation: layout.Generation, mode: ReadMode = ReadMode.AUTO
) -> tuple[HolderData | None, tuple[Unreadable, ...]]:
    """Run a :class:`HolderReadSession` over ``channel``."""
    session = HolderReadSession(generation, mode)
    run_session(channel, session)
    return session.result()
