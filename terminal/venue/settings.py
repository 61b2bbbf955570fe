"""The ``[venue]`` table of the terminal's configuration: what kind of venue a gate serves
and how (docs/venues.md).

:func:`parse_venue_settings` reads the table strictly - an unknown key, a value of the wrong
type or out of range is a :class:`~terminal.errors.ConfigError` naming ``[venue] key`` - into
a frozen :class:`VenueSettings`; None when the terminal serves no venue (no table, or
``kind = ""``). The ``[venue.ils]`` sub-table (libraries only) goes unchanged to
:meth:`terminal.venue.ils.IlsSettings.from_dict`.

The holder's texts of every venue reason live here too (:data:`VENUE_MESSAGES`, Chinese and
English pairs): ``[venue.messages]`` overrides them, and a key that is not one of them is
refused like any other typo (it would otherwise silently never show).

::

    [venue]
    kind = "museum"               # "library" | "museum" | "scenic" | "" (none)
    id = "museum-1"               # [a-z0-9-]{1,64}: occupancy events, reservations, journal
    role = "entry"                # "entry" (default) | "exit" | "both"
    maximum = 300                 # visitors inside at most; 0 (default): no limit
    grace_minutes = 15            # a reservation holder may come this early
    stale_seconds = 30            # occupancy: no back office figure this long = stale
    occupancy_poll_seconds = 5    # how often the runtime polls the shared occupancy

    [venue.messages]              # optional: reason = [Chinese, English]
    venue_full = ["馆内人数已满，请稍候", "Full - please wait"]
"""

from __future__ import annotations

import re
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from terminal.errors import ConfigError
from terminal.host.clock import Clock
from terminal.venue.ils import IlsSettings
from terminal.venue.occupancy import ROLES, Occupancy

VenueKind = Literal["library", "museum", "scenic"]
Role = Literal["entry", "exit", "both"]
KINDS: tuple[VenueKind, ...] = ("library", "museum", "scenic")
VENUE_ID = re.compile(r"[a-z0-9-]{1,64}")
"""A venue id: lower-case so that it is one spelling in the TOML, the occupancy events and the
back office's documents (a subset of their machine codes)."""
MAX_MAXIMUM = 10_000_000
MAX_MESSAGE = 100
"""Characters of a holder message: it has to fit the gate's display."""
DEFAULT_GRACE_MINUTES = 15.0
DEFAULT_STALE_SECONDS = 30.0
DEFAULT_POLL_SECONDS = 5.0

VENUE_MESSAGES: Mapping[str, tuple[str, str]] = types.MappingProxyType(
    {
        # -- admitted --
        "reservation_ok": ("预约核验通过，请进", "Reservation confirmed - please enter"),
        "pass_ok": ("年卡有效，请进", "Pass valid - please enter"),
        "patron_ok": ("欢迎光临", "Welcome"),
        "patron_warned": ("请进", "Please enter"),
        "not_a_patron": (
            "您尚未办理借书证，可入馆阅览",
            "Not a library patron - you may enter to read",
        ),
        "ils_unreachable": ("请进", "Please enter"),
        "venue_exit": ("再见，欢迎再来", "Goodbye"),
        # -- refused --
        "patron_blocked": ("请到服务台咨询", "Please see the service desk"),
        "not_a_patron_refused": (
            "您尚未办理借书证，请到服务台办理",
            "Not a library patron - please see the service desk",
        ),
        "ils_unreachable_refused": (
            "暂时无法查询读者信息，请到服务台",
            "Library system unavailable - please see the service desk",
        ),
        "no_reservations": (
            "预约信息暂不可用，请到服务台",
            "Reservations unavailable - please see the service desk",
        ),
        "identity_unreadable": (
            "无法读取身份信息，请到服务台",
            "Identity could not be read - please see the service desk",
        ),
        "no_reservation": ("未查到本时段预约", "No reservation for this time slot"),
        "reservation_used": ("本时段预约已使用", "This reservation has already been used"),
        "venue_full": ("馆内人数已满，请稍候", "Full - please wait"),
        "no_passes": (
            "年卡信息暂不可用，请到售票处",
            "Passes unavailable - please see the ticket office",
        ),
        "no_pass": ("未查到此卡的年卡", "No pass for this card"),
        "pass_expired": ("年卡已过期", "Pass expired"),
        "pass_not_yet_valid": ("年卡尚未生效", "Pass not valid yet"),
        "pass_used_today": ("今日入园次数已用完", "Pass already used today"),
    }
)
"""The holder's texts (Chinese, English) by message key. The key is the verdict's reason,
but for the library: ``patron_warned`` / ``patron_blocked`` for every flag (the Chinese text
is then the patron policy's, ``[venue.ils.flags]``), and the ``_refused`` variants of
``not_a_patron`` and ``ils_unreachable`` (one reason, admitted or refused by
configuration)."""

_Where = Callable[[str], str]
"""Names a key of the table in an error: ``"terminal.toml: [venue] maximum"``."""

_KEYS = frozenset(
    {
        "kind",
        "id",
        "role",
        "maximum",
        "grace_minutes",
        "stale_seconds",
        "occupancy_poll_seconds",
        "ils",
        "messages",
    }
)


@dataclass(frozen=True)
class VenueSettings:
    """A gate's venue, as ``[venue]`` says (module doc). Build with
    :func:`parse_venue_settings`."""

    kind: VenueKind
    id: str
    """The venue id: the ``venue`` of occupancy events, of the reservations document, and
    of the journal entries' ``extra``."""
    role: Role = "entry"
    """``entry``: the venue's rules apply and entries are counted; ``exit``: everyone with a
    genuine card goes out, exits are counted; ``both``: rules and counting as ``entry``."""
    maximum: int = 0
    """Visitors inside at most (the back office's ``set-max`` overrides it); 0: no limit."""
    grace_minutes: float = DEFAULT_GRACE_MINUTES
    stale_seconds: float = DEFAULT_STALE_SECONDS
    occupancy_poll_seconds: float = DEFAULT_POLL_SECONDS
    ils: IlsSettings | None = None
    """The ``[venue.ils]`` table read (libraries, where it is required); None otherwise."""
    messages: Mapping[str, tuple[str, str]] = field(default_factory=lambda: VENUE_MESSAGES)
    """Every message key of :data:`VENUE_MESSAGES`, with ``[venue.messages]`` applied."""

    @property
    def occupancy_maximum(self) -> int | None:
        """The maximum as :class:`~terminal.venue.occupancy.Occupancy` takes it (None: none)."""
        return self.maximum or None

    def new_occupancy(self, clock: Clock, *, gate: str) -> Occupancy:
        """This venue's :class:`~terminal.venue.occupancy.Occupancy` as seen by the gate
        ``gate`` (its name in the passage events: the terminal id)."""
        return Occupancy(
            self.id,
            self.occupancy_maximum,
            self.role,
            clock,
            gate=gate,
            stale_seconds=self.stale_seconds,
        )


def parse_venue_settings(
    table: Mapping[str, object] | None, source: str = "configuration"
) -> VenueSettings | None:
    """The :class:`VenueSettings` of a ``[venue]`` table (``source`` names the file in
    errors), or None when there is no table or ``kind = ""`` (the gate serves no venue; the
    other keys are still checked for typos). Raises :class:`ConfigError` naming
    ``[venue] key``."""
    if table is None:
        return None
    if not isinstance(table, Mapping):
        raise ConfigError(f"{source}: [venue] must be a table")

    def where(key: str) -> str:
        return f"{source}: [venue] {key}"

    unknown = set(table) - _KEYS
    if unknown:
        names = ", ".join(sorted(str(k) for k in unknown))
        raise ConfigError(f"{source}: [venue] has unknown keys {names}")
    if not table:
        return None
    if "kind" not in table:
        raise ConfigError(f'{where("kind")} is required: {", ".join(KINDS)} or ""')
    kind = table["kind"]
    if kind == "":
        return None
    if kind not in KINDS:
        raise ConfigError(f'{where("kind")} must be one of {", ".join(KINDS)} or "": {kind!r}')

    venue_id = table.get("id")
    if venue_id is None:
        raise ConfigError(f"{where('id')} is required")
    if not isinstance(venue_id, str) or not VENUE_ID.fullmatch(venue_id):
        raise ConfigError(f"{where('id')} must be 1-64 of a-z 0-9 -, not {venue_id!r}")

    role = table.get("role", "entry")
    if role not in ROLES:
        raise ConfigError(f"{where('role')} must be one of {', '.join(ROLES)}: {role!r}")

    ils: IlsSettings | None = None
    if kind == "library":
        raw = table.get("ils")
        if raw is None:
            raise ConfigError(f"{source}: a library venue needs [venue.ils] (the ILS's SIP2)")
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where('ils')} must be a table ([venue.ils])")
        try:
            ils = IlsSettings.from_dict(raw)
        except ConfigError as exc:
            raise ConfigError(f"{source}: [venue.ils] {exc.reason}") from None
    elif "ils" in table:
        # An ILS on a museum gate would never be asked: say so rather than ignore it.
        raise ConfigError(f'{where("ils")}: [venue.ils] is for kind = "library" only')

    return VenueSettings(
        kind=kind,  # type: ignore[arg-type]  # checked against KINDS above
        id=venue_id,
        role=role,  # type: ignore[arg-type]  # checked against ROLES above
        maximum=_integer(table, "maximum", 0, 0, MAX_MAXIMUM, where),
        grace_minutes=_number(table, "grace_minutes", DEFAULT_GRACE_MINUTES, 0.0, 1440.0, where),
        stale_seconds=_number(table, "stale_seconds", DEFAULT_STALE_SECONDS, 0.0, 3600.0, where),
        occupancy_poll_seconds=_number(
            table, "occupancy_poll_seconds", DEFAULT_POLL_SECONDS, 0.0, 3600.0, where
        ),
        ils=ils,
        messages=_messages(table.get("messages"), where),
    )


def _integer(
    table: Mapping[str, object], key: str, default: int, low: int, high: int, where: _Where
) -> int:
    value = table.get(key, default)
    # bool is an int to Python: "maximum = true" is a typo, not 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where(key)} must be an integer, not {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"{where(key)} must be {low}..{high}, not {value}")
    return value


def _number(
    table: Mapping[str, object],
    key: str,
    default: float,
    low: float,
    high: float,
    where: _Where,
) -> float:
    """A number in ``[low, high]``; the poll and stale periods must be above 0 (a 0 s poll
    would spin), the grace may be 0."""
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where(key)} must be a number, not {value!r}")
    number = float(value)
    positive = key != "grace_minutes"
    if not low <= number <= high or (positive and number <= low):
        bound = f"above {low:g} and at most {high:g}" if positive else f"{low:g}..{high:g}"
        raise ConfigError(f"{where(key)} must be {bound}, not {value!r}")
    return number


def _messages(value: object, where: _Where) -> Mapping[str, tuple[str, str]]:
    if value is None:
        return VENUE_MESSAGES
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where('messages')} must be a table ([venue.messages])")
    merged = dict(VENUE_MESSAGES)
    for key, pair in value.items():
        if key not in VENUE_MESSAGES:
            raise ConfigError(
                f"{where('messages')}: unknown message {str(key)[:40]!r}; "
                f"messages are {', '.join(VENUE_MESSAGES)}"
            )
        if (
            not isinstance(pair, list | tuple)
            or len(pair) != 2
            or not all(isinstance(text, str) and 0 < len(text) <= MAX_MESSAGE for text in pair)
        ):
            raise ConfigError(
                f"{where('messages')} {key} must be [Chinese, English]: two texts of "
                f"1-{MAX_MESSAGE} characters"
            )
        merged[key] = (pair[0], pair[1])
    return types.MappingProxyType(merged)
