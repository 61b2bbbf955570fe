"""A simulated PSAM: the social security application of a terminal's secure access module.

File tree, personalised from :class:`firmware_sim.keys.MasterKeys` (plain master keys; the
issuing side and the CLI build them from the operator key file)::

    3F00 MF
     └─ 1001  PSAM ADF, DF name D15600000590, FCI 6F 08 84 06 <AID>
         └─ EF16  terminal number, transparent, SFI 16, 6 bytes BCD, free read

Commands the applet answers while its ADF is selected (docs/card-authentication.md,
docs/transit.md):

=======================================  ==========================================================
``BF DE <usage> <alg> 18 D1 D2 P``       DELIVERY SESSION KEY: card key = the master key of
                                         ``usage`` (01 irk, 02 rkssse, 03 ukssse) for ``alg``
                                         (01 3DES, 03 SM4) diversified with D1 then D2, both as
                                         sent; session key = P enciphered under it, kept in RAM.
                                         ``9000``, no data. ``6A81`` no keys for the algorithm,
                                         ``6A88`` no such key, ``6A86`` unknown usage/algorithm,
                                         ``6700`` Lc not 18.
``80 FA 00 00 08 X 08``                  CIPHER DATA: leftmost 8 bytes of ``E_SK(X || 00..)``.
                                         ``6985`` no session key delivered, ``6A86`` P1-P2 not
                                         00 00 (nor 05 00), ``6700`` Lc not 8; Le held to 8
                                         (``6C08``).
``80 1A 45 <kv> 10 serial8 issuer8``     INIT SAM FOR DESCRYPT: the maintenance master of key
                                         version ``kv`` (02 3DES, 03 SM4) diversified by the
                                         issuer id, then the application serial's low 8 bytes
                                         (= the card's DAMK), kept in RAM. ``9000``, no data.
                                         ``6A88`` unknown key version or no such master,
                                         ``6A86`` P1 not 45, ``6700`` Lc not 10.
``80 FA 05 00 Lc IV(8) data``            CIPHER DATA, MAC with initial value: the 4-byte MAC of
                                         ``data`` (whole 8-byte blocks, padded by the terminal)
                                         under the DESCRYPT key, CBC from IV; SM4 extends IV and
                                         data with zeros to 16-byte blocks. ``6985`` no key set
                                         up, ``6700`` Lc not 8 + a multiple of 8 (at least 16).
``80 70 00 00 24 <data> 08``            MAC1: purchase key from the ``purchase`` master
                                         (algorithm from the algId byte, diversified by issuer id
                                         then application serial), serial + 1, session key, MAC1;
                                         answers serial(4) MAC1(4) and keeps the session.
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
KEY, successful or not, drop it; the DESCRYPT key likewise (power-on, every INIT SAM FOR
DESCRYPT). The purchase sessions are RAM too; the purchase transaction
serial is EEPROM (it survives power-off, as a real PSAM's).
"""

from __future__ import annotations

import hmac
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from firmware_sim import crypto
from firmware_sim.apdu import Command, Response, status
from firmware_sim.cardos import PROTOCOLS, Applet, CardOS, t0_atr, t1_atr
from firmware_sim.filesystem import DedicatedFile, TransparentEF
from firmware_sim.keys import MasterKeys
from firmware_sim.spec import psam, tunion
from firmware_sim.spec.psam import (
    HISTORICAL_MARKER,
    PSAM_ADF_FID,
    PSAM_AID,
    TERMINAL_NUMBER_FID,
    KeyUsage,
)
from firmware_sim.spec.ssc import Algorithm
from firmware_sim.spec.status import SW
from firmware_sim.tlv import fci

Handler = Callable[[CardOS, Command], Response]


def psam_fci() -> bytes:
    """``6F 08 84 06 D15600000590``: FCI template with the DF name."""
    return fci(PSAM_AID)


@dataclass(frozen=True)
class _MacSession:
    algorithm: int
    key: bytes
    amount: int


class PsamApplet(Applet):
    """The PSAM application holding ``keys`` (:class:`MasterKeys`, or a key set of the
    terminal's shape, read by :meth:`MasterKeys.coerce`)."""

    def __init__(self, keys: object, serial: int = 0) -> None:
        self.keys = MasterKeys.coerce(keys)
        self._session: tuple[int, bytes] | None = None
        self._descrypt: tuple[int, bytes] | None = None  # INIT SAM FOR DESCRYPT: (alg, key)
        self.serial = serial
        """The purchase transaction serial (EEPROM), incremented before each MAC1."""
        self._purchases: OrderedDict[int, _MacSession] = OrderedDict()
        self._current: int | None = None
        self.handlers: dict[tuple[int, int], Handler] = {
            psam.Command.DELIVERY_SESSION_KEY.value: self._delivery_session_key,
            psam.Command.CIPHER_DATA.value: self._cipher_data,
            psam.Command.MAC1.value: self._mac1,
            psam.Command.MAC2.value: self._mac2,
            psam.Command.INIT_SAM_FOR_DESCRYPT.value: self._init_descrypt,
        }
        """(CLA, INS) -> handler, consulted while the ADF is selected."""

    def __repr__(self) -> str:
        return f"PsamApplet({self.keys!r})"  # MasterKeys' repr hides the keys

    def install(self, card: CardOS) -> None:
        adf = card.mf.add(DedicatedFile(PSAM_ADF_FID, name=PSAM_AID, fci=psam_fci()))
        adf.add(
            TransparentEF(
                TERMINAL_NUMBER_FID, self.keys.terminal_number_bytes, sfi=psam.TERMINAL_NUMBER_SFI
            )
        )
        self.root = adf

    def reset(self) -> None:
        self._session = None
        self._descrypt = None
        self._purchases.clear()
        self._current = None

    @property
    def has_session(self) -> bool:
        """True while a delivered session key is in RAM (for tests)."""
        return self._session is not None

    def process(self, card: CardOS, cmd: Command) -> Response | None:
        if not self.is_selected(card):
            return None
        handler = self.handlers.get((cmd.cla, cmd.ins))
        if handler is None:
            classes = {cla for cla, _ in self.handlers}
            # the PSAM's own classes (80, BF): an unknown instruction is 6D00
            return status(SW.INS_NOT_SUPPORTED) if cmd.cla in classes else None
        return handler(card, cmd)

    # --- commands -------------------------------------------------------------------------

    def _delivery_session_key(self, card: CardOS, cmd: Command) -> Response:
        # Whatever the outcome, the previous session key goes: a failed delivery must not
        # leave the key of the previous card usable by the next CIPHER DATA.
        self._session = None
        if cmd.p1 not in psam.SSC_KEY_NAMES or cmd.p2 not in tuple(Algorithm):
            return status(SW.INCORRECT_P1_P2)
        if len(cmd.data) != psam.DELIVERY_DATA_LENGTH:
            return status(SW.WRONG_LENGTH)
        alg = cmd.p2
        if alg not in self.keys.algorithms():
            return status(SW.FUNCTION_NOT_SUPPORTED)  # 6A81, SSF33 included
        master = self.keys.key(alg, psam.SSC_KEY_NAMES[KeyUsage(cmd.p1)])
        if master is None:
            return status(SW.REFERENCED_DATA_NOT_FOUND)  # 6A88
        d1, d2, process_factor = cmd.data[:8], cmd.data[8:16], cmd.data[16:]
        card_key = crypto.diversify(alg, crypto.diversify(alg, master, d1), d2)
        self._session = (alg, crypto.session_key(alg, card_key, process_factor))
        return status(SW.NORMAL_PROCESSING)

    def _init_descrypt(self, card: CardOS, cmd: Command) -> Response:
        """``80 1A 45 <key version> 10 <serial low 8 || issuer id 8>``."""
        self._descrypt = None  # a failed set-up leaves no key of the previous card
        if cmd.p1 != psam.DESCRYPT_USAGE_MAINTENANCE:
            return status(SW.INCORRECT_P1_P2)
        if len(cmd.data) != psam.DESCRYPT_DATA_LENGTH:
            return status(SW.WRONG_LENGTH)
        alg = psam.MAINTENANCE_KEY_VERSIONS.get(cmd.p2)
        master = None if alg is None else self.keys.maintenance_master(alg)
        if alg is None or master is None:
            return status(SW.REFERENCED_DATA_NOT_FOUND)  # 6A88
        serial_low8, issuer_id = cmd.data[:8], cmd.data[8:]
        key = crypto.diversify(alg, crypto.diversify(alg, master, issuer_id), serial_low8)
        self._descrypt = (alg, key)
        return status(SW.NORMAL_PROCESSING)

    def _cipher_data(self, card: CardOS, cmd: Command) -> Response:
        if (cmd.p1, cmd.p2) == (psam.CIPHER_P1_MAC_WITH_IV, 0x00):
            return self._mac_with_iv(card, cmd)
        if cmd.p1 or cmd.p2:
            return status(SW.INCORRECT_P1_P2)
        if len(cmd.data) != psam.CIPHER_DATA_LENGTH:
            return status(SW.WRONG_LENGTH)
        if self._session is None:
            return status(SW.CONDITIONS_OF_USE_NOT_SATISFIED)  # 6985
        alg, key = self._session
        return card.respond(cmd, crypto.cryptogram(alg, key, cmd.data))

    def _mac_with_iv(self, card: CardOS, cmd: Command) -> Response:
        """``80 FA 05 00 Lc IV(8) data``: MAC of ``data`` (whole 8-byte blocks) from IV."""
        iv_length = psam.CIPHER_IV_LENGTH
        blocks = len(cmd.data) - iv_length
        if blocks <= 0 or blocks % 8:
            return status(SW.WRONG_LENGTH)
        if self._descrypt is None:
            return status(SW.CONDITIONS_OF_USE_NOT_SATISFIED)  # 6985
        alg, key = self._descrypt
        iv, data = cmd.data[:iv_length], cmd.data[iv_length:]
        block = crypto.block_size(alg)
        data += bytes(-len(data) % block)  # SM4: the 8-byte padded data extended with zeros
        mac = crypto.sm_mac(alg, key, data, iv=crypto.mac_initial_value(alg, iv), pad=False)
        return card.respond(cmd, mac)

    def _mac1(self, card: CardOS, cmd: Command) -> Response:
        # A failed MAC1 must not leave the previous card's session checkable as current.
        self._current = None
        if cmd.p1 or cmd.p2:
            return status(SW.INCORRECT_P1_P2)
        if len(cmd.data) != psam.MAC1_DATA_LENGTH:
            return status(SW.WRONG_LENGTH)
        if not self.keys.has_purchase_keys():
            return status(SW.REFERENCED_DATA_NOT_FOUND)  # 6A88: no purchase key at all
        f = {name: cmd.data[part] for name, part in psam.MAC1_FIELDS.items()}
        alg = tunion.FLAG_OF_ALGORITHM_ID.get(f["algorithm_id"][0])
        master = None if alg is None else self.keys.purchase_master(alg)
        if alg is None or master is None:
            return status(SW.FUNCTION_NOT_SUPPORTED)  # 6A81: not for this card's algorithm
        if not (tunion.is_bcd_date(f["date"]) and tunion.is_bcd_time(f["time"])):
            return status(SW.INCORRECT_DATA)
        dpk = crypto.purchase_key(alg, master, f["issuer_id"], bytes(2) + f["serial_low8"])
        self.serial = (self.serial + 1) & 0xFFFFFFFF
        counter = int.from_bytes(f["counter"], "big")
        sk = crypto.purchase_session_key(alg, dpk, f["random"], counter, self.serial)
        amount = int.from_bytes(f["amount"], "big")
        terminal_number = self.keys.terminal_number_bytes
        mac = crypto.mac1(alg, sk, amount, f["type"][0], terminal_number, f["date"], f["time"])
        self._purchases[self.serial] = _MacSession(alg, sk, amount)
        while len(self._purchases) > psam.KEPT_SESSIONS:
            self._purchases.popitem(last=False)
        self._current = self.serial
        return card.respond(cmd, self.serial.to_bytes(4, "big") + mac)

    def _mac2(self, card: CardOS, cmd: Command) -> Response:
        if cmd.p1 or cmd.p2:
            return status(SW.INCORRECT_P1_P2)
        if len(cmd.data) not in psam.MAC2_LENGTHS:
            return status(SW.WRONG_LENGTH)
        recovery = len(cmd.data) == 8
        serial = int.from_bytes(cmd.data[:4], "big") if recovery else self._current
        session = None if serial is None else self._purchases.get(serial)
        if session is None:
            return status(SW.CONDITIONS_OF_USE_NOT_SATISFIED)
        expected = crypto.mac2(session.algorithm, session.key, session.amount)
        if not hmac.compare_digest(expected, cmd.data[-4:]):
            return status(SW.MAC_INVALID)
        # A checked session is done with: a replayed MAC2 is not accepted twice as current.
        if not recovery:
            self._current = None
        return status(SW.NORMAL_PROCESSING)


def psam_atr(keys: object, protocol: str = "T=1") -> bytes:
    """Contact ATR with historical bytes ``"PSAM" || terminal number (6 BCD)``.

    T=1: ``3B EA 00 00 81 31 FE 45 <10 historical> TCK``; T=0: ``3B 6A 00 00 <10 historical>``.
    """
    historical = HISTORICAL_MARKER + MasterKeys.coerce(keys).terminal_number_bytes
    return t1_atr(historical) if protocol == "T=1" else t0_atr(historical)


def build_psam(keys: object, protocol: str = "T=1") -> CardOS:
    """A PSAM card OS personalised from ``keys`` (:class:`MasterKeys`, or a key set of the
    terminal's shape), not yet powered."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r} is not one of {PROTOCOLS}")
    master_keys = MasterKeys.coerce(keys)
    card = CardOS(psam_atr(master_keys, protocol), protocol)
    card.install(PsamApplet(master_keys))
    return card
