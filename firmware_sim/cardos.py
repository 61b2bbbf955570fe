"""A software card operating system: ISO/IEC 7816-4 commands over a file tree, plus applets.

:class:`CardOS` is what a reader talks to: :meth:`CardOS.power_on` gives the ATR and
:meth:`CardOS.process` turns command APDU bytes into response APDU bytes, never raising -
whatever arrives, a card answers with a status word. The OS itself implements the
interindustry commands every application needs, as the social security card specification
restricts them (strict by default: a parameter the specification does not list is refused):

========================  ===================================================================
``00 A4`` SELECT          P1 00 by FID (none or ``3F00``: the MF), 01 child DF, 02 EF under
                          the current DF, 03 parent, 04 DF name (exact; right-truncated only
                          on a card with ``partial_df_name``). P2 00 (first occurrence, FCI
                          of a DF) or 02 (next occurrence of a DF name); P2 0C only on a
                          card with ``select_p2_0c``. Else ``6A86``. A blocked DF, or a
                          file in one, ``9303`` however it is named.
``00 B0`` READ BINARY     transparent EF, offset in P1-P2 or SFI in P1 + offset in P2
``00 B2`` READ RECORD     P2 04: record P1 of the current EF; P2 00: the record whose
                          identifier (SIMPLE-TLV tag) is P1 in the current EF; P2 SFI<<3|4:
                          record P1 of the EF with that SFI. With capabilities:
                          SFI<<3|0 (``sfi_record_id``) and mode 101, records P1 to the last
                          (``multi_record``). Else ``6A86``.
``00 84`` GET CHALLENGE   8 random bytes (``00 84 00 00 08``; 4 or 16 too on a card whose
                          ``challenge_lengths`` has them), kept as :attr:`CardOS.last_challenge`
``00 C0`` GET RESPONSE    the data a ``61xx`` announced
``FF CA`` GET DATA (UID)  PC/SC part 3 pseudo-APDU, contactless cards only
========================  ===================================================================

Everything else goes to the installed :class:`Applet` objects first (as applets in jCardSim
or a Java Card), so an application can add proprietary commands (``80 50``, ``80 54``, ...)
or take over an interindustry one (``00 88``, ``00 82``). What nobody answers is an unknown
instruction (``6D00``) in class 00 and in the card's ``proprietary_classes``, an unknown
class (``6E00``) otherwise. Extended lengths are ``6700`` unless the card has
``extended_length``.

Length rules are those of the card being imitated, see :meth:`CardOS.respond`: social
security cards are exact about Le (``6Cxx`` unless Le is exactly the data length, Le 00
included) and T=0 cards announce case-4 answers with ``61xx`` for GET RESPONSE.
"""

from __future__ import annotations

import enum
import logging
import secrets
from collections.abc import Iterable
from typing import TypeVar

from firmware_sim.apdu import Command, Response, parse_command, status
from firmware_sim.filesystem import (
    DedicatedFile,
    ElementaryFile,
    File,
    FileSystem,
    RecordEF,
    TransparentEF,
    is_blocked,
)
from firmware_sim.spec import iso7816
from firmware_sim.spec.iso7816 import SHORT_LE_MAX, Ins, SelectBy, SelectOccurrence
from firmware_sim.spec.status import SW, bytes_available, wrong_le
from terminal.errors import ApduError

log = logging.getLogger(__name__)

PROTOCOLS = ("T=0", "T=1")
MAX_HISTORICAL = 15  # the low nibble of T0 counts them


class LeMode(enum.StrEnum):
    """How strictly the card holds a command to its Le."""

    EXACT = "exact"
    """Le must equal the data length, else ``6Cxx`` (real social security cards)."""
    LENIENT = "lenient"
    """Le 00 or any Le at least the data length gets all data; a smaller Le gets ``6Cxx``."""


class Applet:
    """A program on the card: owns a DF subtree and may handle commands itself.

    Subclasses override :meth:`install` to add their files under ``card.mf`` and
    :meth:`process` to answer commands. The OS offers every command (but GET RESPONSE,
    which belongs to the transport) to the applets in install order before handling it
    itself; the first answer that is not None is the card's answer. An applet that only
    cares while its DF is selected checks ``card.current_df`` (see :meth:`is_selected`).
    """

    root: DedicatedFile | None = None
    """The applet's DF, set by :meth:`install`; :meth:`is_selected` looks at it."""

    def install(self, card: CardOS) -> None:
        """Create the applet's files under ``card.mf``. Called once by :meth:`CardOS.install`."""

    def process(self, card: CardOS, cmd: Command) -> Response | None:
        """Answer ``cmd``, or return None to let the next applet or the OS answer it.

        Use :meth:`CardOS.respond` to return data, so the card's Le and T=0 rules apply.
        """
        return None

    def reset(self) -> None:
        """Drop volatile state (session keys, counters in RAM): called at every power-on."""

    def is_selected(self, card: CardOS) -> bool:
        """True while the current DF is the applet's DF or lies below it."""
        return self.root is not None and self.root.contains(card.current_df)


_A = TypeVar("_A", bound=Applet)


class CardOS:
    """One simulated card: ATR, file system, security state, applets.

    ``protocol`` is the transmission protocol the reader uses with the card ("T=0" or
    "T=1"); it decides whether case-4 answers go through ``61xx`` / GET RESPONSE. ``uid``
    is set for a contactless card and answers ``FF CA``. The keyword options imitate card
    shapes; each defaults to the strict card (the specification's command set, nothing more):

    * ``le_mode`` exact (``6Cxx`` unless Le is the length) or lenient;
    * ``multi_record``: READ RECORD mode 101, records P1 to the last;
    * ``sfi_record_id``: READ RECORD by record identifier with an SFI (P2 SFI<<3|0);
    * ``select_p2_0c``: SELECT with ISO's P2 0C (no answer data), not defined on SSC cards;
    * ``partial_df_name``: SELECT by a right-truncated DF name (ISO allows it);
    * ``extended_length``: extended-length command APDUs (else ``6700``);
    * ``challenge_lengths``: the GET CHALLENGE Le values answered (default 8 only, the
      ``00 84 00 00 08`` of domain.md 2; 4 and 16 may be added);
    * ``proprietary_classes``: the classes of the card's own applications (class 80 on a
      social security card): an instruction of one of them that no selected application
      answers is ``6D00``; an instruction of any other class but 00 is ``6E00``.
    """

    def __init__(
        self,
        atr: bytes,
        protocol: str = "T=0",
        uid: bytes | None = None,
        *,
        le_mode: LeMode | str = LeMode.EXACT,
        multi_record: bool = False,
        sfi_record_id: bool = False,
        select_p2_0c: bool = False,
        partial_df_name: bool = False,
        extended_length: bool = False,
        challenge_lengths: Iterable[int] = (iso7816.CHALLENGE_LENGTH,),
        proprietary_classes: Iterable[int] = (),
    ) -> None:
        if not atr or atr[0] not in (0x3B, 0x3F):
            raise ValueError("an ATR starts with TS 3B (direct) or 3F (inverse convention)")
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol {protocol!r} is not one of {PROTOCOLS}")
        if uid is not None and len(uid) not in (4, 7, 10):
            raise ValueError(f"a UID has 4, 7 or 10 bytes, not {len(uid)}")
        lengths = frozenset(challenge_lengths)
        if not lengths or not lengths <= iso7816.CHALLENGE_LENGTHS:
            allowed = sorted(iso7816.CHALLENGE_LENGTHS)
            raise ValueError(f"challenge lengths {sorted(lengths)} are not some of {allowed}")
        self.atr = bytes(atr)
        self.protocol = protocol
        self.uid = uid
        self.le_mode = LeMode(le_mode)
        self.multi_record = multi_record
        self.sfi_record_id = sfi_record_id
        self.select_p2_0c = select_p2_0c
        self.partial_df_name = partial_df_name
        self.extended_length = extended_length
        self.challenge_lengths = lengths
        self.proprietary_classes = frozenset(proprietary_classes)
        self.fs = FileSystem()
        self.applets: list[Applet] = []
        self.powered = False
        self.last_challenge: bytes | None = None
        self._rights: set[str] = set()
        self._pending: bytes | None = None  # data announced by 61xx, for GET RESPONSE
        self._pending_sw: int = SW.NORMAL_PROCESSING  # the status word that ends it

    # --- life cycle ---------------------------------------------------------------------

    def install(self, applet: _A) -> _A:
        """Install ``applet``: it adds its files, then takes part in :meth:`process`."""
        applet.install(self)
        self.applets.append(applet)
        return applet

    def power_on(self) -> bytes:
        """Cold reset: volatile state back to the initial state; returns the ATR."""
        self._reset_volatile()
        self.powered = True
        return self.atr

    def power_off(self) -> None:
        """Power is cut: everything in RAM is gone."""
        self._reset_volatile()
        self.powered = False

    def _reset_volatile(self) -> None:
        self.fs.reset()
        self._rights.clear()
        self._pending = None
        self.last_challenge = None
        for applet in self.applets:
            applet.reset()

    # --- state applets use ----------------------------------------------------------------

    @property
    def mf(self) -> DedicatedFile:
        return self.fs.mf

    @property
    def current_df(self) -> DedicatedFile:
        return self.fs.current_df

    @property
    def current_ef(self) -> ElementaryFile | None:
        return self.fs.current_ef

    def grant(self, right: str) -> None:
        """Record that ``right`` (e.g. "RKSSSE" after EXTERNAL AUTHENTICATE) is satisfied.

        Rights last until the next power-on.
        """
        self._rights.add(right)

    def revoke(self, right: str) -> None:
        """Withdraw ``right`` (a card that drops a security state before the next power-on)."""
        self._rights.discard(right)

    def is_granted(self, right: str) -> bool:
        """True while ``right`` is satisfied (granted since the last power-on, not revoked)."""
        return right in self._rights

    def may_read(self, ef: ElementaryFile) -> bool:
        """True when the read access condition of ``ef`` is met."""
        return ef.read_access is None or ef.read_access in self._rights

    def take_challenge(self) -> bytes | None:
        """The last GET CHALLENGE answer, consumed: a challenge serves one authentication."""
        challenge, self.last_challenge = self.last_challenge, None
        return challenge

    # --- the wire -------------------------------------------------------------------------

    def process(self, apdu: bytes) -> bytes:
        """Answer one command APDU with response APDU bytes (data + SW1 SW2). Never raises.

        Bytes that are no APDU answer ``6700``; a fault inside the card answers ``6F00``
        (and is logged), as a real card answers rather than falls silent.
        """
        try:
            cmd = parse_command(bytes(apdu))
        except (ApduError, TypeError, ValueError):
            self._pending = None
            return status(SW.WRONG_LENGTH).to_bytes()
        if cmd.extended and not self.extended_length:
            # A card without extended lengths reads the 00 after the header as a length
            # that does not fit what follows.
            self._pending = None
            return status(SW.WRONG_LENGTH).to_bytes()
        try:
            return self._dispatch(cmd).to_bytes()
        except Exception:
            log.exception("card fault on %s", cmd)
            self._pending = None
            return status(SW.NO_PRECISE_DIAGNOSIS).to_bytes()

    def respond(self, cmd: Command, data: bytes, sw: int = SW.NORMAL_PROCESSING) -> Response:
        """The card's answer when ``cmd`` produced ``data`` (call once per command); ``sw``
        is the status word the data ends with (a warning such as ``6283``).

        * T=0 and ``cmd`` carried command data (cases 3 and 4): the card cannot send data
          in the same exchange, so it answers ``61xx`` and keeps the data for GET RESPONSE.
        * Otherwise Le decides, see :meth:`_fit`. A command with command data and no Le, or
          Le 00 (cases 3 and 4 over T=1, SELECT typically), gets the data as is: Le 00 there
          asks for "all, up to 256", and real SSC cards answer SELECT that way; only the
          reads (case 2) are held to an exact Le. A command without either (case 1) counts
          as Le 256, as the T=0 P3 byte 00 it travels as.
        """
        if not data:
            return status(sw)
        if self.protocol == "T=0" and cmd.data:
            # The warning, if any, ends the GET RESPONSE that fetches the data.
            self._pending, self._pending_sw = data, sw
            return status(bytes_available(len(data)))
        if cmd.data and cmd.le in (None, SHORT_LE_MAX):
            want = min(len(data), SHORT_LE_MAX)
        else:
            want = cmd.le or SHORT_LE_MAX
        response, self._pending = self._fit(data, want, sw)
        self._pending_sw = sw
        return response

    def _fit(
        self, data: bytes, want: int, sw: int = SW.NORMAL_PROCESSING
    ) -> tuple[Response, bytes | None]:
        """Hand out ``data`` to a request for ``want`` bytes; returns (answer, data left).

        * More data than one short response holds and Le 256: 256 bytes and ``61xx``, the
          rest waits for GET RESPONSE (otherwise no Le could ever fetch it).
        * Exact mode: Le must equal the length, else ``6Cxx`` and no data.
        * Lenient mode: Le at least the length gets the data; a smaller Le gets ``6Cxx``.
        """
        n = len(data)
        if n > SHORT_LE_MAX and want == SHORT_LE_MAX:
            rest = data[SHORT_LE_MAX:]
            return Response(data[:SHORT_LE_MAX], bytes_available(len(rest))), rest
        if want == n or (want > n and self.le_mode is LeMode.LENIENT):
            return Response(data, sw), None
        return status(wrong_le(n)), None

    def _dispatch(self, cmd: Command) -> Response:
        # GET RESPONSE must follow the command that announced the data: anything else
        # in between drops it (ISO 7816-3 10.3.4).
        pending, self._pending = self._pending, None
        if cmd.cla == iso7816.CLA_INTERINDUSTRY and cmd.ins == Ins.GET_RESPONSE:
            return self._get_response(cmd, pending)
        for applet in self.applets:
            response = applet.process(self, cmd)
            if response is not None:
                return response
        if cmd.cla == iso7816.CLA_PCSC:
            return self._pcsc(cmd)
        if cmd.cla in self.proprietary_classes:
            # The card knows the class (its applications define commands in it), not this
            # instruction in the current state.
            return status(SW.INS_NOT_SUPPORTED)
        if cmd.cla != iso7816.CLA_INTERINDUSTRY:
            return status(SW.CLA_NOT_SUPPORTED)
        handler = {
            Ins.SELECT: self._select,
            Ins.READ_BINARY: self._read_binary,
            Ins.READ_RECORD: self._read_record,
            Ins.GET_CHALLENGE: self._get_challenge,
        }.get(cmd.ins)
        if handler is None:
            return status(SW.INS_NOT_SUPPORTED)
        return handler(cmd)

    # --- commands -------------------------------------------------------------------------

    def _get_response(self, cmd: Command, pending: bytes | None) -> Response:
        """``00 C0 00 00 Le``: the data a ``61xx`` announced. A wrong Le gets ``6Cxx`` and
        the data stays available; with nothing pending the answer is ``6985``."""
        if cmd.data:
            return status(SW.WRONG_LENGTH)
        if cmd.p1 or cmd.p2:
            return status(SW.INCORRECT_P1_P2)
        if pending is None:
            return status(SW.CONDITIONS_OF_USE_NOT_SATISFIED)
        response, rest = self._fit(pending, cmd.le or SHORT_LE_MAX, self._pending_sw)
        self._pending = pending if response.sw >> 8 == 0x6C else rest
        return response

    def _select(self, cmd: Command) -> Response:
        """``00 A4 P1 P2 [Lc FID|name]``: make a file current.

        P1 00 FID (none or ``3F00``: the MF), 01 child DF, 02 EF of the current DF,
        03 parent DF (no data), 04 DF name. P2 00 answers the FCI of a DF (nothing for an
        EF); P2 02 (P1 04 only) selects the next DF with that name; P2 0C, on cards that
        take it, answers nothing. Not found: ``6A82``; a blocked DF or a file in one:
        ``9303``; either way the current file is unchanged. An invalidated DF (an e-purse
        after APPLICATION BLOCK) is selected and answers its FCI with ``6283``.
        """
        no_answer = self.select_p2_0c and cmd.p2 == iso7816.SELECT_NO_RESPONSE_DATA
        next_occurrence = cmd.p2 == SelectOccurrence.NEXT
        if not (no_answer or cmd.p2 == SelectOccurrence.FIRST or next_occurrence):
            return status(SW.INCORRECT_P1_P2)
        if next_occurrence and cmd.p1 != SelectBy.DF_NAME:
            return status(SW.INCORRECT_P1_P2)
        found = self._find(cmd, next_occurrence)
        if isinstance(found, Response):
            return found
        if found is None:
            return status(SW.FILE_NOT_FOUND)
        if is_blocked(found):
            return status(SW.APPLICATION_LOCKED)
        target = self.fs.make_current(found)
        invalidated = isinstance(target, DedicatedFile) and target.invalidated
        sw = SW.SELECTED_FILE_INVALIDATED if invalidated else SW.NORMAL_PROCESSING
        if no_answer or not isinstance(target, DedicatedFile):
            return status(sw)
        return self.respond(cmd, target.fci, sw)

    def _find(self, cmd: Command, next_occurrence: bool) -> File | Response | None:
        """The file a SELECT names (None: not found), or the status word of a malformed one."""
        data, fs = cmd.data, self.fs
        if cmd.p1 == SelectBy.FID:
            if len(data) not in (0, 2):
                return status(SW.WRONG_LENGTH)
            return fs.find_fid(int.from_bytes(data, "big") if data else fs.mf.fid)
        if cmd.p1 in (SelectBy.CHILD_DF, SelectBy.EF_UNDER_CURRENT_DF):
            if len(data) != 2:
                return status(SW.WRONG_LENGTH)
            fid = int.from_bytes(data, "big")
            if cmd.p1 == SelectBy.CHILD_DF:
                return fs.find_child_df(fid)
            return fs.find_child_ef(fid)
        if cmd.p1 == SelectBy.PARENT_DF:
            if data:
                return status(SW.WRONG_LENGTH)
            return fs.find_parent()
        if cmd.p1 == SelectBy.DF_NAME:
            if not 1 <= len(data) <= 16:
                return status(SW.WRONG_LENGTH)
            return fs.find_name(data, next_occurrence=next_occurrence, partial=self.partial_df_name)
        return status(SW.INCORRECT_P1_P2)

    def _ef_for_read(self, sfi: int) -> ElementaryFile | Response:
        """The EF a READ names: by SFI in the current DF (and it becomes current), or the
        current EF when ``sfi`` is 0. A status word when there is none."""
        if sfi == iso7816.SFI_CURRENT_EF:
            if self.fs.current_ef is None:
                return status(SW.COMMAND_NOT_ALLOWED_NO_CURRENT_EF)
            return self.fs.current_ef
        ef = self.fs.ef_by_sfi(sfi)
        if ef is None:
            return status(SW.FILE_NOT_FOUND)
        self.fs.make_current(ef)
        return ef

    def _read_binary(self, cmd: Command) -> Response:
        """``00 B0 P1 P2 Le``: bytes of a transparent EF from an offset.

        P1 bit 8 = 0: 15-bit offset in P1-P2 of the current EF. P1 bit 8 = 1: SFI in P1
        bits 5..1, offset in P2. Fewer bytes left than Le: what there is, with ``6282``
        (ISO 7816-4 in both Le modes: files are read in chunks and the last chunk is
        short). Offset beyond the end: ``6B00``.
        """
        if cmd.data:
            return status(SW.WRONG_LENGTH)
        if cmd.p1 & iso7816.READ_BINARY_BY_SFI:
            sfi = cmd.p1 & 0x1F
            if cmd.p1 & 0x60 or sfi == iso7816.SFI_CURRENT_EF or sfi > iso7816.SFI_MAX:
                return status(SW.INCORRECT_P1_P2)
            found = self._ef_for_read(sfi)
            offset = cmd.p2
        else:
            found = self._ef_for_read(iso7816.SFI_CURRENT_EF)
            offset = cmd.p1 << 8 | cmd.p2
        if isinstance(found, Response):
            return found
        if not isinstance(found, TransparentEF):
            return status(SW.COMMAND_INCOMPATIBLE_WITH_FILE_STRUCTURE)
        if not self.may_read(found):
            return status(SW.SECURITY_STATUS_NOT_SATISFIED)
        if offset and offset >= len(found.data):
            return status(SW.WRONG_P1_P2_OFFSET)
        want = cmd.le or SHORT_LE_MAX
        chunk = found.data[offset : offset + want]
        return Response(
            chunk, SW.NORMAL_PROCESSING if len(chunk) == want else SW.END_OF_FILE_REACHED
        )

    def _read_record(self, cmd: Command) -> Response:
        """``00 B2 P1 P2 Le``: records of a record EF.

        P2 bits 8..4 name the EF by SFI (0: the current EF); bits 3..1 the mode: 100 record
        number P1, 000 the first record whose identifier (first byte, the SIMPLE-TLV tag) is
        P1 - in the current EF always, with an SFI only on cards with ``sfi_record_id`` -
        and 101 records P1 to last, concatenated (only on cards with ``multi_record``).
        """
        if cmd.data:
            return status(SW.WRONG_LENGTH)
        sfi, mode = cmd.p2 >> 3, cmd.p2 & 0b111
        allowed = {
            iso7816.RECORD_BY_NUMBER: True,
            iso7816.RECORD_BY_IDENTIFIER: sfi == iso7816.SFI_CURRENT_EF or self.sfi_record_id,
            iso7816.RECORD_P1_TO_LAST: self.multi_record,
        }
        if sfi > iso7816.SFI_MAX or not allowed.get(mode, False):
            return status(SW.INCORRECT_P1_P2)
        found = self._ef_for_read(sfi)
        if isinstance(found, Response):
            return found
        if not isinstance(found, RecordEF):
            return status(SW.COMMAND_INCOMPATIBLE_WITH_FILE_STRUCTURE)
        if not self.may_read(found):
            return status(SW.SECURITY_STATUS_NOT_SATISFIED)
        records = found.records
        if mode == iso7816.RECORD_BY_IDENTIFIER:
            data = next((r for r in records if r[0] == cmd.p1), None)
        elif not 1 <= cmd.p1 <= len(records):
            # P1 00 would be "the current record": this OS keeps no record pointer.
            data = None
        elif mode == iso7816.RECORD_BY_NUMBER:
            data = records[cmd.p1 - 1]
        else:
            data = b"".join(records[cmd.p1 - 1 :])
        if data is None:
            return status(SW.RECORD_NOT_FOUND)
        return self.respond(cmd, data)

    def _get_challenge(self, cmd: Command) -> Response:
        """``00 84 00 00 Le``: Le (8, or one of the card's other ``challenge_lengths``) random
        bytes for a following authentication; they replace any earlier challenge."""
        if cmd.p1 or cmd.p2:
            return status(SW.INCORRECT_P1_P2)
        if cmd.data or cmd.le not in self.challenge_lengths:
            return status(SW.WRONG_LENGTH)
        self.last_challenge = secrets.token_bytes(cmd.le)
        return Response(self.last_challenge, SW.NORMAL_PROCESSING)

    def _pcsc(self, cmd: Command) -> Response:
        """``FF CA 00 00 Le``: the UID of a contactless card (PC/SC part 3 GET DATA).

        Le 00 means the full UID; a smaller Le ``6Cxx``, a larger one the UID with ``6282``.
        A contact card has no UID and no PC/SC class: ``6E00``.
        """
        if self.uid is None:
            return status(SW.CLA_NOT_SUPPORTED)
        if cmd.ins != Ins.GET_DATA:
            return status(SW.INS_NOT_SUPPORTED)
        if cmd.p1 or cmd.p2:
            return status(SW.INCORRECT_P1_P2)
        if cmd.data:
            return status(SW.WRONG_LENGTH)
        n = len(self.uid)
        if cmd.le is None or cmd.le in (n, SHORT_LE_MAX):
            return Response(self.uid, SW.NORMAL_PROCESSING)
        if cmd.le < n:
            return status(wrong_le(n))
        return Response(self.uid, SW.END_OF_FILE_REACHED)


# --- ATRs (ISO/IEC 7816-3 section 8, PC/SC part 3) ------------------------------------------


def _check_historical(historical: bytes) -> None:
    if len(historical) > MAX_HISTORICAL:
        raise ValueError(f"{len(historical)} historical bytes, an ATR holds at most 15")


def atr_checksum(atr_without_tck: bytes) -> int:
    """TCK: the XOR of every ATR byte after TS, so that T0..TCK XOR to zero."""
    tck = 0
    for b in atr_without_tck[1:]:
        tck ^= b
    return tck


def t0_atr(historical: bytes) -> bytes:
    """A contact ATR offering T=0 only, as social security cards send it.

    ``3B 6n 00 00 <n historical bytes>``: TB1 = 00 (no Vpp) and TC1 = 00 (no extra guard
    time); no TD1, so T=0 is implied and there is no TCK.
    """
    _check_historical(historical)
    return bytes((0x3B, 0x60 | len(historical), 0x00, 0x00)) + historical


def t1_atr(historical: bytes) -> bytes:
    """A contact ATR offering T=1 only.

    ``3B En 00 00 81 31 FE 45 <historical> TCK``: TB1 = 00, TC1 = 00, TD1 = 81 (T=1, TD2
    follows), TD2 = 31 (T=1, TA3 and TB3 follow), TA3 = FE (IFSC 254), TB3 = 45 (BWI 4,
    CWI 5). A TCK is present because a protocol other than T=0 is offered.
    """
    _check_historical(historical)
    body = bytes((0x3B, 0xE0 | len(historical), 0x00, 0x00, 0x81, 0x31, 0xFE, 0x45))
    body += historical
    return body + bytes((atr_checksum(body),))


def contactless_atr(historical: bytes) -> bytes:
    """The PC/SC part 3 pseudo-ATR a contactless reader builds for an ISO 14443-4 card.

    ``3B 8n 80 01 <historical> TCK``: TD1 = 80 (TD2 follows), TD2 = 01 (T=1), TCK.
    """
    _check_historical(historical)
    body = bytes((0x3B, 0x80 | len(historical), 0x80, 0x01)) + historical
    return body + bytes((atr_checksum(body),))
