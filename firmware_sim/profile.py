"""Card profiles: the TOML file that says which card the simulator is.

A profile fixes everything that differs between real social security cards: the generation
and its quirks (protocol, Le strictness, multi-record reads, algorithm), the ATR historical
bytes, the issuer data of EF05 and the holder data of EF06. Three samples ship in
``firmware_sim/profiles/`` (:func:`sample_names`, :func:`sample_profile_path`).

Schema (every key is required unless a default is given)::

    [card]
    spec_version = "2.00"      # EF05 tag 03: "1.0x", "2.0x" or "3.00"; decides the generation
    protocol = "T=0"           # contact protocol: "T=0" or "T=1"
    le_mode = "exact"          # "exact" (6Cxx unless Le = length) or "lenient"
    multi_record = true        # READ RECORD 'P1 to last' (P2 mode 5); false answers 6A86
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

    [issuer]                   # EF05
    card_id = "500103D15600000510000001FFFFFFFF"
    #   32 hex: region (6 digits) + D156000005 + serial (8 hex) + authentication code (8 hex)
    category = "3"             # 1 pre-school, 2 student, 3 adult, 4 elderly
    institution = "915600000250010050010001"   # 24 hex digits
    issue_date = 2021-03-01    # TOML dates
    expiry_date = 2031-03-01
    card_number = "A01000013"  # 8-character body + check character (verified)

    [holder]                   # EF06
    ssn = "500103198506150014" # 18-character citizen ID, GB 11643 check digit verified
    name = "张测试"            # UTF-8 here, GBK on the card; over 30 GBK bytes continues in
                               # tag 4E (2.0 and 3.0 cards, 20 bytes more)
    sex = "1"                  # 1 male, 2 female, 9 unspecified
    ethnicity = "01"           # GB 3304 code, 2 digits
    birthplace = "500103"      # GB/T 2260 code, 6 digits
    birth_date = 1985-06-15

Optional tables, written by the issuing tools (``onecard sim issue``) for personalised
cards - they hold card secrets, so such files are made at test or demo time, never committed::

    [keys]                     # the card's own (diversified) SSSE keys, 32 hex each
    irk = "..."                # internal authentication key
    rkssse = "..."             # read key: EXTERNAL AUTHENTICATE unlocks EF06 on 3.0 cards
    ukssse = "..."             # update key (optional)

    [pki]                      # 3.0 cards: the PKI application (docs/pki.md)
    algorithm = "sm2"          # or "ecdsa-p256"
    private_key = "..."        # 32 bytes hex
    card_certificate = "..."   # hex
    issuer_certificate = "..." # hex

``[card] blocked = true`` makes the SSSE answer 9303 (application blocked).

The ATR historical bytes are T1-T2 chip vendor, T3-T5 vendor/OS, T6-T7 card manufacturer,
T8-T9 the first four digits of the region (BCD, from ``card_id``) and TA-TD the card serial.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

from firmware_sim.cardos import PROTOCOLS, LeMode
from terminal.errors import ConfigError, FieldError
from terminal.ssc import cardnumber
from terminal.ssc.layout import BY_TAG, Generation

PROFILES_DIR = Path(__file__).with_name("profiles")
DEFAULT_SAMPLE = "chongqing-2.0"

SSC_RID = "D156000005"  # registered application provider id inside the card id
ALGORITHMS = {1: "DES/3DES", 2: "SSF33", 3: "SM4"}
CATEGORIES = {"1": "pre-school", "2": "student", "3": "adult", "4": "elderly"}
SEXES = {"1": "male", "2": "female", "9": "unspecified"}

_NAME_TAG, _NAME_EXT_TAG = 0x09, 0x4E
_CITIZEN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


@dataclass(frozen=True)
class CardSettings:
    """``[card]``: generation, transport quirks and ATR pieces."""

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

    @property
    def generation(self) -> Generation:
        generation = Generation.from_spec_version(self.spec_version)
        assert generation is not None, "validated by load_profile"
        return generation


@dataclass(frozen=True)
class IssuerData:
    """``[issuer]``: the items of EF05 (field names are those of terminal.ssc.layout)."""

    card_id: str
    category: str
    institution: str
    issue_date: dt.date
    expiry_date: dt.date
    card_number: str

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
class CardProfile:
    """One simulated card, as loaded and validated from a profile file."""

    name: str
    """The profile's name: its file name without ``.toml``."""
    card: CardSettings
    issuer: IssuerData
    holder: HolderData
    keys: CardKeys | None = None
    pki: PkiPersonalisation | None = None

    @property
    def generation(self) -> Generation:
        return self.card.generation


# --- validation helpers --------------------------------------------------------------------


def citizen_id_check_digit(body: str) -> str:
    """GB 11643 (ISO 7064 MOD 11-2) check character for the first 17 digits of a citizen ID."""
    if len(body) != 17 or not body.isdigit():
        raise FieldError(f"citizen ID body must be 17 digits, got {body!r}")
    total = sum(int(d) * w for d, w in zip(body, _CITIZEN_ID_WEIGHTS, strict=True))
    return "10X98765432"[total % 11]


def split_name(name: str, generation: Generation) -> tuple[bytes, bytes]:
    """The GBK bytes of tag 09 (name) and tag 4E (name extension) for ``name``.

    A name longer than tag 09's 30 bytes continues in tag 4E (20 bytes) on 2.0 and 3.0
    cards; the split falls between characters so neither part holds half a GBK character.
    Raises :class:`ConfigError` when the name is not GBK or does not fit.
    """
    room, ext_room = BY_TAG[_NAME_TAG].length, BY_TAG[_NAME_EXT_TAG].length
    try:
        encoded = name.encode("gbk")
    except UnicodeEncodeError as exc:
        raise ConfigError(f"name {name!r}: {name[exc.start]!r} has no GBK encoding") from exc
    if len(encoded) <= room:
        return encoded, b""
    if generation is Generation.V1:
        raise ConfigError(
            f"name {name!r} takes {len(encoded)} GBK bytes; a 1.0 card holds {room} (no tag 4E)"
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

    def choice(self, key: str, kind: type, choices: dict[Any, str]) -> Any:
        value = self.get(key, kind)
        if value not in choices:
            listed = ", ".join(f"{c!r} ({what})" for c, what in choices.items())
            raise self.error(key, f"{value!r} is not one of {listed}")
        return value

    def date(self, key: str) -> dt.date:
        value = self.get(key, object)
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


def _card(t: _Table, card_id: str) -> CardSettings:
    spec_version = t.text("spec_version", r"[123]\.0\d", 'a version such as "2.00"')
    protocol = t.choice("protocol", str, {p: "contact protocol" for p in PROTOCOLS})
    le_mode = LeMode(t.choice("le_mode", str, {m.value: m.name.lower() for m in LeMode}))
    multi_record: bool = t.get("multi_record", bool)
    algorithm = t.choice("algorithm", int, ALGORITHMS)
    piece_keys = ("chip_vendor", "os_vendor", "manufacturer")
    if "historical" in t.table:
        given = [k for k in piece_keys if k in t.table]
        t.check("historical", not given, f"give either historical or {', '.join(given)}")
        historical = t.hex_bytes("historical", 13)
    else:
        historical = b"".join(
            (
                t.hex_bytes("chip_vendor", 2, "0081"),
                t.hex_bytes("os_vendor", 3, "4A4446"),
                t.hex_bytes("manufacturer", 2, "8660"),
                bytes.fromhex(card_id[:4]),  # T8-T9: first four region digits, BCD
                bytes.fromhex(card_id[16:24]),  # TA-TD: the card serial
            )
        )
    uid_hex = t.text(
        "uid", r"[0-9A-Fa-f]{8}|[0-9A-Fa-f]{14}", "4 or 7 bytes of hex", card_id[16:24]
    )
    pin = t.text("pin", r"\d{4,12}", "4 to 12 digits", "123456")
    pin_tries: int = t.get("pin_tries", int, 3)
    blocked = bool(t.table.get("blocked", False))
    t.used.add("blocked")
    t.check("pin_tries", 1 <= pin_tries <= 15, "must be 1 to 15 (SW2 low nibble of 63Cx)")
    return CardSettings(
        spec_version=spec_version,
        protocol=protocol,
        le_mode=le_mode,
        multi_record=multi_record,
        algorithm=algorithm,
        historical=historical,
        uid=bytes.fromhex(uid_hex),
        pin=pin,
        pin_tries=pin_tries,
        blocked=blocked,
    )


def _issuer(t: _Table) -> IssuerData:
    card_id = t.text(
        "card_id",
        rf"\d{{6}}{SSC_RID}[0-9A-Fa-f]{{16}}",
        f"region (6 digits) + {SSC_RID} + serial (8 hex) + authentication code (8 hex)",
    ).upper()
    category = t.choice("category", str, CATEGORIES)
    institution = t.text("institution", r"[0-9A-Fa-f]{24}", "24 hex digits").upper()
    issue_date, expiry_date = t.date("issue_date"), t.date("expiry_date")
    t.check("expiry_date", expiry_date > issue_date, f"{expiry_date} is not after {issue_date}")
    card_number = t.text("card_number", r"[A-Z]\d{7}[0-9X]", "a letter, 7 digits and a check")
    expected = cardnumber.check_character(card_number[:8])
    t.check(
        "card_number",
        card_number[8] == expected,
        f"{card_number!r} has check character {card_number[8]!r}, the body gives {expected!r}",
    )
    return IssuerData(card_id, category, institution, issue_date, expiry_date, card_number)


def _holder(t: _Table, generation: Generation) -> HolderData:
    ssn = t.text("ssn", r"\d{17}[0-9X]", "17 digits and a check character (digit or X)")
    expected = citizen_id_check_digit(ssn[:17])
    t.check(
        "ssn", ssn[17] == expected, f"{ssn!r} has check digit {ssn[17]!r}, should be {expected!r}"
    )
    name: str = t.get("name", str)
    t.check("name", bool(name.strip()), "empty")
    try:
        split_name(name, generation)
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


def parse_profile(document: str, source: str = "<profile>") -> CardProfile:
    """Validate the TOML text of a profile; ``source`` names it in error messages."""
    try:
        data = tomllib.loads(document)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"card", "issuer", "holder", "keys", "pki"})
    if unknown:
        raise ConfigError(f"{source}: unknown table(s) {', '.join(unknown)}")
    sections = ["card", "issuer", "holder"] + [s for s in ("keys", "pki") if s in data]
    tables = {s: _Table(source, s, data.get(s)) for s in sections}
    issuer = _issuer(tables["issuer"])
    card = _card(tables["card"], issuer.card_id)
    holder = _holder(tables["holder"], card.generation)
    keys = _keys(tables["keys"]) if "keys" in tables else None
    pki = _pki(tables["pki"]) if "pki" in tables else None
    for table in tables.values():
        table.finish()
    return CardProfile(Path(source).stem, card, issuer, holder, keys, pki)


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


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | dt.date):
        return str(value)
    if isinstance(value, bytes):
        return f'"{value.hex().upper()}"'
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def format_profile(profile: CardProfile, comment: str = "") -> str:
    """The TOML text of ``profile``; :func:`parse_profile` reads it back to an equal profile."""
    card, issuer, holder = profile.card, profile.issuer, profile.holder
    tables: dict[str, dict[str, object]] = {
        "card": {
            "spec_version": card.spec_version,
            "protocol": card.protocol,
            "le_mode": card.le_mode.value,
            "multi_record": card.multi_record,
            "algorithm": card.algorithm,
            "historical": card.historical,
            "uid": card.uid,
            "pin": card.pin,
            "pin_tries": card.pin_tries,
            "blocked": card.blocked,
        },
        "issuer": {
            "card_id": issuer.card_id,
            "category": issuer.category,
            "institution": issuer.institution,
            "issue_date": issuer.issue_date,
            "expiry_date": issuer.expiry_date,
            "card_number": issuer.card_number,
        },
        "holder": {
            "ssn": holder.ssn,
            "name": holder.name,
            "sex": holder.sex,
            "ethnicity": holder.ethnicity,
            "birthplace": holder.birthplace,
            "birth_date": holder.birth_date,
        },
    }
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
    lines = [f"# {line}" for line in comment.splitlines()]
    for name, values in tables.items():
        lines += ["", f"[{name}]"] + [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    return "\n".join(lines).lstrip("\n") + "\n"
