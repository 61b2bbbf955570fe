"""Card profiles: the TOML file that says which card the simulator is.

A profile fixes everything that differs between real cards: the generation and its quirks
(protocol, Le strictness, READ RECORD capabilities, FCI shape, algorithm), the ATR
historical bytes, the issuer data of EF05, the holder data of EF06 and, optionally, the
T-Union e-purse. Eight samples ship in ``firmware_sim/profiles/`` (:func:`sample_names`,
:func:`sample_profile_path`); docs/simulator.md describes them.

Schema (every key is required unless a default is given)::

    [card]
    spec_version = "2.00"      # EF05 tag 03: "1.0x", "2.0x", "3.00", or "" (empty: a 1.0
                               # card, Sichuan spec); decides the generation
    protocol = "T=0"           # contact protocol: "T=0" or "T=1"
    le_mode = "exact"          # "exact" (6Cxx unless Le = length) or "lenient"
    multi_record = true        # READ RECORD 'P1 to last' (P2 mode 101); false answers 6A86
    algorithm = 1              # FCI tag 86: 1 DES/3DES, 2 SSF33, 3 SM4
    chip_vendor = "0081"       # ATR T1-T2 (2 bytes hex); default "0081"
    os_vendor = "4A4446"       # ATR T3-T5 (3 bytes hex); default "4A4446"
    manufacturer = "8660"      # ATR T6-T7 (2 bytes hex); default "8660"
    # historical = "00814A444686605199000001AC"  # optional: all 13 historical bytes,
    #                            # used as is instead of the three pieces above
    uid = "5A3C9E21"           # contactless UID, 4 or 7 bytes hex; default: the card serial
    pin = "123456"             # the holder PIN, 4-12 digits; default "123456", the
                               # initial PIN cards are issued with
    pin_tries = 3              # VERIFY tries before the PIN blocks (6983); default 3
    sfi_record_id = false      # READ RECORD by identifier with an SFI (P2 SFI<<3|0);
                               # default false: 6A86 (by identifier in the current EF works)
    select_p2_0c = false       # accept SELECT P2 0C (not defined on SSC cards); default false
    partial_df_name = false    # SELECT by a right-truncated DF name; default false (exact)
    extended_length = false    # extended-length APDUs; default false (6700)
    challenge_lengths = [8]    # GET CHALLENGE Le values answered, of 4, 8, 16; default [8]
    fci_template = true        # SSSE FCI carries 9F0C/86 (the algorithm flag); default true;
                               # false: no template, which makes a DES card (algorithm 1)
    name_extension = true      # EF06 has a tag 4E record (2.0 and 3.0 cards); default true;
                               # false: no 4E record, as on some 2.0 cards
    blocked = false            # the SSSE answers 9303 (application blocked); default false

    [issuer]                   # EF05
    card_id = "500103D15600000510000001FFFFFFFF"
    #   32 hex: region (6 digits) + D156000005 + serial (8 hex) + authentication code (8 hex)
    category = "3"             # 1 pre-school, 2 student, 3 adult, 4 elderly
    institution = "915600000250010050010001"   # 9156000002 + issuing region (6 digits) +
                               # initialiser region (6 digits) + sequence (2 digits)
    issue_date = 2021-03-01    # TOML dates
    expiry_date = 2031-03-01
    card_number = "A01000013"  # 8-character body + check character (verified); a longer
                               # tag 07 value (e.g. 10 characters) is allowed: a reader
                               # takes the first 9

    [holder]                   # EF06
    ssn = "500103198506150014" # 18-character citizen ID, GB 11643 check digit verified
    name = "张测试"            # UTF-8 here, GBK on the card; over 30 GBK bytes continues in
                               # tag 4E (2.0 and 3.0 cards, 20 bytes more)
    sex = "1"                  # 1 male, 2 female, 9 unspecified
    ethnicity = "01"           # GB 3304 code, 2 digits
    birthplace = "500103"      # GB/T 2260 code, 6 digits
    birth_date = 1985-06-15

Optional tables. ``[tunion]`` installs the T-Union e-purse (domain.md section 4) next to the
SSSE; a profile with ``[tunion]`` and neither ``[issuer]`` nor ``[holder]`` is a plain
T-Union card (no SSSE: selecting it answers 6A82), whose ``[card]`` table takes only
``protocol`` and ``historical`` (1 to 15 bytes, required), ``uid`` (default: the low 4
bytes of the application serial), ``le_mode`` (default exact), ``multi_record`` (default
false), ``sfi_record_id``, ``select_p2_0c``, ``partial_df_name``, ``extended_length`` and
``challenge_lengths``::

    [tunion]
    algorithm = 1              # purchase key cipher: 1 3DES (algId 00), 3 SM4 (algId 04)
    balance = 5000             # fen, the true balance (bits 0-30)
    app_serial = "50000000000000000001"  # 0x15 bytes 10-19, 10 bytes hex
    issuer_code = "5000"       # 0x15 bytes 0-1
    city_code = "5000"         # 0x15 bytes 2-3
    industry_code = "0001"     # 0x15 bytes 4-5; default "0001"
    card_type = 1              # 0x15 byte 28; default 1
    start_date = 2020-01-01    # 0x15 bytes 20-23; default 2020-01-01
    expiry_date = 2040-12-31   # 0x15 bytes 24-27; default 2040-12-31
    counter = 0                # transaction counter; default 0
    overdraft = 0              # overdraft limit, fen; default 0
    balance_bit31 = false      # GET BALANCE and INITIALIZE answer bit 31 set (garbage a
                               # reader masks off); debits use the true balance; default false
    fci_public_info = true     # FCI carries 0x15 in 9F0C; false: the terminal must READ
                               # BINARY 0x15 (00 B0 95 00 1E); default true
    fci_label = false          # FCI in the real card's shape: 50 "MOT_T_EP", 87, 9F08, 9F12
                               # before 9F0C; default false (84 and A5{9F0C} only)
    purchase_log = []          # initial 0x18 records, newest first, 23 bytes hex each
    empty_log_records = 0      # all-zero 0x18 records after them (unused slots; 9000)
    purchase_key = "..."       # the card's purchase key DPK, 32 hex (written by
                               # onecard sim issue); without it INITIALIZE answers 9403
    tac_key = "..."            # optional: the card's separate TAC key DTK, 32 hex (the
                               # separate-master scheme, docs/transit.md); without it the
                               # TAC key is the DPK diversified by "TAC" (dpk-variant)
    maintenance_key = "..."    # optional: the card's application maintenance key DAMK,
                               # 32 hex (written by onecard sim issue); without it
                               # APPLICATION BLOCK (84 1E) answers 6A88
    rail_record = true         # file 0x1A (rail composite records) present; default true
    rail_record_id = 2         # identifier (byte 1) of its one fresh record; default 2
    rail_record_hex = "..."    # optional: the record's 128 bytes, hex, as another operator
                               # (or a fault) left it; its byte 1 is its identifier

The tables the issuing tools (``onecard sim issue``) write for personalised cards hold card
secrets, so such files are made at test or demo time, never committed::

    [keys]                     # the card's own (diversified) SSSE keys, 32 hex each
    irk = "..."                # internal authentication key
    rkssse = "..."             # read key: EXTERNAL AUTHENTICATE (key 0A) unlocks EF06 on 3.0
    ukssse = "..."             # update key (optional)

    [pki]                      # 3.0 cards: the PKI application (docs/pki.md)
    algorithm = "sm2"          # or "ecdsa-p256"
    private_key = "..."        # 32 bytes hex
    card_certificate = "..."   # hex
    issuer_certificate = "..." # hex

The ATR historical bytes are T1-T2 chip vendor, T3-T5 vendor/OS, T6-T7 card manufacturer,
T8-T9 the first four digits of the region (BCD, from ``card_id``) and TA-TD the card serial.
Text values hold no control characters (a name with a line break is refused).
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
import unicodedata
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

from firmware_sim.cardos import PROTOCOLS, LeMode
from firmware_sim.spec import iso7816, ssc, tunion
from firmware_sim.spec.ssc import Generation
from terminal.errors import ConfigError

PROFILES_DIR = Path(__file__).with_name("profiles")
DEFAULT_SAMPLE = "chongqing-2.0"

SSC_RID = ssc.CARD_ID_RID
ALGORITHMS = {1: "DES/3DES", 2: "SSF33", 3: "SM4"}
PURCHASE_ALGORITHMS = {1: "3DES", 3: "SM4"}
CATEGORIES = {"1": "pre-school", "2": "student", "3": "adult", "4": "elderly"}
SEXES = {"1": "male", "2": "female", "9": "unspecified"}
MAX_CARD_NUMBER_VALUE = 20  # a tag 07 value longer than 9 characters, up to this

_PLAIN_CARD_KEYS = (
    "protocol",
    "historical",
    "uid",
    "le_mode",
    "multi_record",
    "sfi_record_id",
    "select_p2_0c",
    "partial_df_name",
    "extended_length",
    "challenge_lengths",
)

# File 0x15 of a sample e-purse, where a [tunion] table (or add_tunion) gives no value.
SAMPLE_ISSUER_CODE = b"\x50\x00"
SAMPLE_CITY_CODE = b"\x50\x00"
DEFAULT_INDUSTRY_CODE = b"\x00\x01"
DEFAULT_START_DATE = dt.date(2020, 1, 1)
DEFAULT_EXPIRY_DATE = dt.date(2040, 12, 31)
DEFAULT_CARD_TYPE = 0x01
ISSUER_RFU = b"\xff\xff"  # 0x15 bytes 6-7
APP_VERSION = 0x01  # 0x15 byte 9


def citizen_id_check_digit(body: str) -> str:
    """GB 11643 (ISO 7064 MOD 11-2) check character for the first 17 digits of a citizen ID."""
    try:
        return ssc.citizen_id_check(body)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


@dataclass(frozen=True)
class CardSettings:
    """``[card]``: generation, transport quirks, FCI shape and ATR pieces."""

    spec_version: str
    protocol: str
    le_mode: LeMode
    multi_record: bool
    algorithm: int
    historical: bytes
    """All 13 ATR historical bytes, resolved from the pieces or given whole."""
    uid: bytes
    pin: str = "123456"
    pin_tries: int = 3
    blocked: bool = False
    sfi_record_id: bool = False
    select_p2_0c: bool = False
    partial_df_name: bool = False
    extended_length: bool = False
    challenge_lengths: tuple[int, ...] = (iso7816.CHALLENGE_LENGTH,)
    fci_template: bool = True
    name_extension: bool = True

    @property
    def generation(self) -> Generation:
        generation = Generation.from_spec_version(self.spec_version)
        assert generation is not None, "validated by load_profile"
        return generation


@dataclass(frozen=True)
class IssuerData:
    """``[issuer]``: the items of EF05."""

    card_id: str
    category: str
    institution: str
    issue_date: dt.date
    expiry_date: dt.date
    card_number: str
    """The tag 07 value: 9 characters (body + check), or longer on some cards."""

    @property
    def region(self) -> str:
        """The issuing region: the first 6 digits of the card identification code."""
        return self.card_id[:6]

    @property
    def serial(self) -> bytes:
        """The 4-byte card serial inside the card identification code."""
        return bytes.fromhex(self.card_id[16:24])


@dataclass(frozen=True)
class HolderData:
    """``[holder]``: the items of EF06."""

    ssn: str
    name: str
    sex: str
    ethnicity: str
    birthplace: str
    birth_date: dt.date


@dataclass(frozen=True)
class CardKeys:
    """``[keys]``: the card's diversified SSSE keys (16 bytes each)."""

    irk: bytes
    rkssse: bytes
    ukssse: bytes | None = None

    def __repr__(self) -> str:
        return "CardKeys(<hidden>)"


@dataclass(frozen=True)
class PkiPersonalisation:
    """``[pki]``: the PKI application of a 3.0 card."""

    algorithm: str
    private_key: bytes
    card_certificate: bytes
    issuer_certificate: bytes

    def __repr__(self) -> str:
        return f"PkiPersonalisation({self.algorithm}, <hidden>)"


@dataclass(frozen=True)
class TUnionSettings:
    """``[tunion]``: the T-Union e-purse of the card."""

    algorithm: int
    balance: int
    public_info: tunion.PublicInfo
    counter: int = 0
    overdraft: int = 0
    balance_bit31: bool = False
    fci_public_info: bool = True
    fci_label: bool = False
    purchase_log: tuple[bytes, ...] = ()
    empty_log_records: int = 0
    purchase_key: bytes | None = None
    tac_key: bytes | None = None
    """The card's separate TAC key DTK (``separate-master``); None: ``dpk-variant``."""
    maintenance_key: bytes | None = None
    """The card's application maintenance key DAMK (APPLICATION BLOCK's MAC)."""
    rail_record: bool = True
    """File 0x1A present (one record)."""
    rail_record_id: int = tunion.DEFAULT_RAIL_RECORD_ID
    rail_record_data: bytes | None = None
    """The 0x1A record's 128 bytes as personalised; None: a fresh one with the id."""

    def __repr__(self) -> str:  # keys hidden (purchase, TAC, maintenance)
        key = "<hidden>" if self.purchase_key else None
        return (
            f"TUnionSettings(serial={self.public_info.app_serial.hex()}, "
            f"balance={self.balance}, algorithm={self.algorithm}, purchase_key={key})"
        )


@dataclass(frozen=True)
class CardProfile:
    """One simulated card, as loaded and validated from a profile file.

    ``issuer`` and ``holder`` are None on a plain T-Union card (no SSSE).
    """

    name: str
    """The profile's name: its file name without ``.toml``."""
    card: CardSettings
    issuer: IssuerData | None
    holder: HolderData | None
    keys: CardKeys | None = None
    pki: PkiPersonalisation | None = None
    tunion: TUnionSettings | None = None

    @property
    def generation(self) -> Generation:
        return self.card.generation

    @property
    def has_ssse(self) -> bool:
        """True for a social security card, False for a plain T-Union card."""
        return self.issuer is not None


def sample_public_info(
    app_serial: bytes,
    *,
    issuer_code: bytes = SAMPLE_ISSUER_CODE,
    city_code: bytes = SAMPLE_CITY_CODE,
    industry_code: bytes = DEFAULT_INDUSTRY_CODE,
    start: dt.date = DEFAULT_START_DATE,
    expiry: dt.date = DEFAULT_EXPIRY_DATE,
    card_type: int = DEFAULT_CARD_TYPE,
) -> tunion.PublicInfo:
    """File 0x15 of a sample e-purse: an e-purse application (type 02, version 01) with
    ``app_serial``; the rest as given or the sample defaults (a [tunion] table's defaults)."""
    return tunion.PublicInfo(
        issuer_code=issuer_code,
        city_code=city_code,
        industry_code=industry_code,
        issuer_rfu=ISSUER_RFU,
        app_type=tunion.APP_TYPE_EPURSE,
        app_version=APP_VERSION,
        app_serial=app_serial,
        start_date=start,
        expiry_date=expiry,
        card_type=card_type,
    )


# --- validation helpers --------------------------------------------------------------------


def split_name(
    name: str, generation: Generation, name_extension: bool = True
) -> tuple[bytes, bytes]:
    """The GBK bytes of tag 09 (name) and tag 4E (name extension) for ``name``.

    A name longer than tag 09's 30 bytes continues in tag 4E (20 bytes) on 2.0 and 3.0
    cards that have the record (``name_extension``); the split falls between characters so
    neither part holds half a GBK character. Raises :class:`ConfigError` when the name is
    not GBK or does not fit.
    """
    room = ssc.BY_TAG[ssc.NAME_TAG].length
    ext_room = ssc.BY_TAG[ssc.NAME_EXTENSION_TAG].length
    try:
        encoded = name.encode("gbk")
    except UnicodeEncodeError as exc:
        raise ConfigError(f"name {name!r}: {name[exc.start]!r} has no GBK encoding") from exc
    if len(encoded) <= room:
        return encoded, b""
    if generation is Generation.V1 or not name_extension:
        card = "a 1.0 card" if generation is Generation.V1 else "a card without tag 4E"
        raise ConfigError(
            f"name {name!r} takes {len(encoded)} GBK bytes; {card} holds {room} (no tag 4E)"
        )
    head, tail = b"", b""
    for i, ch in enumerate(name):
        part = ch.encode("gbk")
        if len(head) + len(part) > room:
            tail = name[i:].encode("gbk")
            break
        head += part
    if len(tail) > ext_room:
        raise ConfigError(
            f"name {name!r} takes {len(encoded)} GBK bytes; tags 09 and 4E hold {room} + {ext_room}"
        )
    return head, tail


class _Table:
    """One TOML table under validation: typed getters with errors that say where."""

    def __init__(self, source: str, section: str, table: object) -> None:
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{section}] is missing or not a table")
        self.source, self.section, self.table = source, section, table
        self.used: set[str] = set()

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: [{self.section}] {key}: {problem}")

    def get(self, key: str, kind: type, default: Any = None) -> Any:
        self.used.add(key)
        if key not in self.table:
            if default is None:
                raise self.error(key, "missing")
            return default
        value = self.table[key]
        # bool is an int in Python, but `algorithm = true` is a mistake, not 1
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.error(key, f"expected {kind.__name__}, got {value!r}")
        if isinstance(value, str):
            control = next((c for c in value if unicodedata.category(c) == "Cc"), None)
            if control is not None:
                raise self.error(key, f"control character U+{ord(control):04X} in {value!r}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value: bool = self.get(key, bool, default)
        return value

    def number(self, key: str, low: int, high: int, default: int | None = None) -> int:
        value: int = self.get(key, int, default)
        self.check(key, low <= value <= high, f"{value} is outside {low}..{high}")
        return value

    def text(self, key: str, pattern: str, hint: str, default: str | None = None) -> str:
        value: str = self.get(key, str, default)
        if not re.fullmatch(pattern, value):
            raise self.error(key, f"{value!r} is not {hint}")
        return value

    def hex_bytes(self, key: str, size: int, default: str | None = None) -> bytes:
        return bytes.fromhex(
            self.text(key, f"[0-9A-Fa-f]{{{2 * size}}}", f"{size} bytes of hex", default)
        )

    def choice(self, key: str, kind: type, choices: dict[Any, str], default: Any = None) -> Any:
        value = self.get(key, kind, default)
        if value not in choices:
            listed = ", ".join(f"{c!r} ({what})" for c, what in choices.items())
            raise self.error(key, f"{value!r} is not one of {listed}")
        return value

    def date(self, key: str, default: dt.date | None = None) -> dt.date:
        value = self.get(key, object, default)
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return value
        raise self.error(key, f"expected a TOML date such as 2021-03-01, got {value!r}")

    def check(self, key: str, ok: bool, problem: str) -> None:
        if not ok:
            raise self.error(key, problem)

    def finish(self) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            raise ConfigError(
                f"{self.source}: [{self.section}] unknown key(s) {', '.join(unknown)}"
            )


def _historical(t: _Table, card_id: str | None) -> bytes:
    piece_keys = ("chip_vendor", "os_vendor", "manufacturer")
    if card_id is None:  # a plain T-Union card: its own historical bytes, 1 to 15
        hint = "1 to 15 bytes of hex"
        return bytes.fromhex(t.text("historical", r"(?:[0-9A-Fa-f]{2}){1,15}", hint))
    if "historical" in t.table:
        given = [k for k in piece_keys if k in t.table]
        t.check("historical", not given, f"give either historical or {', '.join(given)}")
        return t.hex_bytes("historical", 13)
    return b"".join(
        (
            t.hex_bytes("chip_vendor", 2, "0081"),
            t.hex_bytes("os_vendor", 3, "4A4446"),
            t.hex_bytes("manufacturer", 2, "8660"),
            bytes.fromhex(card_id[:4]),  # T8-T9: first four region digits, BCD
            bytes.fromhex(card_id[16:24]),  # TA-TD: the card serial
        )
    )


def _uid(t: _Table, default: str) -> bytes:
    uid_hex = t.text("uid", r"[0-9A-Fa-f]{8}|[0-9A-Fa-f]{14}", "4 or 7 bytes of hex", default)
    return bytes.fromhex(uid_hex)


def _challenge_lengths(t: _Table) -> tuple[int, ...]:
    lengths: list[object] = t.get("challenge_lengths", list, [iso7816.CHALLENGE_LENGTH])
    allowed = sorted(iso7816.CHALLENGE_LENGTHS)
    numbers = [n for n in lengths if isinstance(n, int) and not isinstance(n, bool)]
    ok = bool(lengths) and len(numbers) == len(lengths) and set(numbers) <= set(allowed)
    t.check("challenge_lengths", ok, f"{lengths!r} is not a list of some of {allowed}")
    return tuple(sorted(set(numbers)))


def _transport(t: _Table, le_default: str | None = None) -> dict[str, Any]:
    """The [card] keys every card has: protocol, Le, and the capabilities beyond the strict
    command set (each off by default)."""
    modes = {m.value: m.name.lower() for m in LeMode}
    le_mode = LeMode(t.choice("le_mode", str, modes, le_default))
    return {
        "protocol": t.choice("protocol", str, {p: "contact protocol" for p in PROTOCOLS}),
        "le_mode": le_mode,
        "sfi_record_id": t.flag("sfi_record_id", False),
        "select_p2_0c": t.flag("select_p2_0c", False),
        "partial_df_name": t.flag("partial_df_name", False),
        "extended_length": t.flag("extended_length", False),
        "challenge_lengths": _challenge_lengths(t),
    }


def _card(t: _Table, card_id: str) -> CardSettings:
    spec_version = t.text(
        "spec_version", r"|[123]\.0\d", 'a version such as "2.00" (or "" for 1.0)'
    )
    transport = _transport(t)
    multi_record: bool = t.get("multi_record", bool)
    algorithm = t.choice("algorithm", int, ALGORITHMS)
    historical = _historical(t, card_id)
    uid = _uid(t, card_id[16:24])
    pin = t.text("pin", r"\d{4,12}", "4 to 12 digits", "123456")
    pin_tries = t.number("pin_tries", 1, 15, 3)
    fci_template = t.flag("fci_template", True)
    t.check(
        "fci_template",
        fci_template or algorithm == ssc.Algorithm.DES3,
        f"a card without the algorithm template is a DES card (Sichuan spec 10.1), "
        f"not algorithm {algorithm}",
    )
    return CardSettings(
        spec_version=spec_version,
        multi_record=multi_record,
        algorithm=algorithm,
        historical=historical,
        uid=uid,
        pin=pin,
        pin_tries=pin_tries,
        blocked=t.flag("blocked", False),
        fci_template=fci_template,
        name_extension=t.flag("name_extension", True),
        **transport,
    )


def _plain_card(t: _Table, tunion_settings: TUnionSettings) -> CardSettings:
    """[card] of a plain T-Union card: transport and ATR only."""
    for key in t.table:
        t.check(key, key in _PLAIN_CARD_KEYS, "not a key of a plain T-Union card (no SSSE)")
    transport = _transport(t, LeMode.EXACT.value)
    return CardSettings(
        spec_version="",
        multi_record=t.flag("multi_record", False),
        algorithm=ssc.Algorithm.DES3,
        historical=_historical(t, None),
        uid=_uid(t, tunion_settings.public_info.app_serial[-4:].hex()),
        **transport,
    )


def _issuer(t: _Table) -> IssuerData:
    card_id = t.text(
        "card_id",
        rf"\d{{6}}{SSC_RID}[0-9A-Fa-f]{{16}}",
        f"region (6 digits) + {SSC_RID} + serial (8 hex) + authentication code (8 hex)",
    ).upper()
    category = t.choice("category", str, CATEGORIES)
    institution = t.text(
        "institution",
        rf"{ssc.INSTITUTION_PREFIX}\d{{14}}",
        f"{ssc.INSTITUTION_PREFIX} + issuing region (6 digits) + initialiser region "
        "(6 digits) + sequence (2 digits), 24 digits",
    )
    issue_date, expiry_date = t.date("issue_date"), t.date("expiry_date")
    t.check("expiry_date", expiry_date > issue_date, f"{expiry_date} is not after {issue_date}")
    card_number = t.text(
        "card_number",
        rf"[A-Z]\d{{7}}[0-9X][0-9A-Z]{{0,{MAX_CARD_NUMBER_VALUE - 9}}}",
        "a letter, 7 digits and a check (then optional characters, at most "
        f"{MAX_CARD_NUMBER_VALUE} in all)",
    )
    expected = ssc.card_number_check(card_number[:8])
    t.check(
        "card_number",
        card_number[8] == expected,
        f"{card_number!r} has check character {card_number[8]!r}, the body gives {expected!r}",
    )
    return IssuerData(card_id, category, institution, issue_date, expiry_date, card_number)


def _holder(t: _Table, card: CardSettings) -> HolderData:
    ssn = t.text("ssn", r"\d{17}[0-9X]", "17 digits and a check character (digit or X)")
    expected = citizen_id_check_digit(ssn[:17])
    t.check(
        "ssn", ssn[17] == expected, f"{ssn!r} has check digit {ssn[17]!r}, should be {expected!r}"
    )
    name: str = t.get("name", str)
    t.check("name", bool(name.strip()), "empty")
    try:
        split_name(name, card.generation, card.name_extension)
    except ConfigError as exc:
        raise t.error("name", exc.reason) from None
    sex = t.choice("sex", str, SEXES)
    ethnicity = t.text("ethnicity", r"\d{2}", "a 2-digit GB 3304 code")
    birthplace = t.text("birthplace", r"\d{6}", "a 6-digit GB/T 2260 region code")
    birth_date = t.date("birth_date")
    return HolderData(ssn, name, sex, ethnicity, birthplace, birth_date)


PKI_ALGORITHMS = {"sm2": "SM2", "ecdsa-p256": "ECDSA P-256"}


def _keys(t: _Table) -> CardKeys:
    irk = t.hex_bytes("irk", 16)
    rkssse = t.hex_bytes("rkssse", 16)
    ukssse = t.hex_bytes("ukssse", 16) if "ukssse" in t.table else None
    return CardKeys(irk, rkssse, ukssse)


def _pki(t: _Table) -> PkiPersonalisation:
    algorithm = t.choice("algorithm", str, PKI_ALGORITHMS)
    private_key = t.hex_bytes("private_key", 32)
    card_cert = t.text("card_certificate", r"(?:[0-9A-Fa-f]{2})+", "hex")
    issuer_cert = t.text("issuer_certificate", r"(?:[0-9A-Fa-f]{2})+", "hex")
    return PkiPersonalisation(
        algorithm, private_key, bytes.fromhex(card_cert), bytes.fromhex(issuer_cert)
    )


def _tunion(t: _Table) -> TUnionSettings:
    algorithm = t.choice("algorithm", int, PURCHASE_ALGORITHMS)
    start = t.date("start_date", DEFAULT_START_DATE)
    expiry = t.date("expiry_date", DEFAULT_EXPIRY_DATE)
    t.check("expiry_date", expiry > start, f"{expiry} is not after {start}")
    info = sample_public_info(
        t.hex_bytes("app_serial", 10),
        issuer_code=t.hex_bytes("issuer_code", 2),
        city_code=t.hex_bytes("city_code", 2),
        industry_code=t.hex_bytes("industry_code", 2, DEFAULT_INDUSTRY_CODE.hex()),
        start=start,
        expiry=expiry,
        card_type=t.number("card_type", 0, 0xFF, DEFAULT_CARD_TYPE),
    )
    log: list[object] = t.get("purchase_log", list, [])
    records = []
    for number, record in enumerate(log, start=1):
        ok = isinstance(record, str) and re.fullmatch(r"[0-9A-Fa-f]{46}", record) is not None
        t.check("purchase_log", ok, f"record {number} is not 23 bytes of hex")
        records.append(bytes.fromhex(str(record)))
    key = t.hex_bytes("purchase_key", 16) if "purchase_key" in t.table else None
    t.used.add("purchase_key")
    tac_key = t.hex_bytes("tac_key", 16) if "tac_key" in t.table else None
    t.used.add("tac_key")
    maintenance_key = t.hex_bytes("maintenance_key", 16) if "maintenance_key" in t.table else None
    t.used.add("maintenance_key")
    rail_record = t.flag("rail_record", True)
    rail_record_id = t.number("rail_record_id", 0, 0xFF, tunion.DEFAULT_RAIL_RECORD_ID)
    rail_size = tunion.RAIL_RECORDS.length
    rail_data = None
    if "rail_record_hex" in t.table:
        t.check("rail_record_hex", rail_record, "a record for a card without file 0x1A")
        rail_data = t.hex_bytes("rail_record_hex", rail_size)
    t.used.add("rail_record_hex")
    return TUnionSettings(
        algorithm=algorithm,
        balance=t.number("balance", 0, tunion.BALANCE_MASK),
        public_info=info,
        counter=t.number("counter", 0, 0xFFFF, 0),
        overdraft=t.number("overdraft", 0, 0xFFFFFF, 0),
        balance_bit31=t.flag("balance_bit31", False),
        fci_public_info=t.flag("fci_public_info", True),
        fci_label=t.flag("fci_label", False),
        purchase_log=tuple(records),
        empty_log_records=t.number("empty_log_records", 0, 64, 0),
        purchase_key=key,
        tac_key=tac_key,
        maintenance_key=maintenance_key,
        rail_record=rail_record,
        rail_record_id=rail_record_id,
        rail_record_data=rail_data,
    )


TABLES = ("card", "issuer", "holder", "keys", "pki", "tunion")


def parse_profile(document: str, source: str = "<profile>") -> CardProfile:
    """Validate the TOML text of a profile; ``source`` names it in error messages."""
    try:
        data = tomllib.loads(document)
    except ValueError as exc:  # TOMLDecodeError, and the interpreter's limit on digits
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    except RecursionError:  # tomllib does not bound nesting
        raise ConfigError(f"{source}: arrays or tables nested too deeply") from None
    unknown = sorted(set(data) - set(TABLES))
    if unknown:
        raise ConfigError(f"{source}: unknown table(s) {', '.join(unknown)}")
    plain = "tunion" in data and "issuer" not in data and "holder" not in data
    required = ["card"] if plain else ["card", "issuer", "holder"]
    sections = required + [s for s in ("keys", "pki", "tunion") if s in data]
    tables = {s: _Table(source, s, data.get(s)) for s in sections}
    tunion_settings = _tunion(tables["tunion"]) if "tunion" in tables else None
    issuer = holder = None
    if plain:
        assert tunion_settings is not None
        for section in ("keys", "pki"):
            if section in tables:
                raise ConfigError(f"{source}: [{section}] needs the SSSE ([issuer], [holder])")
        card = _plain_card(tables["card"], tunion_settings)
    else:
        issuer = _issuer(tables["issuer"])
        card = _card(tables["card"], issuer.card_id)
        holder = _holder(tables["holder"], card)
    keys = _keys(tables["keys"]) if "keys" in tables else None
    pki = _pki(tables["pki"]) if "pki" in tables else None
    for table in tables.values():
        table.finish()
    return CardProfile(Path(source).stem, card, issuer, holder, keys, pki, tunion_settings)


def load_profile(path: str | PathLike[str]) -> CardProfile:
    """Read and validate the profile file at ``path``; :class:`ConfigError` says what is wrong."""
    path = Path(path)
    try:
        document = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read profile {path}: {exc}") from None
    return parse_profile(document, str(path))


def sample_names() -> tuple[str, ...]:
    """Names of the profiles that ship with the simulator, e.g. ``chongqing-2.0``."""
    return tuple(sorted(p.stem for p in PROFILES_DIR.glob("*.toml")))


def sample_profile_path(name: str = DEFAULT_SAMPLE) -> Path:
    """Path of the shipped sample profile ``name``."""
    path = PROFILES_DIR / f"{name}.toml"
    if not path.is_file():
        raise ConfigError(f"no sample profile {name!r}; samples: {', '.join(sample_names())}")
    return path


def load_sample(name: str = DEFAULT_SAMPLE) -> CardProfile:
    """Load the shipped sample profile ``name``."""
    return load_profile(sample_profile_path(name))


# --- writing ---------------------------------------------------------------------------------


def _toml_string(text: str) -> str:
    """A TOML basic string: backslash and quote escaped, every control character as \\uXXXX
    (TOML forbids them raw), so whatever the text the file is valid TOML."""
    out = []
    for c in text:
        if c in '\\"':
            out.append("\\" + c)
        elif unicodedata.category(c) == "Cc":
            out.append(f"\\u{ord(c):04X}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | dt.date):
        return str(value)
    if isinstance(value, bytes):
        return f'"{value.hex().upper()}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return _toml_string(str(value))


def _card_table(profile: CardProfile) -> dict[str, object]:
    card = profile.card
    transport: dict[str, object] = {
        "protocol": card.protocol,
        "le_mode": card.le_mode.value,
        "multi_record": card.multi_record,
        "sfi_record_id": card.sfi_record_id,
        "select_p2_0c": card.select_p2_0c,
        "partial_df_name": card.partial_df_name,
        "extended_length": card.extended_length,
        "challenge_lengths": card.challenge_lengths,
        "historical": card.historical,
        "uid": card.uid,
    }
    if not profile.has_ssse:
        return transport
    return {
        "spec_version": card.spec_version,
        "algorithm": card.algorithm,
        **transport,
        "pin": card.pin,
        "pin_tries": card.pin_tries,
        "blocked": card.blocked,
        "fci_template": card.fci_template,
        "name_extension": card.name_extension,
    }


def _tunion_table(settings: TUnionSettings) -> dict[str, object]:
    info = settings.public_info
    table: dict[str, object] = {
        "algorithm": settings.algorithm,
        "balance": settings.balance,
        "app_serial": info.app_serial,
        "issuer_code": info.issuer_code,
        "city_code": info.city_code,
        "industry_code": info.industry_code,
        "card_type": info.card_type,
        "start_date": info.start_date,
        "expiry_date": info.expiry_date,
        "counter": settings.counter,
        "overdraft": settings.overdraft,
        "balance_bit31": settings.balance_bit31,
        "fci_public_info": settings.fci_public_info,
        "fci_label": settings.fci_label,
        "purchase_log": list(settings.purchase_log),
        "empty_log_records": settings.empty_log_records,
        "rail_record": settings.rail_record,
        "rail_record_id": settings.rail_record_id,
    }
    if settings.rail_record_data is not None:
        table["rail_record_hex"] = settings.rail_record_data
    if settings.purchase_key is not None:
        table["purchase_key"] = settings.purchase_key
    if settings.tac_key is not None:
        table["tac_key"] = settings.tac_key
    if settings.maintenance_key is not None:
        table["maintenance_key"] = settings.maintenance_key
    return table


def format_profile(profile: CardProfile, comment: str = "") -> str:
    """The TOML text of ``profile``; :func:`parse_profile` reads it back to an equal profile."""
    tables: dict[str, dict[str, object]] = {"card": _card_table(profile)}
    if profile.issuer is not None and profile.holder is not None:
        issuer, holder = profile.issuer, profile.holder
        tables["issuer"] = {
            "card_id": issuer.card_id,
            "category": issuer.category,
            "institution": issuer.institution,
            "issue_date": issuer.issue_date,
            "expiry_date": issuer.expiry_date,
            "card_number": issuer.card_number,
        }
        tables["holder"] = {
            "ssn": holder.ssn,
            "name": holder.name,
            "sex": holder.sex,
            "ethnicity": holder.ethnicity,
            "birthplace": holder.birthplace,
            "birth_date": holder.birth_date,
        }
    if profile.tunion is not None:
        tables["tunion"] = _tunion_table(profile.tunion)
    if profile.keys is not None:
        keys: dict[str, object] = {"irk": profile.keys.irk, "rkssse": profile.keys.rkssse}
        if profile.keys.ukssse is not None:
            keys["ukssse"] = profile.keys.ukssse
        tables["keys"] = keys
    if profile.pki is not None:
        tables["pki"] = {
            "algorithm": profile.pki.algorithm,
            "private_key": profile.pki.private_key,
            "card_certificate": profile.pki.card_certificate,
            "issuer_certificate": profile.pki.issuer_certificate,
        }
    # A comment line ends at a line break; any other control character would make it invalid.
    lines = [
        "# " + "".join(" " if unicodedata.category(c) == "Cc" else c for c in line)
        for line in comment.splitlines()
    ]
    for name, values in tables.items():
        lines += ["", f"[{name}]"] + [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    return "\n".join(lines).lstrip("\n") + "\n"
