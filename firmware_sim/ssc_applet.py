"""The social security application (SSSE) on a simulated card, personalised from a profile.

File tree the applet installs under the MF::

    3F00 MF
     └─ DDF1  SSSE, DF name "sx1.sh.社会保障" (GBK), FCI 6F..84..A5(88 SFI [9F0C(86 alg)])
         ├─ EF05  issuer data, record EF, SFI 05, free read
         ├─ EF06  holder data, record EF, SFI 06, free read (1.0/2.0) or RKSSSE (3.0)
         ├─ EF07  fingerprint, transparent, SFI 07, read key (RKSSSE) on every card
         ├─ EF08  photo, transparent, SFI 08, read key (RKSSSE) on every card
         └─ DF01 DF02 DF03 DF04 DF07  sub-applications, AIDs D15600000500..04

A blocked card (``blocked = true``) has the SSSE DF marked blocked: the card OS answers
``9303`` to every SELECT of it or of a file in it, by name, FID or otherwise.

EF05 and EF06 records are SIMPLE-TLV ``tag len value`` in the generation's record order
(:func:`firmware_sim.spec.ssc.record_order`), values encoded by the item formats of
:data:`firmware_sim.spec.ssc.ITEMS`. SELECT and READ RECORD are interindustry, so the card
OS answers them; the applet owns the files and, while the SSSE is selected, answers:

==========================================  =================================================
``00 88 00 00 10 P(8) R(8) [Le]``           INTERNAL AUTHENTICATE: the 8-byte cryptogram of R
                                            under SK = session key of P under the card's IRK.
                                            P1-P2 other than 00 00: ``6A86``.
``00 82 00 0A 10 A(8) R(8)``                EXTERNAL AUTHENTICATE with RKSSSE (key id 0A): the
                                            card's last GET CHALLENGE (8 bytes) is the process
                                            factor P; SK = session key of P under the card's
                                            RKSSSE; accepted when A = cryptogram(SK, R). Grants
                                            the read right of EF07/EF08 (and EF06 on 3.0).
                                            ``6A88`` other key id, ``6A86`` P1 not 00,
                                            ``6984`` no challenge pending (one serves once),
                                            ``63Cx`` wrong (x tries left), ``6983`` blocked.
``00 20 00 00 Lc PIN`` / ``80 5E 01 00``    VERIFY / CHANGE PIN (:mod:`firmware_sim.pin`)
==========================================  =================================================

This is the scheme of the real card logs (gdgly/SI_3rdCard, ``docs/加密机方式指令流.txt``):
GET CHALLENGE -> original, GET CHALLENGE -> process factor, then ``0082000A10 <HSM result>
<original>``. A profile without ``[keys]`` answers both authentications ``6A88``.
"""

from __future__ import annotations

import datetime as dt
import hmac

from firmware_sim import crypto
from firmware_sim.apdu import Command, Response, status
from firmware_sim.cardos import Applet, CardOS, contactless_atr, t0_atr, t1_atr
from firmware_sim.filesystem import DedicatedFile, RecordEF, TransparentEF
from firmware_sim.pin import PinStore, process_pin_command
from firmware_sim.pki_applet import PkiApplet
from firmware_sim.profile import CardKeys, CardProfile, split_name
from firmware_sim.spec import iso7816, ssc
from firmware_sim.spec.iso7816 import Ins
from firmware_sim.spec.ssc import (
    EF05,
    EF06,
    EF07,
    EF08,
    RKSSSE,
    SSSE_FID,
    SSSE_NAME,
    SUB_APPLICATIONS,
    Format,
    Generation,
    Item,
)
from firmware_sim.spec.status import SW, tries_left
from firmware_sim.tlv import fci, tlv
from firmware_sim.tunion_applet import install_from_profile
from terminal.crypto.signing import Algorithm, load_private_key
from terminal.errors import FieldError

EXTERNAL_AUTH_TRIES = 15  # retry counter of RKSSSE: non-volatile, like the PIN's

# Biometric EFs hold placeholders: the terminal only needs something to read in chunks.
FINGERPRINT_SIZE = 512
PHOTO_SIZE = 1024


def ssse_fci(algorithm: int, *, template: bool = True) -> bytes:
    """FCI of the SSSE DDF, in the shape a real 3.0 card answers::

        6F 1C  84 0F <DF name>  A5 09  88 01 1E  9F0C 03  86 01 <algorithm>

    Tag 84 the DF name, A5 the proprietary template: 88 the SFI of the directory EF, and
    9F0C wrapping 86, the algorithm flag (01 DES/3DES, 02 SSF33, 03 SM4). ``template``
    False leaves 9F0C out (``6F 16 84 0F <name> A5 03 88 01 1E``): a DES card.
    """
    proprietary = tlv(ssc.TAG_SFI_OF_DIRECTORY, bytes((ssc.DIRECTORY_SFI,)))
    if template:
        flag = tlv(ssc.TAG_ALGORITHM_FLAG, bytes((algorithm,)))
        proprietary += tlv(iso7816.TAG_ISSUER_DISCRETIONARY, flag)
    return fci(SSSE_NAME, proprietary)


def encode_value(item: Item, value: str | bytes | dt.date, length: int | None = None) -> bytes:
    """The ``length`` (default ``item.length``) bytes of ``value`` in the item's format.

    CN_ID and CN right-pad with F nibbles, AN and GBK with 00 bytes, DATE is YYYYMMDD.
    ``value`` is a string, a date for DATE, or ready GBK bytes for GBK.
    """
    size = item.length if length is None else length
    if item.fmt is Format.DATE:
        if not isinstance(value, dt.date):
            raise FieldError(f"{item.name}: expected a date, got {value!r}")
        return bytes.fromhex(f"{value:%Y%m%d}")
    if isinstance(value, dt.date):
        raise FieldError(f"{item.name}: a date is not a {item.fmt.value} value")
    if item.fmt in (Format.CN_ID, Format.CN):
        digits = value.decode("ascii") if isinstance(value, bytes) else value
        allowed = "0123456789ABCDEFabcdef" if item.fmt is Format.CN_ID else "0123456789"
        if len(digits) > 2 * size or not all(c in allowed for c in digits):
            raise FieldError(f"{item.name}: {digits!r} is not {size} bytes of {item.fmt.value}")
        return bytes.fromhex(digits.ljust(2 * size, "F"))
    if isinstance(value, bytes):
        raw = value
    else:
        try:
            raw = value.encode("gbk" if item.fmt is Format.GBK else "ascii")
        except UnicodeEncodeError as exc:
            raise FieldError(f"{item.name}: {value!r} is not {item.fmt.value} text") from exc
    if len(raw) > size:
        raise FieldError(f"{item.name}: {len(raw)} bytes exceed {size}")
    return raw.ljust(size, b"\x00")


def encode_record(item: Item, value: str | bytes | dt.date, length: int | None = None) -> bytes:
    """One EF05/EF06 record: SIMPLE-TLV ``tag len value``."""
    encoded = encode_value(item, value, length)
    return bytes((item.tag, len(encoded))) + encoded


def item_values(profile: CardProfile) -> dict[str, str | bytes | dt.date]:
    """The value of every SSSE item of ``profile``, by item name (as in ``ssc.ITEMS``)."""
    issuer, holder, card = profile.issuer, profile.holder, profile.card
    if issuer is None or holder is None:
        raise ValueError(f"profile {profile.name} has no social security application")
    name, name_ext = split_name(holder.name, profile.generation, card.name_extension)
    return {
        "card_id": issuer.card_id,
        "category": issuer.category,
        "spec_version": card.spec_version,
        "institution": issuer.institution,
        "issue_date": issuer.issue_date,
        "expiry_date": issuer.expiry_date,
        "card_number": issuer.card_number,
        "ssn": holder.ssn,
        "name": name,
        "name_ext": name_ext,
        "sex": holder.sex,
        "ethnicity": holder.ethnicity,
        "birthplace": holder.birthplace,
        "birth_date": holder.birth_date,
    }


def ssse_records(profile: CardProfile) -> dict[int, list[bytes]]:
    """The records of EF05 and EF06 (by FID), in the card generation's record order.

    A card without the name extension (``name_extension`` false) has no tag 4E record; a
    tag 07 value longer than 9 characters makes a longer record.
    """
    values = item_values(profile)
    records: dict[int, list[bytes]] = {}
    for file in (EF05, EF06):
        records[file.fid] = []
        for tag in ssc.record_order(profile.generation, file):
            if tag == ssc.NAME_EXTENSION_TAG and not profile.card.name_extension:
                continue
            item = ssc.BY_TAG[tag]
            value = values[item.name]
            length = max(item.length, len(value)) if item.name == "card_number" else None
            records[file.fid].append(encode_record(item, value, length))
    return records


def _placeholder_jpeg(size: int) -> bytes:
    # SOI ... EOI, so a viewer at least recognises a (blank) JPEG stream
    return b"\xff\xd8" + bytes(size - 4) + b"\xff\xd9"


class SscApplet(Applet):
    """The SSSE application environment of ``profile``: its files, the holder PIN and the
    internal and external authentication."""

    def __init__(self, profile: CardProfile) -> None:
        self.profile = profile
        self.pin = PinStore(profile.card.pin, profile.card.pin_tries)
        # EXTERNAL AUTHENTICATE failures count like PIN tries: non-volatile.
        self.external_auth_tries = EXTERNAL_AUTH_TRIES

    def process(self, card: CardOS, cmd: Command) -> Response | None:
        if not self.is_selected(card):
            return None
        if cmd.cla == iso7816.CLA_INTERINDUSTRY and cmd.ins == Ins.INTERNAL_AUTHENTICATE:
            return self._internal_authenticate(card, cmd)
        if cmd.cla == iso7816.CLA_INTERINDUSTRY and cmd.ins == Ins.EXTERNAL_AUTHENTICATE:
            return self._external_authenticate(card, cmd)
        answer = process_pin_command(self.pin, card.grant, cmd)
        if answer is None and cmd.cla == iso7816.CLA_PROPRIETARY:
            # class 80 is the SSSE's own (CHANGE PIN): any other instruction is unknown
            return status(SW.INS_NOT_SUPPORTED)
        return answer

    def _keys_and_algorithm(self) -> tuple[CardKeys, int] | Response:
        """The card keys and cipher, or the status word a card without them answers."""
        if self.profile.keys is None:
            return status(SW.REFERENCED_DATA_NOT_FOUND)
        # SSF33 is not public: this simulator has no implementation to answer with.
        if self.profile.card.algorithm not in (ssc.Algorithm.DES3, ssc.Algorithm.SM4):
            return status(SW.FUNCTION_NOT_SUPPORTED)
        return self.profile.keys, self.profile.card.algorithm

    def _internal_authenticate(self, card: CardOS, cmd: Command) -> Response:
        """``00 88 00 00 10 P||R [Le]``: cryptogram of R under the session key from P (IRK)."""
        if (cmd.p1, cmd.p2) != (ssc.INTERNAL_AUTHENTICATE_P1, ssc.INTERNAL_AUTHENTICATE_P2):
            return status(SW.INCORRECT_P1_P2)
        if len(cmd.data) != ssc.AUTHENTICATE_DATA_LENGTH:
            return status(SW.WRONG_LENGTH)
        usable = self._keys_and_algorithm()
        if isinstance(usable, Response):
            return usable
        keys, algorithm = usable
        process_factor = cmd.data[: ssc.PROCESS_FACTOR_LENGTH]
        original = cmd.data[ssc.PROCESS_FACTOR_LENGTH :]
        sk = crypto.session_key(algorithm, keys.irk, process_factor)
        return card.respond(cmd, crypto.cryptogram(algorithm, sk, original))

    def _external_authenticate(self, card: CardOS, cmd: Command) -> Response:
        """``00 82 00 0A 10 A||R``: grant RKSSSE when A is the cryptogram of R under the
        session key of the card's last challenge (the process factor)."""
        if cmd.p1 != ssc.EXTERNAL_AUTHENTICATE_P1:
            return status(SW.INCORRECT_P1_P2)
        if cmd.p2 != ssc.KEY_ID_RKSSSE:
            return status(SW.REFERENCED_DATA_NOT_FOUND)
        if len(cmd.data) != ssc.AUTHENTICATE_DATA_LENGTH:
            return status(SW.WRONG_LENGTH)
        if self.external_auth_tries == 0:
            return status(SW.AUTHENTICATION_METHOD_BLOCKED)
        challenge = card.take_challenge()  # a challenge serves once, right or wrong
        if challenge is None or len(challenge) != ssc.PROCESS_FACTOR_LENGTH:
            return status(SW.REFERENCED_DATA_INVALIDATED)
        usable = self._keys_and_algorithm()
        if isinstance(usable, Response):
            return usable
        keys, algorithm = usable
        auth_data = cmd.data[: ssc.CRYPTOGRAM_LENGTH]
        original = cmd.data[ssc.CRYPTOGRAM_LENGTH :]
        sk = crypto.session_key(algorithm, keys.rkssse, challenge)
        if not hmac.compare_digest(auth_data, crypto.cryptogram(algorithm, sk, original)):
            self.external_auth_tries -= 1
            if self.external_auth_tries == 0:
                return status(SW.AUTHENTICATION_METHOD_BLOCKED)
            return status(tries_left(self.external_auth_tries))
        self.external_auth_tries = EXTERNAL_AUTH_TRIES
        card.grant(RKSSSE)
        return status(SW.NORMAL_PROCESSING)

    def install(self, card: CardOS) -> None:
        profile = self.profile
        # EF06 is free on 1.0/2.0 cards; the biometric EFs need the read key on every card
        # (domain.md 2: "transparent, read key").
        holder_access = RKSSSE if profile.generation is Generation.V3 else None
        records = ssse_records(profile)
        ssse = card.mf.add(
            DedicatedFile(
                SSSE_FID,
                name=SSSE_NAME,
                fci=ssse_fci(profile.card.algorithm, template=profile.card.fci_template),
                blocked=profile.card.blocked,
            )
        )
        ssse.add(RecordEF(EF05.fid, sfi=EF05.sfi, records=records[EF05.fid]))
        ssse.add(
            RecordEF(EF06.fid, sfi=EF06.sfi, read_access=holder_access, records=records[EF06.fid])
        )
        ssse.add(TransparentEF(EF07.fid, bytes(FINGERPRINT_SIZE), sfi=EF07.sfi, read_access=RKSSSE))
        ssse.add(
            TransparentEF(EF08.fid, _placeholder_jpeg(PHOTO_SIZE), sfi=EF08.sfi, read_access=RKSSSE)
        )
        for fid, aid in SUB_APPLICATIONS.items():
            ssse.add(DedicatedFile(fid, name=aid, fci=fci(aid)))
        self.root = ssse


def build_card(profile: CardProfile, contactless: bool = False) -> CardOS:
    """A card OS with the applications of ``profile`` installed, not yet powered.

    The SSSE (unless the profile is a plain T-Union card), the PKI application (``[pki]``)
    and the T-Union e-purse (``[tunion]``). Contact: the profile's protocol, ATR
    ``3B 6D 00 00 <historical>`` (T=0) or ``3B ED 00 00 81 31 FE 45 <historical> TCK``
    (T=1). Contactless: the PC/SC part 3 pseudo-ATR ``3B 8D 80 01 <historical> TCK``, T=1,
    and the UID answers ``FF CA``.
    """
    settings = profile.card
    historical = settings.historical
    if contactless:
        atr, protocol, uid = contactless_atr(historical), "T=1", settings.uid
    else:
        atr = t1_atr(historical) if settings.protocol == "T=1" else t0_atr(historical)
        protocol, uid = settings.protocol, None
    card = CardOS(
        atr,
        protocol,
        uid,
        le_mode=settings.le_mode,
        multi_record=settings.multi_record,
        sfi_record_id=settings.sfi_record_id,
        select_p2_0c=settings.select_p2_0c,
        partial_df_name=settings.partial_df_name,
        extended_length=settings.extended_length,
        challenge_lengths=settings.challenge_lengths,
        # Class 80 is the SSC's and the e-purse's (CHANGE PIN, GET BALANCE ...).
        proprietary_classes=(iso7816.CLA_PROPRIETARY,),
    )
    if profile.has_ssse:
        card.install(SscApplet(profile))
    if profile.pki is not None:
        pki = profile.pki
        algorithm = Algorithm(pki.algorithm)
        card.install(
            PkiApplet(
                load_private_key(algorithm, pki.private_key),
                algorithm,
                pki.card_certificate,
                pki.issuer_certificate,
            )
        )
    if profile.tunion is not None:
        install_from_profile(card, profile.tunion)
    return card
