"""A simulated PSAM: the social security application of a terminal's secure access module.

File tree, personalised from a :class:`terminal.secure.keyfile.KeySet`::

    3F00 MF
     └─ 1001  PSAM ADF, DF name D15600000590, FCI 6F 08 84 06 <AID>
         └─ EF16  terminal number, transparent, SFI 16, 6 bytes BCD, free read

Commands the applet answers while its ADF is selected (docs/card-authentication.md):

=======================================  ==========================================================
``BF DE <usage> <alg> 18 D1 D2 P``       DELIVERY SESSION KEY: card key = the master key of
                                         ``usage`` (01 irk, 02 rkssse, 03 ukssse) for ``alg``
                                         (01 3DES, 03 SM4) diversified with D1 then D2; session key
                                         = P enciphered under it, kept in RAM. ``9000``, no data.
                                         ``6A81`` no keys for the algorithm, ``6A88`` no such key,
                                         ``6A86`` unknown usage/algorithm, ``6700`` Lc not 18.
``80 FA 00 00 08 X 08``                  CIPHER DATA: leftmost 8 bytes of ``E_SK(X || 00..)``.
                                         ``6985`` no session key delivered, ``6A86`` P1-P2 not
                                         00 00, ``6700`` Lc not 8; Le held to 8 (``6C08``).
``80 70 00 00 24 <data> 08``            MAC1 (docs/transit.md): purchase key from the ``purchase``
                                         master (algorithm from the algId byte, diversified by
                                         issuer id then application serial), serial + 1, session
                                         key, MAC1; answers serial(4) MAC1(4) and keeps the session.
                                         ``6A81`` unknown algorithm / no master of it, ``6A88`` no
                                         purchase key at all, ``6700`` Lc not 36.
``80 72 00 00 04 MAC2``                  MAC2 check against the newest session (``9000``/``9302``);
``80 72 00 00 08 serial(4) MAC2``        against the session of that serial (last 16 kept).
                                         ``6985`` no such session.
=======================================  ==========================================================

SELECT and READ BINARY (``00 B0 96 00 06`` reads EF16) are interindustry: the card OS answers
them. Outside the ADF the applet answers nothing and the OS refuses the proprietary classes
(``6E00``), as a PSAM does before its application is selected.

The session key lives in RAM: power-on (:meth:`PsamApplet.reset`) and every DELIVERY SESSION
KEY, successful or not, drop it. The purchase sessions are RAM too; the purchase transaction
serial is EEPROM (it survives power-off, as a real PSAM's).
"""

from __future__ import annotations

from collections.abc import Callable

from firmware_sim.cardos import PROTOCOLS, Applet, CardOS, t0_atr, t1_atr
from firmware_sim.filesystem import DedicatedFile, TransparentEF
from terminal.apdu import CommandAPDU, ResponseAPDU
from terminal.crypto.symmetric import SymmetricAlgorithm, diversify, session_key
from terminal.errors import AlgorithmMissingError, KeyMissingError, TransitRecordError
from terminal.secure.keyfile import KeySet, TransitKeyName
from terminal.secure.psam import (
    DIVERSIFICATION_LENGTH,
    KEY_USAGE,
    PSAM_AID,
    PSAM_COMMANDS,
    TERMINAL_NUMBER_SFI,
)
from terminal.ssc.auth import CRYPTOGRAM_LENGTH, PROCESS_FACTOR_LENGTH, cryptogram
from terminal.status import SW
from terminal.transit.purchase import (
    MAC1_DATA_LENGTH,
    SW_MAC_INVALID,
    Mac1Request,
    Mac2Verdict,
    PurchaseMacEngine,
)

PSAM_ADF_FID = 0x1001  # the FID PBOC-style PSAMs give their application DF
EF16_FID = 0x0016
PSAM_HISTORICAL_MARKER = b"PSAM"
"""Historical bytes start with this; the 6 BCD bytes of the terminal number follow."""

DELIVERY_DATA_LENGTH = 2 * DIVERSIFICATION_LENGTH + PROCESS_FACTOR_LENGTH  # 0x18
_USAGE_KEYS = {usage: name for name, usage in KEY_USAGE.items()}

Handler = Callable[[CardOS, CommandAPDU], ResponseAPDU]


def _sw(sw: int) -> ResponseAPDU:
    return ResponseAPDU(b"", sw)


def psam_fci() -> bytes:
    """``6F 08 84 06 D15600000590``: FCI template with the DF name."""
    return bytes((0x6F, 2 + len(PSAM_AID), 0x84, len(PSAM_AID))) + PSAM_AID


class PsamApplet(Applet):
    """The PSAM application holding the master keys of ``keyset``."""

    def __init__(self, keyset: KeySet) -> None:
        self.keyset = keyset
        self._session: tuple[SymmetricAlgorithm, bytes] | None = None
        masters = {
            alg: key
            for alg in keyset.algorithms()
            if (key := keyset.key(alg, TransitKeyName.PURCHASE)) is not None
        }
        self.purchase = PurchaseMacEngine(masters, bytes.fromhex(keyset.terminal_number))
        """The purchase MAC computations (serial: EEPROM; sessions: RAM)."""
        self.handlers: dict[tuple[int, int], Handler] = {
            PSAM_COMMANDS.delivery_session_key: self._delivery_session_key,
            PSAM_COMMANDS.cipher_data: self._cipher_data,
            PSAM_COMMANDS.mac1: self._mac1,
            PSAM_COMMANDS.mac2: self._mac2,
        }
        """(CLA, INS) -> handler, consulted while the ADF is selected."""

    def __repr__(self) -> str:
        return f"PsamApplet({self.keyset!r})"  # KeySet's repr hides the keys

    def install(self, card: CardOS) -> None:
        adf = card.mf.add(DedicatedFile(PSAM_ADF_FID, name=PSAM_AID, fci=psam_fci()))
        adf.add(
            TransparentEF(
                EF16_FID, bytes.fromhex(self.keyset.terminal_number), sfi=TERMINAL_NUMBER_SFI
            )
        )
        self.root = adf

    def reset(self) -> None:
        self._session = None
        self.purchase.drop_sessions()

    @property
    def has_session(self) -> bool:
        """True while a delivered session key is in RAM (for tests)."""
        return self._session is not None

    def process(self, card: CardOS, cmd: CommandAPDU) -> ResponseAPDU | None:
        handler = self.handlers.get((cmd.cla, cmd.ins))
        if handler is None or not self.is_selected(card):
            return None
        return handler(card, cmd)

    # --- commands -------------------------------------------------------------------------

    def _delivery_session_key(self, card: CardOS, cmd: CommandAPDU) -> ResponseAPDU:
        # Whatever the outcome, the previous session key goes: a failed delivery must not
        # leave the key of the previous card usable by the next CIPHER DATA.
        self._session = None
        name = _USAGE_KEYS.get(cmd.p1)
        try:
            alg = SymmetricAlgorithm(cmd.p2)
        except ValueError:
            return _sw(SW.WRONG_P1P2)
        if name is None:
            return _sw(SW.WRONG_P1P2)
        if len(cmd.data) != DELIVERY_DATA_LENGTH:
            return _sw(SW.WRONG_LENGTH)
        if alg not in self.keyset.algorithms():
            return _sw(SW.FUNCTION_NOT_SUPPORTED)  # 6A81, SSF33 included
        master = self.keyset.key(alg, name)
        if master is None:
            return _sw(SW.REFERENCE_DATA_NOT_FOUND)  # 6A88
        d1, d2 = cmd.data[:8], cmd.data[8:16]
        process_factor = cmd.data[16:]
        card_key = diversify(diversify(master, d1, alg), d2, alg)
        self._session = (alg, session_key(card_key, process_factor, alg))
        return _sw(SW.OK)

    def _cipher_data(self, card: CardOS, cmd: CommandAPDU) -> ResponseAPDU:
        if cmd.p1 or cmd.p2:
            return _sw(SW.WRONG_P1P2)
        if len(cmd.data) != CRYPTOGRAM_LENGTH:
            return _sw(SW.WRONG_LENGTH)
        if self._session is None:
            return _sw(SW.CONDITIONS_NOT_SATISFIED)  # 6985
        alg, key = self._session
        return card.respond(cmd, cryptogram(alg, key, cmd.data))

    def _mac1(self, card: CardOS, cmd: CommandAPDU) -> ResponseAPDU:
        if cmd.p1 or cmd.p2:
            return _sw(SW.WRONG_P1P2)
        if len(cmd.data) != MAC1_DATA_LENGTH:
            return _sw(SW.WRONG_LENGTH)
        if not any(alg for alg, name in self.keyset.keys if name is TransitKeyName.PURCHASE):
            return _sw(SW.REFERENCE_DATA_NOT_FOUND)  # 6A88: no purchase key at all
        try:
            answer = self.purchase.mac1(Mac1Request.from_bytes(cmd.data))
        except (AlgorithmMissingError, KeyMissingError):
            return _sw(SW.FUNCTION_NOT_SUPPORTED)  # 6A81: not for this card's algorithm
        except TransitRecordError:
            return _sw(SW.WRONG_DATA)
        return card.respond(cmd, answer.terminal_serial.to_bytes(4, "big") + answer.mac1)

    def _mac2(self, card: CardOS, cmd: CommandAPDU) -> ResponseAPDU:
        if cmd.p1 or cmd.p2:
            return _sw(SW.WRONG_P1P2)
        if len(cmd.data) == 4:
            verdict = self.purchase.verify_mac2(cmd.data)
        elif len(cmd.data) == 8:
            verdict = self.purchase.verify_mac2(cmd.data[4:], int.from_bytes(cmd.data[:4], "big"))
        else:
            return _sw(SW.WRONG_LENGTH)
        return _sw(
            {
                Mac2Verdict.VALID: SW.OK,
                Mac2Verdict.INVALID: SW_MAC_INVALID,
                Mac2Verdict.UNKNOWN: SW.CONDITIONS_NOT_SATISFIED,
            }[verdict]
        )


def psam_atr(keyset: KeySet, protocol: str = "T=1") -> bytes:
    """Contact ATR with historical bytes ``"PSAM" || terminal number (6 BCD)``.

    T=1: ``3B EA 00 00 81 31 FE 45 <10 historical> TCK``; T=0: ``3B 6A 00 00 <10 historical>``.
    """
    historical = PSAM_HISTORICAL_MARKER + bytes.fromhex(keyset.terminal_number)
    return t1_atr(historical) if protocol == "T=1" else t0_atr(historical)


def build_psam(keyset: KeySet, protocol: str = "T=1") -> CardOS:
    """A PSAM card OS personalised from ``keyset``, not yet powered."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r} is not one of {PROTOCOLS}")
    card = CardOS(psam_atr(keyset, protocol), protocol)
    card.install(PsamApplet(keyset))
    return card
