"""The social security application (SSSE) on a simulated card, personalised from a profile.

File tree the applet installs under the MF::

    3F00 MF
     └─ DDF1  SSSE, DF name "sx1.sh.社会保障" (GBK), FCI 6F..84..A5(88 SFI, 9F0C(86 alg))
         ├─ EF05  issuer data, record EF, SFI 05, free read
         ├─ EF06  holder data, record EF, SFI 06, free read (1.0/2.0) or RKSSSE (3.0)
         ├─ EF07  fingerprint, transparent, SFI 07, RKSSSE on 3.0 cards
         ├─ EF08  photo, transparent, SFI 08, RKSSSE on 3.0 cards
         └─ DF01 DF02 DF03 DF04 DF07  sub-applications, AIDs D15600000500..04

EF05 and EF06 records are SIMPLE-TLV ``tag len value`` in the generation's record order
(:data:`terminal.ssc.layout.RECORD_ORDER`), values encoded by the item formats of
:data:`terminal.ssc.layout.ITEMS`. Everything the applet needs on the wire - SELECT and
READ RECORD - is interindustry, so the card OS answers it; the applet only owns the files.
The applet answers, while the SSSE is selected, VERIFY and CHANGE PIN (the PIN and its
retry counter survive power cycles), INTERNAL AUTHENTICATE with the card's IRK and
EXTERNAL AUTHENTICATE with RKSSSE, which grants the right to read EF06 on 3.0 cards
(docs/card-authentication.md). A profile without ``[keys]`` answers 6A88 to both.
"""

from __future__ import annotations

import datetime as dt
import hmac

from firmware_sim.cardos import Applet, CardOS, contactless_atr, t0_atr, t1_atr
from firmware_sim.filesystem import DedicatedFile, RecordEF, TransparentEF
from firmware_sim.pin import PinStore, process_pin_command
from firmware_sim.pki_applet import PkiApplet
from firmware_sim.profile import CardKeys, CardProfile, split_name
from terminal.apdu import CommandAPDU, ResponseAPDU
from terminal.crypto.signing import Algorithm, load_private_key
from terminal.crypto.symmetric import session_key
from terminal.errors import FieldError
from terminal.ssc.auth import cryptogram
from terminal.ssc.layout import (
    BY_TAG,
    EF05_FID,
    EF05_SFI,
    EF06_FID,
    EF06_SFI,
    SSSE_NAME,
    Format,
    Generation,
    Item,
    file_tags,
)
from terminal.status import SW

SSSE_FID = 0xDDF1
EF07_FID, EF07_SFI = 0xEF07, 0x07
EF08_FID, EF08_SFI = 0xEF08, 0x08
DIR_SFI = 0x1E
"""SFI the SSSE FCI names in tag 88 (the directory EF of the application environment)."""

INS_INTERNAL_AUTHENTICATE = 0x88
INS_EXTERNAL_AUTHENTICATE = 0x82
EXTERNAL_AUTH_TRIES = 15

RKSSSE = "RKSSSE"
"""Right granted by EXTERNAL AUTHENTICATE with the read key: reads EF06 on 3.0 cards."""

AID_PREFIX = bytes.fromhex("D156000005")
SUB_APPLICATIONS: dict[int, bytes] = {
    0xDF01: AID_PREFIX + b"\x00",  # public
    0xDF02: AID_PREFIX + b"\x01",  # employment
    0xDF03: AID_PREFIX + b"\x02",  # social insurance
    0xDF04: AID_PREFIX + b"\x03",  # social insurance
    0xDF07: AID_PREFIX + b"\x04",  # personnel
}

# Biometric EFs hold placeholders: the terminal only needs something to read in chunks.
FINGERPRINT_SIZE = 512
PHOTO_SIZE = 1024


def _tlv(tag: bytes, value: bytes) -> bytes:
    """BER-TLV with a one-byte length (values up to 127 bytes, all this applet needs)."""
    if len(value) > 0x7F:
        raise ValueError(f"TLV value of {len(value)} bytes needs a long length form")
    return tag + bytes((len(value),)) + value


def ssse_fci(algorithm: int) -> bytes:
    """FCI of the SSSE DDF, in the shape a real 3.0 card answers::

    6F 1C  84 0F <DF name>  A5 09  88 01 1E  9F0C 03  86 01 <algorithm>

    Tag 84 the DF name, A5 the proprietary template: 88 the SFI of the directory EF, and
    9F0C wrapping 86, the algorithm flag (01 DES/3DES, 02 SSF33, 03 SM4).
    """
    proprietary = _tlv(b"\x88", bytes((DIR_SFI,))) + _tlv(
        b"\x9f\x0c", _tlv(b"\x86", bytes((algorithm,)))
    )
    return _tlv(b"\x6f", _tlv(b"\x84", SSSE_NAME) + _tlv(b"\xa5", proprietary))


def encode_value(item: Item, value: str | bytes | dt.date) -> bytes:
    """The ``item.length`` bytes of ``value`` in the item's format.

    HEX and CN right-pad with F nibbles, AN and GBK with 00 bytes, BCD_DATE is YYYYMMDD.
    ``value`` is a string, a date for BCD_DATE, or ready GBK bytes for GBK.
    """
    size = item.length
    if item.fmt is Format.BCD_DATE:
        if not isinstance(value, dt.date):
            raise FieldError(f"{item.name}: expected a date, got {value!r}")
        return bytes.fromhex(f"{value:%Y%m%d}")
    if isinstance(value, dt.date):
        raise FieldError(f"{item.name}: a date is not a {item.fmt.value} value")
    if item.fmt in (Format.HEX, Format.CN):
        digits = value.decode("ascii") if isinstance(value, bytes) else value
        allowed = "0123456789ABCDEFabcdef" if item.fmt is Format.HEX else "0123456789"
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


def encode_record(item: Item, value: str | bytes | dt.date) -> bytes:
    """One EF05/EF06 record: SIMPLE-TLV ``tag len value``."""
    return bytes((item.tag, item.length)) + encode_value(item, value)


def item_values(profile: CardProfile) -> dict[str, str | bytes | dt.date]:
    """The value of every SSSE item of ``profile``, by item name (as in ``layout.ITEMS``)."""
    issuer, holder = profile.issuer, profile.holder
    name, name_ext = split_name(holder.name, profile.generation)
    return {
        "card_id": issuer.card_id,
        "category": issuer.category,
        "spec_version": profile.card.spec_version,
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
    """The records of EF05 and EF06 (by FID), in the card generation's record order."""
    values = item_values(profile)
    return {
        fid: [
            encode_record(BY_TAG[tag], values[BY_TAG[tag].name])
            for tag in file_tags(profile.generation, fid)
        ]
        for fid in (EF05_FID, EF06_FID)
    }


def _placeholder_jpeg(size: int) -> bytes:
    # SOI ... EOI, so a viewer at least recognises a (blank) JPEG stream
    return b"\xff\xd8" + bytes(size - 4) + b"\xff\xd9"


class SscApplet(Applet):
    """The SSSE application environment of ``profile``: its files, and the holder PIN
    (VERIFY / CHANGE PIN, :mod:`firmware_sim.pin`) while the SSSE is selected."""

    def __init__(self, profile: CardProfile) -> None:
        self.profile = profile
        self.pin = PinStore(profile.card.pin, profile.card.pin_tries)
        # EXTERNAL AUTHENTICATE failures count like PIN tries: non-volatile.
        self.external_auth_tries = EXTERNAL_AUTH_TRIES

    def process(self, card: CardOS, cmd: CommandAPDU) -> ResponseAPDU | None:
        if self.profile.card.blocked and (
            self.is_selected(card) or (cmd.ins == 0xA4 and cmd.data == SSSE_NAME)
        ):
            return ResponseAPDU(b"", SW.APPLICATION_BLOCKED)
        if not self.is_selected(card):
            return None
        if cmd.cla == 0x00 and cmd.ins == INS_INTERNAL_AUTHENTICATE:
            return self._internal_authenticate(card, cmd)
        if cmd.cla == 0x00 and cmd.ins == INS_EXTERNAL_AUTHENTICATE:
            return self._external_authenticate(card, cmd)
        return process_pin_command(self.pin, card.grant, cmd)

    def _keys_and_algorithm(self) -> tuple[CardKeys, int] | ResponseAPDU:
        """The card keys and cipher, or the status word a card without them answers."""
        if self.profile.keys is None:
            return ResponseAPDU(b"", SW.REFERENCE_DATA_NOT_FOUND)
        # SSF33 is not public: this simulator has no implementation to answer with.
        if self.profile.card.algorithm not in (1, 3):
            return ResponseAPDU(b"", SW.FUNCTION_NOT_SUPPORTED)
        return self.profile.keys, self.profile.card.algorithm

    def _internal_authenticate(self, card: CardOS, cmd: CommandAPDU) -> ResponseAPDU:
        """``00 88 00 01 10 P||R``: cryptogram of R under the session key from P (IRK)."""
        if len(cmd.data) != 16:
            return ResponseAPDU(b"", SW.WRONG_LENGTH)
        usable = self._keys_and_algorithm()
        if isinstance(usable, ResponseAPDU):
            return usable
        keys, algorithm = usable
        process_factor, original = cmd.data[:8], cmd.data[8:]
        answer = cryptogram(algorithm, session_key(keys.irk, process_factor, algorithm), original)
        return card.respond(cmd, answer)

    def _external_authenticate(self, card: CardOS, cmd: CommandAPDU) -> ResponseAPDU:
        """``00 82 00 02 10 A||P``: grant RKSSSE when A is the cryptogram of our challenge."""
        if len(cmd.data) != 16:
            return ResponseAPDU(b"", SW.WRONG_LENGTH)
        if self.external_auth_tries == 0:
            return ResponseAPDU(b"", SW.AUTH_METHOD_BLOCKED)
        challenge, card.last_challenge = card.last_challenge, None  # a challenge serves once
        if challenge is None or len(challenge) != 8:
            return ResponseAPDU(b"", SW.REFERENCE_DATA_INVALIDATED)
        usable = self._keys_and_algorithm()
        if isinstance(usable, ResponseAPDU):
            return usable
        keys, algorithm = usable
        auth_data, process_factor = cmd.data[:8], cmd.data[8:]
        expected = cryptogram(
            algorithm, session_key(keys.rkssse, process_factor, algorithm), challenge
        )
        if not hmac.compare_digest(auth_data, expected):
            self.external_auth_tries -= 1
            if self.external_auth_tries == 0:
                return ResponseAPDU(b"", SW.AUTH_METHOD_BLOCKED)
            return ResponseAPDU(b"", 0x63C0 | self.external_auth_tries)
        self.external_auth_tries = EXTERNAL_AUTH_TRIES
        card.grant(RKSSSE)
        return ResponseAPDU(b"", SW.OK)

    def install(self, card: CardOS) -> None:
        profile = self.profile
        protected = RKSSSE if profile.generation is Generation.V3 else None
        records = ssse_records(profile)
        ssse = card.mf.add(
            DedicatedFile(SSSE_FID, name=SSSE_NAME, fci=ssse_fci(profile.card.algorithm))
        )
        ssse.add(RecordEF(EF05_FID, sfi=EF05_SFI, records=records[EF05_FID]))
        ssse.add(RecordEF(EF06_FID, sfi=EF06_SFI, read_access=protected, records=records[EF06_FID]))
        ssse.add(
            TransparentEF(EF07_FID, bytes(FINGERPRINT_SIZE), sfi=EF07_SFI, read_access=protected)
        )
        ssse.add(
            TransparentEF(
                EF08_FID, _placeholder_jpeg(PHOTO_SIZE), sfi=EF08_SFI, read_access=protected
            )
        )
        for fid, aid in SUB_APPLICATIONS.items():
            ssse.add(DedicatedFile(fid, name=aid, fci=_tlv(b"\x6f", _tlv(b"\x84", aid))))
        self.root = ssse


def build_card(profile: CardProfile, contactless: bool = False) -> CardOS:
    """A card OS with the SSSE application of ``profile`` installed, not yet powered.

    Contact: the profile's protocol, ATR ``3B 6D 00 00 <historical>`` (T=0) or
    ``3B ED 00 00 81 31 FE 45 <historical> TCK`` (T=1). Contactless: the PC/SC part 3
    pseudo-ATR ``3B 8D 80 01 <historical> TCK``, T=1, and the UID answers ``FF CA``.
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
    )
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
    return card
