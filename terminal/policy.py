"""The acceptance policy: which services accept the card, for whom, at what fare
(articles 14, 17-18 and 21; the format is docs/policy.md).

The application list (应用目录) is managed centrally and pushed to terminals as a signed
``applist`` document; :func:`parse_application_list` turns its body into typed values,
strictly. :func:`decide` is the one pure function that says yes or no to a credential at a
service, always in the same order, so the first rule that fails names the reason the
journal records.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol, TypeVar

from terminal.credential import CardKind, Credential, CredentialKind
from terminal.wire.document import DocumentError

APPLIST_KIND = "applist"
CATEGORIES = ("1", "2", "3", "4")  # pre-school, student, adult, elderly (EF05 tag 02)
_CATEGORY_SET = frozenset(CATEGORIES)
_CODE = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
# ASCII digits only: \d also matches full-width and other Unicode digits.
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_REGION = re.compile(r"[0-9]{6}")
MAX_NAME_LENGTH = 100

_LIST_KEYS = frozenset({"kind", "version", "services"})
_LIST_KEYS_SIGNED = _LIST_KEYS | {"signature"}
_SERVICE_REQUIRED = frozenset({"code", "name", "scope", "valid_from"})
_SERVICE_OPTIONAL = frozenset(
    {
        "fare",
        "category_fares",
        "categories",
        "valid_to",
        "credentials",
        "cards",
        "transfers",
        "rides_per_day",
    }
)
DEFAULT_CARDS = frozenset({CardKind.SSC})
"""Card kinds of a service whose entry has no ``cards``: the social security card only, so
every list written before T-Union cards were taken means what it meant."""


class ApplicationListError(DocumentError):
    """An application list whose body breaks docs/policy.md: the whole list is refused
    (the previous one stays in force), naming the first bad entry."""

    code = "bad_applist"


class Scope(enum.Enum):
    """Which issuing regions a service accepts (articles 17-18)."""

    CHONGQING = "chongqing"
    """Cards issued in Chongqing only: regions 50xxxx."""
    SICHUAN_CHONGQING = "sichuan-chongqing"
    """川渝 mutual recognition: Chongqing (50xxxx) and Sichuan (51xxxx) cards."""
    NATIONAL = "national"
    """Cards of every region."""

    def accepts(self, region: str) -> bool:
        """True when a card issued in ``region`` (6 digits, GB/T 2260) is accepted."""
        if not isinstance(region, str) or not _REGION.fullmatch(region):
            return False
        if self is Scope.CHONGQING:
            return region.startswith("50")
        if self is Scope.SICHUAN_CHONGQING:
            return region.startswith(("50", "51"))
        return True


_SCOPE_TEXT = {
    Scope.CHONGQING: "Chongqing cards only",
    Scope.SICHUAN_CHONGQING: "Sichuan and Chongqing cards only",
    Scope.NATIONAL: "cards of every region",
}


TRANSFER_MODES = frozenset({"bus", "rail"})


@dataclass(frozen=True)
class TransferRule:
    """A transfer discount: a ride of this service within ``within_minutes`` of a paid ride
    by one of ``after`` (``bus``, ``rail``) costs ``discount_fen`` less (never below 0).
    The card's journey record holds the last paid ride, so the rule works offline and
    across operators."""

    after: frozenset[str]
    within_minutes: float
    discount_fen: int

    def discount(self, last_mode: str, minutes_since: float) -> int:
        """The discount for a ride ``minutes_since`` after a paid ride by ``last_mode``."""
        if last_mode in self.after and 0 <= minutes_since <= self.within_minutes:
            return self.discount_fen
        return 0


@dataclass(frozen=True)
class ServiceItem:
    """One entry of the application list: a service that accepts the card."""

    code: str
    """Machine code, also the journal's ``service`` (e.g. ``museum-entry``)."""
    name: str
    scope: Scope
    valid_from: dt.date
    valid_to: dt.date | None = None
    """Last day in force (inclusive); None: open-ended."""
    fare: int = 0
    """Fare in fen for categories without their own fare; 0: free."""
    category_fares: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    categories: frozenset[str] = _CATEGORY_SET
    """Accepted card categories; all four by default."""
    credentials: frozenset[CredentialKind] = frozenset(CredentialKind)
    cards: frozenset[CardKind] = DEFAULT_CARDS
    """Card kinds taken: ``ssc`` (the social security application was read; e-codes too),
    ``tunion`` (a card known only by its T-Union e-purse). Default: ``ssc`` only."""
    transfers: tuple[TransferRule, ...] = ()
    """Transfer discounts on this service's fare (docs/policy.md "Transfers"): the first
    rule that matches the card's last paid ride applies."""
    rides_per_day: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    """Paid rides a card of a category may take in a day (counted on the card's journey
    record, so across operators); a category not listed has no limit."""

    def in_force(self, today: dt.date) -> bool:
        return self.valid_from <= today and (self.valid_to is None or today <= self.valid_to)

    def fare_for(self, category: str | None) -> int:
        """The fare for a card of ``category`` (the category fare, else the service fare)."""
        if category is None:
            return self.fare
        return self.category_fares.get(category, self.fare)


@dataclass(frozen=True)
class ApplicationList:
    """The application list in force: services by code, at a published version."""

    version: int
    services: Mapping[str, ServiceItem]

    def get(self, code: str) -> ServiceItem | None:
        return self.services.get(code)

    def __len__(self) -> int:
        return len(self.services)

    def __contains__(self, code: object) -> bool:
        return code in self.services


@dataclass(frozen=True)
class AuthenticityOutcome:
    """What the authenticity check said, mapped by the caller from a card verdict (internal
    authentication, certificate chain) or an e-code verdict (signature, trust list,
    freshness). ``verdict`` is the checker's machine code, ``reason`` its human text."""

    ok: bool
    verdict: str
    reason: str = ""


class Reason(enum.Enum):
    """The machine reasons of a :class:`Decision` (the journal's ``reason``)."""

    OK = "ok"
    NOT_AUTHENTIC = "not_authentic"
    HOTLISTED = "hotlisted"
    SERVICE_NOT_OFFERED = "service_not_offered"
    SERVICE_NOT_IN_FORCE = "service_not_in_force"
    CREDENTIAL_NOT_ACCEPTED = "credential_not_accepted"
    CARD_KIND_NOT_ACCEPTED = "card_kind_not_accepted"
    CARD_EXPIRED = "card_expired"
    REGION_NOT_ACCEPTED = "region_not_accepted"
    CATEGORY_NOT_ACCEPTED = "category_not_accepted"


@dataclass(frozen=True)
class Decision:
    """Accept or refuse, why (machine code), a human ``detail`` with no personal data, and
    the fare in fen when accepted (0: free; None when refused)."""

    accepted: bool
    reason: str
    detail: str
    fare: int | None = None


class HotListLike(Protocol):
    """A hotlist :func:`decide` can ask: :class:`terminal.hotlist.HotList` or a fake."""

    def contains(self, token: bytes) -> bool: ...


def _refuse(reason: Reason, detail: str) -> Decision:
    return Decision(accepted=False, reason=reason.value, detail=detail, fare=None)


def decide(
    credential: Credential,
    authentic: AuthenticityOutcome,
    applist: ApplicationList,
    hotlist: HotListLike,
    service_code: str,
    today: dt.date,
    offered: frozenset[str] | None = None,
) -> Decision:
    """Decide whether ``credential`` is accepted at service ``service_code`` today.

    Rules, in order (the first that fails is the reason):

    1. the service is on the application list, and offered here (``offered`` is the
       terminal's own services; None: every listed service) -> ``service_not_offered``
    2. the service is in force ``today`` -> ``service_not_in_force``
    3. the service accepts this credential kind (card / code) -> ``credential_not_accepted``
    4. the service takes this card kind (``ssc`` / ``tunion``) -> ``card_kind_not_accepted``
    5. the credential is authentic -> ``not_authentic``
    6. no token of the card is hotlisted (article 21) -> ``hotlisted``
    7. the card has not expired (expiry before ``today``) -> ``card_expired``
    8. the service's scope accepts the card's region (articles 17-18) -> ``region_not_accepted``
    9. the service accepts the card's category -> ``category_not_accepted``

    then ``ok`` with the fare for the card's category. Pure: no I/O, no clock.
    """
    service = applist.get(service_code)
    if service is None or (offered is not None and service_code not in offered):
        return _refuse(Reason.SERVICE_NOT_OFFERED, "this service is not offered here")
    if not service.in_force(today):
        return _refuse(Reason.SERVICE_NOT_IN_FORCE, f"{service.name} is not in force today")
    if credential.kind not in service.credentials:
        form = "the physical card" if credential.kind is CredentialKind.CARD else "the e-card code"
        return _refuse(Reason.CREDENTIAL_NOT_ACCEPTED, f"{service.name} does not accept {form}")
    if credential.card_kind not in service.cards:
        card = "transit cards" if credential.card_kind is CardKind.TUNION else "this card"
        return _refuse(Reason.CARD_KIND_NOT_ACCEPTED, f"{service.name} does not accept {card}")
    if not authentic.ok:
        # The verdict is a machine code; the checker's free text stays out of the detail
        # because the decision is shown and journalled and must carry no holder data.
        return _refuse(Reason.NOT_AUTHENTIC, f"credential is not authentic ({authentic.verdict})")
    # Every identity of the card: an SSC with the transport function is reported either by
    # its card number or by its e-purse.
    if any(hotlist.contains(token) for token in credential.tokens):
        return _refuse(Reason.HOTLISTED, "card is reported and may not be used")
    if credential.expiry is not None and credential.expiry < today:
        return _refuse(Reason.CARD_EXPIRED, "card has expired")
    if not service.scope.accepts(credential.region):
        return _refuse(
            Reason.REGION_NOT_ACCEPTED, f"{service.name} accepts {_SCOPE_TEXT[service.scope]}"
        )
    if (credential.category is None and service.categories != _CATEGORY_SET) or (
        credential.category is not None and credential.category not in service.categories
    ):
        return _refuse(
            Reason.CATEGORY_NOT_ACCEPTED, f"{service.name} does not accept this card category"
        )
    fare = service.fare_for(credential.category)
    detail = f"{service.name}: free entry" if fare == 0 else f"{service.name}: fare {fare} fen"
    return Decision(accepted=True, reason=Reason.OK.value, detail=detail, fare=fare)


# --- parsing the application list -----------------------------------------------------------


def _date(value: object, where: str) -> dt.date:
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise ApplicationListError(f"{where} must be a date YYYY-MM-DD, not {value!r}")
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ApplicationListError(f"{where} is not a calendar date: {value!r}") from None


def _fen(value: object, where: str) -> int:
    if type(value) is not int or value < 0:
        raise ApplicationListError(f"{where} must be a non-negative integer (fen), not {value!r}")
    return value


def _string_list(value: object, where: str) -> list[str]:
    if not isinstance(value, list) or not value:
        raise ApplicationListError(f"{where} must be a non-empty list")
    if not all(isinstance(v, str) for v in value):
        raise ApplicationListError(f"{where} must hold strings")
    if len(set(value)) != len(value):
        raise ApplicationListError(f"{where} repeats an entry")
    return value


_Kind = TypeVar("_Kind", CredentialKind, CardKind)


def _kinds(
    entry: Mapping[str, Any],
    key: str,
    kind: type[_Kind],
    default: frozenset[_Kind],
    where: str,
) -> frozenset[_Kind]:
    """The set of ``kind`` values listed under ``key``, or ``default`` when not listed."""
    if key not in entry:
        return default
    listed = _string_list(entry[key], f"{where}: {key}")
    try:
        return frozenset(kind(value) for value in listed)
    except ValueError:
        names = ", ".join(k.value for k in kind)
        raise ApplicationListError(
            f"{where}: {key} must be among {names}, not {listed!r}"
        ) from None


def parse_service(entry: object, index: int = 0) -> ServiceItem:
    """One application list entry (docs/policy.md), strictly: unknown keys are refused,
    because a field this terminal does not understand may be a restriction it would
    otherwise silently ignore."""
    where = f"services[{index}]"
    if not isinstance(entry, dict):
        raise ApplicationListError(f"{where} must be an object")
    missing = _SERVICE_REQUIRED - entry.keys()
    if missing:
        raise ApplicationListError(f"{where} lacks {', '.join(sorted(missing))}")
    unknown = entry.keys() - _SERVICE_REQUIRED - _SERVICE_OPTIONAL
    if unknown:
        raise ApplicationListError(f"{where} has unknown keys {', '.join(sorted(unknown))}")
    code = entry["code"]
    if not isinstance(code, str) or not _CODE.fullmatch(code):
        raise ApplicationListError(f"{where}.code must match [a-z0-9][a-z0-9-]{{0,63}}")
    where = f"service {code!r}"
    name = entry["name"]
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_LENGTH:
        raise ApplicationListError(f"{where}: name must be 1-{MAX_NAME_LENGTH} characters")
    try:
        scope = Scope(entry["scope"])
    except (ValueError, TypeError):
        raise ApplicationListError(
            f"{where}: scope must be one of {', '.join(s.value for s in Scope)}"
        ) from None
    valid_from = _date(entry["valid_from"], f"{where}: valid_from")
    valid_to = None
    if entry.get("valid_to") is not None:
        valid_to = _date(entry["valid_to"], f"{where}: valid_to")
        if valid_to < valid_from:
            raise ApplicationListError(f"{where}: valid_to is before valid_from")
    fare = _fen(entry.get("fare", 0), f"{where}: fare")
    raw_fares = entry.get("category_fares", {})
    if not isinstance(raw_fares, dict):
        raise ApplicationListError(f"{where}: category_fares must be an object")
    fares: dict[str, int] = {}
    for category, value in raw_fares.items():
        if category not in _CATEGORY_SET:
            raise ApplicationListError(f"{where}: category_fares has unknown category {category!r}")
        fares[category] = _fen(value, f"{where}: category_fares[{category!r}]")
    categories = _CATEGORY_SET
    if "categories" in entry:
        listed = _string_list(entry["categories"], f"{where}: categories")
        bad = [c for c in listed if c not in _CATEGORY_SET]
        if bad:
            raise ApplicationListError(f"{where}: unknown categories {bad!r}")
        categories = frozenset(listed)
    credentials = _kinds(entry, "credentials", CredentialKind, frozenset(CredentialKind), where)
    cards = _kinds(entry, "cards", CardKind, DEFAULT_CARDS, where)
    transfers = _transfers(entry.get("transfers", []), where)
    raw_limits = entry.get("rides_per_day", {})
    if not isinstance(raw_limits, dict):
        raise ApplicationListError(f"{where}: rides_per_day must be an object")
    limits: dict[str, int] = {}
    for category, value in raw_limits.items():
        if category not in _CATEGORY_SET:
            raise ApplicationListError(f"{where}: rides_per_day has unknown category {category!r}")
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1000:
            raise ApplicationListError(f"{where}: rides_per_day[{category!r}] must be 0-1000")
        limits[category] = value
    return ServiceItem(
        code=code,
        name=name,
        scope=scope,
        valid_from=valid_from,
        valid_to=valid_to,
        fare=fare,
        category_fares=MappingProxyType(fares),
        categories=categories,
        credentials=credentials,
        cards=cards,
        transfers=transfers,
        rides_per_day=MappingProxyType(limits),
    )


def _transfers(value: object, where: str) -> tuple[TransferRule, ...]:
    """``[{"after": ["bus", "rail"], "within_minutes": 90, "discount_fen": 100}, ...]``."""
    if not isinstance(value, list) or len(value) > 16:
        raise ApplicationListError(f"{where}: transfers must be a list of at most 16 rules")
    rules = []
    for n, rule in enumerate(value):
        at = f"{where}: transfers[{n}]"
        if not isinstance(rule, dict) or rule.keys() != {"after", "within_minutes", "discount_fen"}:
            raise ApplicationListError(f"{at} must be {{after, within_minutes, discount_fen}}")
        after = _string_list(rule["after"], f"{at}.after")
        if not after or not set(after) <= TRANSFER_MODES:
            raise ApplicationListError(f"{at}.after must list modes among bus, rail")
        minutes = rule["within_minutes"]
        if isinstance(minutes, bool) or not isinstance(minutes, int | float):
            raise ApplicationListError(f"{at}.within_minutes must be a number")
        if not 0 < minutes <= 1440:
            raise ApplicationListError(f"{at}.within_minutes must be in (0, 1440]")
        discount = _fen(rule["discount_fen"], f"{at}.discount_fen")
        rules.append(TransferRule(frozenset(after), float(minutes), discount))
    return tuple(rules)


def parse_application_list(body: Mapping[str, Any]) -> ApplicationList:
    """The application list from the body of a verified ``applist`` document
    (:func:`terminal.wire.document.verify_document`; a ``signature`` key, if still
    present, is ignored). Strict: a malformed entry refuses the whole list with an
    :class:`ApplicationListError` naming it; service codes must be unique."""
    if not isinstance(body, Mapping):
        raise ApplicationListError("application list must be an object")
    unknown = body.keys() - _LIST_KEYS_SIGNED
    if unknown:
        raise ApplicationListError(f"application list has unknown keys {sorted(unknown)!r}")
    if body.get("kind") != APPLIST_KIND:
        raise ApplicationListError(f"kind must be {APPLIST_KIND!r}, not {body.get('kind')!r}")
    version = body.get("version")
    if type(version) is not int or version < 1:
        raise ApplicationListError(f"version must be a positive integer, not {version!r}")
    entries = body.get("services")
    if not isinstance(entries, list):
        raise ApplicationListError("services must be a list")
    services: dict[str, ServiceItem] = {}
    for index, entry in enumerate(entries):
        item = parse_service(entry, index)
        if item.code in services:
            raise ApplicationListError(f"service {item.code!r} is listed twice")
        services[item.code] = item
    return ApplicationList(version=version, services=MappingProxyType(services))
