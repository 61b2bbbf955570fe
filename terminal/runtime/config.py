"""``terminal.toml``: the runtime's configuration (docs/runtime.md, "Configuration").

:func:`load_config` reads the file, :func:`parse_config` checks an already decoded table.
Parsing is strict, as the application list's is: an unknown section or key, a wrong type or
a value out of range is a :class:`ConfigError` naming it, because a misspelt key silently
falling back to its default (``passback_minuts = 0``) is a terminal doing something other
than what its operator wrote. Relative paths are taken relative to the file's directory,
so a configuration travels with the files it names.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from terminal.errors import ConfigError
from terminal.host.operatorfile import load_operator_toml

PROFILES = ("gate", "validator", "counter", "rail", "inspector")
_TERMINAL_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_SERVICE = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")


@dataclass(frozen=True)
class TerminalSection:
    """``[terminal]``: who this terminal is and what it sells."""

    id: str
    profile: str
    service: str


@dataclass(frozen=True)
class ReadersSection:
    """``[readers]``: the PC/SC readers to watch; the PSAM slot is never treated as a
    holder's reader."""

    backend: str = "pcsc"
    names: tuple[str, ...] = ()
    """Empty: every reader (except the PSAM's)."""
    psam: str = ""


@dataclass(frozen=True)
class ScannerSection:
    """``[scanner]``: optional code scanners; both may be set."""

    serial: str = ""
    baudrate: int = 9600
    camera: str = ""


@dataclass(frozen=True)
class SecuritySection:
    """``[security]``: how credentials are proven genuine."""

    keys: str = ""
    """Software secure module key file (TOML), when there is no PSAM."""
    trust_store: str = ""
    """3.0 card PKI trust store (JSON)."""
    ecode_world: str = ""
    """An e-code world directory (demo/tests): trust list, root key and token key."""
    trust_list: str = ""
    root_key: str = ""
    root_algorithm: str = "sm2"
    token_key: str = ""
    """Card token key (hex file) when there are no back office credentials to take it from."""
    accept_unverified: bool = False
    """Accept 2.0 cards that nothing here can verify (no secure module): off by default."""
    skew_seconds: int = 30


@dataclass(frozen=True)
class BackofficeSection:
    """``[backoffice]``: the journal, the documents and (optionally) the link."""

    credentials: str = ""
    """Terminal credentials (TOML); empty: offline, no upload and no download."""
    journal: str = "/var/lib/onecard/journal.db"
    documents: str = "/var/lib/onecard/documents"
    replay_cache: str = "/var/lib/onecard/replay.db"
    events: str = ""
    """Terminal events (staff calls) waiting for the back office; empty: ``<journal
    name>-events.db`` beside the journal."""
    publication_key: str = ""
    """Offline terminals: the back office publication public key (hex file) that verifies
    documents placed in ``documents`` by hand; taken from the credentials otherwise."""
    publication_algorithm: str = "sm2"
    sync_interval: float = 60.0
    """Seconds between document downloads."""
    heartbeat_seconds: float = 60.0
    """Seconds between heartbeats to the back office (docs/fleet.md). The fleet view calls a
    terminal silent after ``--silent-after`` (default 600 s) without one: keep that a few
    intervals above this."""


@dataclass(frozen=True)
class GateSection:
    passback_minutes: float = 10.0


@dataclass(frozen=True)
class ValidatorSection:
    repeat_seconds: float = 60.0


@dataclass(frozen=True)
class TransitSection:
    """``[transit]``: how validators and rail gates take cards (docs/transit.md "Rides")."""

    identify: str = "card"
    """``card`` (the default, as before): the social security side is read and verified
    first (its category and card number); ``purse``: a card is known by its e-purse alone,
    its category from the 0x15 card type - the field setting, 5 APDUs a bus tap with the
    journey record (docs/transit.md "Rides")."""
    card_types: Mapping[int, str] = field(default_factory=dict)
    """0x15 card type (byte 28, hex key) -> category code (``"04" = "4"``: elderly)."""
    journey_record: bool = False
    """Read and write the 0x1A journey record on a bus (transfers, daily limits, the transfer
    information a rail exit reads); off, a bus tap writes the 0x1E trip record only."""
    journey_record_id: int = 0x02
    city_code: str = "0000"
    """The network's city code (4 hex digits) written into the records."""
    operator: str = "0000000000000000"
    """The operator's id (16 hex digits) written into the records."""
    low_balance_fen: int = 500
    """Below this balance after a ride the holder is told to top up; 0: never."""
    block_hotlisted: bool = False
    """Block the e-purse of a hotlisted card (APPLICATION BLOCK with the PSAM's MAC)."""
    block_key_version: int = 0x02
    """The PSAM's maintenance master (INIT SAM FOR DESCRYPT P2): 02 3DES, 03 SM4 (unconfirmed
    convention)."""


@dataclass(frozen=True)
class InspectorSection:
    """``[inspector]``: what a handheld check counts as paid (docs/transit.md "Inspection")."""

    mode: str = "bus"
    minutes: float = 90.0
    line: int = 0
    """The line checked (0: any)."""
    terminals: tuple[str, ...] = ()
    """The vehicle's validators (12-digit terminal numbers); empty: any."""


@dataclass(frozen=True)
class RailSection:
    """``[rail]``: a rail gate's station and side."""

    station: str = ""
    """The station code, 4 hex digits (line, station) as the fare table lists it."""
    role: str = "entry"
    repeat_seconds: float = 10.0


@dataclass(frozen=True)
class CounterSection:
    api_port: int = 8765
    token_file: str = ""
    """The counter API's bearer token (mode 0600, made at start when missing); empty:
    ``counter-api.token`` beside the journal."""
    pinpad: str = "console"
    """``console`` (no echo on the terminal's tty) or ``script`` (``pins``, for demos)."""
    pins: tuple[str, ...] = ()
    require_pin: bool = True
    sscard_socket: str = "/run/onecard/sscard.sock"
    """The Unix socket of the LD/T 33 reader library ``libonecard_sscard.so``
    (docs/his-integration.md); empty: not served. The library finds it through
    ``ONECARD_SSCARD_SOCKET``, default the same path."""
    sscard_users: tuple[str, ...] = ()
    """Local users (names or numeric uids) whose programs may use the library, besides root
    and the user the service runs as: checked on every connection (``SO_PEERCRED``)."""
    sscard_wait_seconds: float = 10.0
    """How long ``iReadCardBas`` waits for the counter transaction of a card just inserted
    (its read, and the holder's PIN when required)."""


@dataclass(frozen=True)
class OutputsSection:
    kind: str = "console"
    serial: str = ""


@dataclass(frozen=True)
class StatusSection:
    port: int = 9100
    """``/health`` and ``/metrics`` on 127.0.0.1; 0 picks a free port, -1 turns it off."""


@dataclass(frozen=True)
class ScreenSection:
    """``[screen]``: the holder screen (docs/screen.md) on 127.0.0.1."""

    port: int = 9180
    """0 picks a free port, -1 turns the screen off."""
    lang: str = "zh"
    large_print: bool = False
    voice: bool = True
    voice_dir: str = ""
    """Pre-rendered prompts (``onecard screen voices``) and clips rendered since; empty:
    ``voice/`` beside the journal."""
    voice_zh: str = "cmn"
    voice_en: str = "en-us"
    voice_speed: int = 150
    voice_cache_mb: int = 50
    voice_cache_clips: int = 200
    """The clips rendered at run time (texts with amounts) kept in ``voice_dir``: at most
    this many megabytes and clips, the least recently used removed first; the fixed
    prompts (``onecard screen voices``) are kept outside these bounds."""
    result_seconds: float = 4.0
    assist_factor: float = 3.0
    reset_seconds: float = 30.0
    assist_idle_seconds: float = 120.0
    show_holder: str = "none"
    """``none``, or ``masked_name`` (counter only): the family name, the rest starred."""
    complaint_phone: str = ""
    complaint_url: str = ""


@dataclass(frozen=True)
class RuntimeConfig:
    """The whole ``terminal.toml``, typed, with defaults filled in."""

    terminal: TerminalSection
    readers: ReadersSection = field(default_factory=ReadersSection)
    scanner: ScannerSection = field(default_factory=ScannerSection)
    security: SecuritySection = field(default_factory=SecuritySection)
    backoffice: BackofficeSection = field(default_factory=BackofficeSection)
    gate: GateSection = field(default_factory=GateSection)
    validator: ValidatorSection = field(default_factory=ValidatorSection)
    transit: TransitSection = field(default_factory=TransitSection)
    rail: RailSection = field(default_factory=RailSection)
    inspector: InspectorSection = field(default_factory=InspectorSection)
    venue: Any = None
    """``[venue]``: :class:`terminal.venue.settings.VenueSettings` of a gate at a library,
    museum or scenic area (docs/venues.md); None: a plain gate."""
    counter: CounterSection = field(default_factory=CounterSection)
    outputs: OutputsSection = field(default_factory=OutputsSection)
    status: StatusSection = field(default_factory=StatusSection)
    screen: ScreenSection = field(default_factory=ScreenSection)
    source: str = "<config>"

    @property
    def profile(self) -> str:
        return self.terminal.profile


# --- checking values ------------------------------------------------------------------------

_PATH_KEYS = {
    "scanner": {"serial"},
    "security": {"keys", "trust_store", "ecode_world", "trust_list", "root_key", "token_key"},
    "backoffice": {
        "credentials",
        "journal",
        "documents",
        "replay_cache",
        "events",
        "publication_key",
    },
    "counter": {"token_file", "sscard_socket"},
    "screen": {"voice_dir"},
    "outputs": {"serial"},
}


class _Section:
    """Reads one table, recording which keys were used so leftovers can be refused."""

    def __init__(self, name: str, table: object, source: str) -> None:
        if not isinstance(table, Mapping):
            raise ConfigError(f"{source}: [{name}] must be a table")
        self.name = name
        self.table = table
        self.source = source
        self.used: set[str] = set()

    def where(self, key: str) -> str:
        return f"{self.source}: [{self.name}] {key}"

    def get(self, key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        self.used.add(key)
        if key not in self.table:
            return default
        value = self.table[key]
        # bool is an int to Python; a flag written as 1, or a port written as true, is a typo.
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise ConfigError(f"{self.where(key)} must be {_type_name(kind)}, not {value!r}")
        if not isinstance(value, kind):
            raise ConfigError(f"{self.where(key)} must be {_type_name(kind)}, not {value!r}")
        return value

    def text(self, key: str, default: str = "") -> str:
        return str(self.get(key, str, default))

    def number(self, key: str, default: float, low: float, high: float) -> float:
        value = float(self.get(key, (int, float), default))
        if not low <= value <= high:
            raise ConfigError(f"{self.where(key)} must be {low:g}..{high:g}, not {value:g}")
        return value

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = int(self.get(key, int, default))
        if not low <= value <= high:
            raise ConfigError(f"{self.where(key)} must be {low}..{high}, not {value}")
        return value

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.text(key, default)
        if value not in choices:
            raise ConfigError(f"{self.where(key)} must be one of {', '.join(choices)}: {value!r}")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.get(key, list, [])
        if not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{self.where(key)} must be a list of strings")
        return tuple(value)

    def finish(self) -> None:
        unknown = set(self.table) - self.used
        if unknown:
            raise ConfigError(
                f"{self.source}: [{self.name}] has unknown keys {', '.join(sorted(unknown))}"
            )


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _resolve(value: str, base: Path | None) -> str:
    if not value or base is None or os.path.isabs(value) or value.startswith("/dev/"):
        return value
    return str(base / value)


def parse_config(
    table: Mapping[str, Any], source: str = "<config>", base: Path | None = None
) -> RuntimeConfig:
    """A :class:`RuntimeConfig` from a decoded TOML table; relative paths are resolved
    against ``base`` (the file's directory). Raises :class:`ConfigError` with the reason."""
    known = {
        "terminal",
        "readers",
        "scanner",
        "security",
        "backoffice",
        "gate",
        "validator",
        "transit",
        "rail",
        "inspector",
        "venue",
        "counter",
        "outputs",
        "status",
        "screen",
    }
    unknown = set(table) - known
    if unknown:
        raise ConfigError(f"{source}: unknown sections {', '.join(sorted(unknown))}")
    if "terminal" not in table:
        raise ConfigError(f"{source}: [terminal] is required (id, profile, service)")

    def section(name: str) -> _Section:
        raw = dict(table.get(name, {})) if isinstance(table.get(name, {}), Mapping) else None
        if raw is None:
            raise ConfigError(f"{source}: [{name}] must be a table")
        for key in _PATH_KEYS.get(name, ()):
            if isinstance(raw.get(key), str):
                raw[key] = _resolve(raw[key], base)
        return _Section(name, raw, source)

    s = section("terminal")
    terminal_id = s.text("id")
    if not _TERMINAL_ID.fullmatch(terminal_id):
        raise ConfigError(f"{s.where('id')} must be 1-32 of A-Z a-z 0-9 _ -, not {terminal_id!r}")
    profile = s.choice("profile", "", PROFILES)
    service = s.text("service")
    if not _SERVICE.fullmatch(service):
        raise ConfigError(f"{s.where('service')} must be a service code, not {service!r}")
    s.finish()
    terminal = TerminalSection(terminal_id, profile, service)

    s = section("readers")
    readers = ReadersSection(s.text("backend", "pcsc"), s.strings("names"), s.text("psam"))
    s.finish()

    s = section("scanner")
    scanner = ScannerSection(
        s.text("serial"), s.integer("baudrate", 9600, 1200, 921600), s.text("camera")
    )
    s.finish()

    s = section("security")
    security = SecuritySection(
        keys=s.text("keys"),
        trust_store=s.text("trust_store"),
        ecode_world=s.text("ecode_world"),
        trust_list=s.text("trust_list"),
        root_key=s.text("root_key"),
        root_algorithm=s.choice("root_algorithm", "sm2", ("sm2", "ecdsa-p256")),
        token_key=s.text("token_key"),
        accept_unverified=bool(s.get("accept_unverified", bool, False)),
        skew_seconds=s.integer("skew_seconds", 30, 0, 300),
    )
    s.finish()
    if security.trust_list and not security.root_key:
        raise ConfigError(f"{source}: [security] trust_list needs root_key to verify it")

    s = section("backoffice")
    backoffice = BackofficeSection(
        credentials=s.text("credentials"),
        journal=s.text("journal", BackofficeSection.journal),
        documents=s.text("documents", BackofficeSection.documents),
        replay_cache=s.text("replay_cache", BackofficeSection.replay_cache),
        events=s.text("events", BackofficeSection.events),
        publication_key=s.text("publication_key"),
        publication_algorithm=s.choice("publication_algorithm", "sm2", ("sm2", "ecdsa-p256")),
        sync_interval=s.number("sync_interval", 60.0, 1.0, 86400.0),
        # Below 5 s a fleet of terminals floods the back office with status; above an hour
        # the fleet view cannot tell a dead terminal from a quiet one.
        heartbeat_seconds=s.number("heartbeat_seconds", 60.0, 5.0, 3600.0),
    )
    s.finish()
    if not backoffice.journal:
        raise ConfigError(f"{source}: [backoffice] journal must name the journal file")
    journal_path = Path(backoffice.journal)
    if not backoffice.events:
        events = str(journal_path.with_name(journal_path.stem + "-events.db"))
        backoffice = dataclasses.replace(backoffice, events=events)

    s = section("gate")
    gate = GateSection(s.number("passback_minutes", 10.0, 0.0, 1440.0))
    s.finish()

    s = section("validator")
    validator = ValidatorSection(
        s.number("repeat_seconds", 60.0, 0.0, 3600.0),
    )
    s.finish()

    s = section("transit")
    card_types: dict[int, str] = {}
    raw_types = s.get("card_types", dict, {})
    for key, value in raw_types.items():
        if not re.fullmatch(r"[0-9A-Fa-f]{2}", str(key)) or value not in ("1", "2", "3", "4"):
            raise ConfigError(
                f"{s.where('card_types')}: keys are 2 hex digits, values category codes 1-4"
            )
        card_types[int(key, 16)] = value
    city_code = s.text("city_code", "0000")
    operator = s.text("operator", "0" * 16)
    if not re.fullmatch(r"[0-9A-Fa-f]{4}", city_code):
        raise ConfigError(f"{s.where('city_code')} must be 4 hex digits")
    if not re.fullmatch(r"[0-9A-Fa-f]{16}", operator):
        raise ConfigError(f"{s.where('operator')} must be 16 hex digits")
    transit = TransitSection(
        identify=s.choice("identify", "card", ("purse", "card")),
        card_types=card_types,
        journey_record=bool(s.get("journey_record", bool, False)),
        journey_record_id=s.integer("journey_record_id", 0x02, 0, 255),
        city_code=city_code.upper(),
        operator=operator.upper(),
        low_balance_fen=s.integer("low_balance_fen", 500, 0, 10**7),
        block_hotlisted=bool(s.get("block_hotlisted", bool, False)),
        block_key_version=s.integer("block_key_version", 0x02, 0, 255),
    )
    s.finish()

    s = section("rail")
    station = s.text("station")
    if station and not re.fullmatch(r"[0-9A-Fa-f]{4}", station):
        raise ConfigError(f"{s.where('station')} must be 4 hex digits (line, station)")
    rail = RailSection(
        station=station.upper(),
        role=s.choice("role", "entry", ("entry", "exit")),
        repeat_seconds=s.number("repeat_seconds", 10.0, 0.0, 3600.0),
    )
    s.finish()
    s = section("inspector")
    terminals = s.strings("terminals")
    for number in terminals:
        if not re.fullmatch(r"[0-9]{12}", number):
            raise ConfigError(f"{s.where('terminals')}: terminal numbers are 12 digits")
    inspector = InspectorSection(
        mode=s.choice("mode", "bus", ("bus", "rail")),
        minutes=s.number("minutes", 90.0, 1.0, 1440.0),
        line=s.integer("line", 0, 0, 0xFFFF),
        terminals=terminals,
    )
    s.finish()
    from terminal.venue.settings import parse_venue_settings

    raw_venue = table.get("venue")
    if raw_venue is not None and not isinstance(raw_venue, Mapping):
        raise ConfigError(f"{source}: [venue] must be a table")
    venue = parse_venue_settings(raw_venue, source)
    if venue is not None and profile != "gate":
        raise ConfigError(f"{source}: [venue] is for the gate profile, not {profile!r}")
    if profile == "rail" and not rail.station:
        raise ConfigError(f"{source}: the rail profile needs [rail] station")

    s = section("counter")
    counter = CounterSection(
        api_port=s.integer("api_port", 8765, 0, 65535),
        token_file=s.text("token_file") or str(journal_path.parent / "counter-api.token"),
        pinpad=s.choice("pinpad", "console", ("console", "script")),
        pins=s.strings("pins"),
        require_pin=bool(s.get("require_pin", bool, True)),
        sscard_socket=s.text("sscard_socket", CounterSection.sscard_socket),
        sscard_users=s.strings("sscard_users"),
        sscard_wait_seconds=s.number("sscard_wait_seconds", 10.0, 0.5, 300.0),
    )
    for user in counter.sscard_users:
        if not re.fullmatch(r"[a-z_][a-z0-9_.-]{0,31}\$?|[0-9]{1,10}", user):
            raise ConfigError(f"{s.where('sscard_users')}: {user!r} is not a user name or uid")
    s.finish()
    if counter.pinpad == "script" and counter.require_pin and not counter.pins:
        raise ConfigError(f"{source}: [counter] pinpad = 'script' needs pins = [...]")

    s = section("outputs")
    outputs = OutputsSection(s.choice("kind", "console", ("console", "serial")), s.text("serial"))
    s.finish()
    if outputs.kind == "serial" and not outputs.serial:
        raise ConfigError(f"{source}: [outputs] kind = 'serial' needs serial = PORT")

    s = section("status")
    status = StatusSection(s.integer("port", 9100, -1, 65535))
    s.finish()

    s = section("screen")
    screen = ScreenSection(
        port=s.integer("port", ScreenSection.port, -1, 65535),
        lang=s.choice("lang", "zh", ("zh", "en")),
        large_print=bool(s.get("large_print", bool, False)),
        voice=bool(s.get("voice", bool, True)),
        voice_dir=s.text("voice_dir") or str(journal_path.parent / "voice"),
        voice_zh=s.text("voice_zh", "cmn"),
        voice_en=s.text("voice_en", "en-us"),
        voice_speed=s.integer("voice_speed", 150, 80, 450),
        voice_cache_mb=s.integer("voice_cache_mb", ScreenSection.voice_cache_mb, 1, 100_000),
        voice_cache_clips=s.integer(
            "voice_cache_clips", ScreenSection.voice_cache_clips, 1, 1_000_000
        ),
        result_seconds=s.number("result_seconds", 4.0, 1.0, 60.0),
        assist_factor=s.number("assist_factor", 3.0, 1.0, 10.0),
        reset_seconds=s.number("reset_seconds", 30.0, 5.0, 3600.0),
        assist_idle_seconds=s.number("assist_idle_seconds", 120.0, 10.0, 3600.0),
        show_holder=s.choice("show_holder", "none", ("none", "masked_name")),
        complaint_phone=s.text("complaint_phone"),
        complaint_url=s.text("complaint_url"),
    )
    s.finish()
    if screen.show_holder != "none" and profile != "counter":
        raise ConfigError(
            f"{s.where('show_holder')}: only a counter may show the holder's masked name"
        )
    if not re.fullmatch(r"[0-9+() -]{0,32}", screen.complaint_phone):
        raise ConfigError(f"{s.where('complaint_phone')} must be a phone number")
    from terminal.screen.complaint import check_complaint_url

    try:
        check_complaint_url(screen.complaint_url)
    except ConfigError as exc:
        raise ConfigError(f"{s.where('complaint_url')}: {exc.reason}") from None
    if screen.voice_zh and not re.fullmatch(r"[A-Za-z0-9_+-]{1,40}", screen.voice_zh):
        raise ConfigError(f"{s.where('voice_zh')} must be an espeak-ng voice name")
    if screen.voice_en and not re.fullmatch(r"[A-Za-z0-9_+-]{1,40}", screen.voice_en):
        raise ConfigError(f"{s.where('voice_en')} must be an espeak-ng voice name")

    return RuntimeConfig(
        terminal=terminal,
        readers=readers,
        scanner=scanner,
        security=security,
        backoffice=backoffice,
        gate=gate,
        validator=validator,
        transit=transit,
        rail=rail,
        inspector=inspector,
        venue=venue,
        counter=counter,
        outputs=outputs,
        status=status,
        screen=screen,
        source=source,
    )


def load_config(path: str | os.PathLike[str]) -> RuntimeConfig:
    """Read and check ``terminal.toml`` at ``path``."""
    file = Path(path)
    table = load_operator_toml(file, "configuration")
    return parse_config(table, str(file), file.resolve().parent)
