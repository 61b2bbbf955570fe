"""The acceptance policy: parsing the application list strictly, and the one decision with
every reason, in order (docs/policy.md)."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from terminal.credential import CardKind, Credential, CredentialKind
from terminal.hotlist import HotList
from terminal.policy import (
    ApplicationList,
    ApplicationListError,
    AuthenticityOutcome,
    Decision,
    Reason,
    Scope,
    decide,
    parse_application_list,
)
from terminal.privacy.cardtoken import card_token, hotlist_key, tunion_card_token
from terminal.wire.document import DocumentError

TODAY = dt.date(2025, 6, 1)
TOKEN_KEY = bytes(range(32))
GENUINE = AuthenticityOutcome(ok=True, verdict="genuine", reason="internal authentication ok")
FORGED = AuthenticityOutcome(ok=False, verdict="cloned", reason="MAC mismatch")

BODY: dict[str, Any] = {
    "kind": "applist",
    "version": 4,
    "services": [
        {
            "code": "museum-entry",
            "name": "Chongqing museum",
            "scope": "chongqing",
            "valid_from": "2025-01-01",
        },
        {
            "code": "library-entry",
            "name": "Joint library",
            "scope": "sichuan-chongqing",
            "valid_from": "2025-01-01",
            "valid_to": None,
        },
        {
            "code": "bus",
            "name": "Bus",
            "scope": "national",
            "fare": 200,
            "category_fares": {"4": 0, "2": 100},
            "valid_from": "2025-01-01",
            "credentials": ["card"],
        },
        {
            "code": "senior-park",
            "name": "Park (seniors)",
            "scope": "national",
            "categories": ["4"],
            "valid_from": "2025-01-01",
            "valid_to": "2025-12-31",
        },
        {
            "code": "expo-2026",
            "name": "Expo",
            "scope": "national",
            "valid_from": "2026-01-01",
        },
        {
            "code": "ended",
            "name": "Ended exhibition",
            "scope": "national",
            "valid_from": "2024-01-01",
            "valid_to": "2024-12-31",
        },
        {
            "code": "code-only",
            "name": "App entry",
            "scope": "national",
            "valid_from": "2025-01-01",
            "credentials": ["code"],
        },
        {
            "code": "metro",
            "name": "Metro (every transit card)",
            "scope": "national",
            "fare": 300,
            "category_fares": {"4": 0},
            "valid_from": "2025-01-01",
            "cards": ["ssc", "tunion"],
        },
        {
            "code": "airport-line",
            "name": "Airport line (transit cards only)",
            "scope": "national",
            "fare": 2500,
            "valid_from": "2025-01-01",
            "credentials": ["card"],
            "cards": ["tunion"],
        },
    ],
}
APPLIST = parse_application_list(BODY)


def credential(
    region: str = "500103",
    category: str | None = "3",
    kind: CredentialKind = CredentialKind.CARD,
    expiry: dt.date | None = dt.date(2030, 1, 1),
    card_number: str = "D2143569X",
    card_kind: CardKind = CardKind.SSC,
    other_tokens: tuple[bytes, ...] = (),
) -> Credential:
    return Credential(
        kind=kind,
        card_token=card_token(TOKEN_KEY, card_number),
        region=region,
        category=category,
        expiry=expiry,
        card_kind=card_kind,
        other_tokens=other_tokens,
    )


SERIAL = bytes.fromhex("31000000000000004321")


def tunion_credential(region: str = "000000", serial: bytes = SERIAL) -> Credential:
    """A plain T-Union card, as terminal.transit.identity.purse_credential makes it."""
    return Credential(
        kind=CredentialKind.CARD,
        card_token=tunion_card_token(TOKEN_KEY, serial),
        region=region,
        category=None,
        expiry=dt.date(2040, 12, 31),
        card_kind=CardKind.TUNION,
    )


def decide_at(
    service: str,
    cred: Credential | None = None,
    authentic: AuthenticityOutcome = GENUINE,
    hotlist: HotList | None = None,
    today: dt.date = TODAY,
    offered: frozenset[str] | None = None,
) -> Decision:
    return decide(
        cred or credential(),
        authentic,
        APPLIST,
        hotlist or HotList.empty(),
        service,
        today,
        offered,
    )


def hotlist_of(*creds: Credential) -> HotList:
    return HotList.from_keys(1, [hotlist_key(c.card_token) for c in creds])


# --- the examples of the brief --------------------------------------------------------------


def test_sichuan_card_at_chongqing_only_service_is_refused() -> None:
    d = decide_at("museum-entry", credential(region="510104"))
    assert (d.accepted, d.reason, d.fare) == (False, "region_not_accepted", None)
    assert "Chongqing cards only" in d.detail


def test_sichuan_card_at_sichuan_chongqing_service_is_accepted() -> None:
    d = decide_at("library-entry", credential(region="510104"))
    assert (d.accepted, d.reason, d.fare) == (True, "ok", 0)


def test_beijing_card_at_national_service_is_accepted() -> None:
    d = decide_at("bus", credential(region="110105"))
    assert (d.accepted, d.reason, d.fare) == (True, "ok", 200)


def test_beijing_card_at_sichuan_chongqing_service_is_refused() -> None:
    assert decide_at("library-entry", credential(region="110105")).reason == "region_not_accepted"


def test_elderly_ride_free_students_pay_less() -> None:
    assert decide_at("bus", credential(category="4")).fare == 0
    assert decide_at("bus", credential(category="2")).fare == 100
    assert decide_at("bus", credential(category="3")).fare == 200
    assert decide_at("bus", credential(category="4")).detail.endswith("free entry")


def test_hotlisted_is_refused_even_when_everything_else_passes() -> None:
    lost = credential()
    assert decide_at("bus", lost).accepted
    d = decide_at("bus", lost, hotlist=hotlist_of(lost))
    assert (d.accepted, d.reason) == (False, "hotlisted")
    assert decide_at("bus", credential(card_number="A1234567X"), hotlist=hotlist_of(lost)).accepted


def test_not_authentic_is_refused_first() -> None:
    # Forged, hotlisted, expired, from the wrong region and category: authenticity speaks.
    bad = credential(region="110105", category="1", expiry=dt.date(2020, 1, 1))
    d = decide_at("senior-park", bad, authentic=FORGED, hotlist=hotlist_of(bad))
    assert (d.accepted, d.reason) == (False, "not_authentic")
    assert "cloned" in d.detail
    assert "MAC" not in d.detail  # the checker's free text is not shown


# --- every reason, and the order ------------------------------------------------------------


def test_unknown_service_is_not_offered() -> None:
    assert decide_at("zoo").reason == "service_not_offered"


def test_service_not_offered_at_this_terminal() -> None:
    assert decide_at("bus", offered=frozenset({"museum-entry"})).reason == "service_not_offered"
    assert decide_at("bus", offered=frozenset({"bus"})).accepted


def test_service_not_in_force() -> None:
    assert decide_at("expo-2026").reason == "service_not_in_force"
    assert decide_at("ended").reason == "service_not_in_force"
    assert decide_at("expo-2026", today=dt.date(2026, 1, 1)).accepted
    # valid_to is the last day in force.
    assert decide_at("senior-park", credential(category="4"), today=dt.date(2025, 12, 31)).accepted
    d = decide_at("senior-park", credential(category="4"), today=dt.date(2026, 1, 1))
    assert d.reason == "service_not_in_force"


def test_credential_not_accepted() -> None:
    code = credential(kind=CredentialKind.CODE, expiry=None)
    assert decide_at("bus", code).reason == "credential_not_accepted"
    assert decide_at("code-only").reason == "credential_not_accepted"
    assert decide_at("code-only", code).accepted


def test_card_expired() -> None:
    assert decide_at("bus", credential(expiry=dt.date(2025, 5, 31))).reason == "card_expired"
    assert decide_at("bus", credential(expiry=TODAY)).accepted  # the expiry day itself is valid
    assert decide_at("bus", credential(expiry=None)).accepted


def test_category_not_accepted() -> None:
    assert decide_at("senior-park", credential(category="3")).reason == "category_not_accepted"
    assert decide_at("senior-park", credential(category="4")).accepted
    # A credential without a category passes only where every category is accepted.
    assert decide_at("senior-park", credential(category=None)).reason == "category_not_accepted"
    assert decide_at("bus", credential(category=None)).fare == 200


@pytest.mark.parametrize("region", ["50", "5001030", "abcdef", "", "５００１０３"])
def test_malformed_region_is_not_accepted_anywhere(region: str) -> None:
    assert decide_at("bus", credential(region=region)).reason == "region_not_accepted"


def test_order_service_before_credential_before_authenticity() -> None:
    code = credential(kind=CredentialKind.CODE)
    assert decide_at("expo-2026", code, authentic=FORGED).reason == "service_not_in_force"
    assert decide_at("bus", code, authentic=FORGED).reason == "credential_not_accepted"
    lost = credential(expiry=dt.date(2020, 1, 1), region="110105")
    hl = hotlist_of(lost)
    assert decide_at("museum-entry", lost, hotlist=hl).reason == "hotlisted"
    assert decide_at("museum-entry", lost).reason == "card_expired"


def test_every_reason_is_reachable() -> None:
    seen = {
        decide_at("zoo").reason,
        decide_at("ended").reason,
        decide_at("code-only").reason,
        decide_at("bus", authentic=FORGED).reason,
        decide_at("bus", hotlist=hotlist_of(credential())).reason,
        decide_at("bus", credential(expiry=dt.date(2000, 1, 1))).reason,
        decide_at("museum-entry", credential(region="510104")).reason,
        decide_at("senior-park").reason,
        decide_at("bus").reason,
        decide_at("bus", tunion_credential()).reason,
    }
    assert seen == {r.value for r in Reason}


def test_decide_takes_any_hotlist_with_contains() -> None:
    class Fake:
        def contains(self, token: bytes) -> bool:
            return True

    d = decide(credential(), GENUINE, APPLIST, Fake(), "bus", TODAY)
    assert d.reason == "hotlisted"


# --- parsing --------------------------------------------------------------------------------


def test_parse_defaults() -> None:
    museum = APPLIST.get("museum-entry")
    assert museum is not None
    assert museum.scope is Scope.CHONGQING
    assert museum.fare == 0 and dict(museum.category_fares) == {}
    assert museum.categories == frozenset("1234")
    assert museum.credentials == frozenset(CredentialKind)
    assert museum.cards == frozenset({CardKind.SSC})  # lists from before T-Union cards
    assert museum.valid_to is None
    assert APPLIST.version == 4 and len(APPLIST) == 9 and "bus" in APPLIST
    metro = APPLIST.get("metro")
    assert metro is not None and metro.cards == frozenset(CardKind)


def test_parse_accepts_a_signed_body() -> None:
    assert len(parse_application_list(dict(BODY, signature={"x": 1}))) == 9


def test_parse_empty_list() -> None:
    empty = parse_application_list({"kind": "applist", "version": 1, "services": []})
    assert len(empty) == 0
    assert decide(credential(), GENUINE, empty, HotList.empty(), "bus", TODAY).reason == (
        "service_not_offered"
    )


def _service(**changes: Any) -> dict[str, Any]:
    entry = {"code": "x", "name": "X", "scope": "national", "valid_from": "2025-01-01"}
    for k, v in changes.items():
        if v is KeyError:
            entry.pop(k, None)
        else:
            entry[k] = v
    return entry


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("museum", "must be an object"),
        (_service(code=KeyError), "lacks code"),
        (_service(valid_from=KeyError), "lacks valid_from"),
        (_service(hours="9-17"), "unknown keys hours"),
        (_service(code="Museum"), "code must match"),
        (_service(code=""), "code must match"),
        (_service(code="a" * 65), "code must match"),
        (_service(name=""), "name must be"),
        (_service(name="  "), "name must be"),
        (_service(name=5), "name must be"),
        (_service(scope="sichuan"), "scope must be one of"),
        (_service(scope=["national"]), "scope must be one of"),
        (_service(valid_from="2025-1-1"), "valid_from must be a date"),
        (_service(valid_from="20250101"), "valid_from must be a date"),
        (_service(valid_from="2025-02-30"), "not a calendar date"),
        (_service(valid_to="2024-12-31"), "valid_to is before valid_from"),
        (_service(fare=-1), "fare must be a non-negative integer"),
        (_service(fare=1.5), "fare must be a non-negative integer"),
        (_service(fare=True), "fare must be a non-negative integer"),
        (_service(fare="100"), "fare must be a non-negative integer"),
        (_service(category_fares=[0]), "category_fares must be an object"),
        (_service(category_fares={"5": 0}), "unknown category '5'"),
        (_service(category_fares={"4": -1}), "non-negative integer"),
        (_service(categories=[]), "non-empty list"),
        (_service(categories="1234"), "non-empty list"),
        (_service(categories=["1", "1"]), "repeats"),
        (_service(categories=[4]), "must hold strings"),
        (_service(categories=["0"]), "unknown categories"),
        (_service(credentials=["card", "nfc"]), "credentials must be among"),
        (_service(credentials=[]), "non-empty list"),
        (_service(cards=["ssc", "bankcard"]), "cards must be among ssc, tunion"),
        (_service(cards=["SSC"]), "cards must be among"),
        (_service(cards=[]), "non-empty list"),
        (_service(cards="ssc"), "non-empty list"),
        (_service(cards=["ssc", "ssc"]), "repeats"),
        (_service(cards=[1]), "must hold strings"),
    ],
)
def test_malformed_entries_are_refused(entry: Any, reason: str) -> None:
    body = {"kind": "applist", "version": 1, "services": [entry]}
    with pytest.raises(ApplicationListError, match=reason):
        parse_application_list(body)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ([], "must be an object"),
        ({"kind": "applist", "version": 1}, "services must be a list"),
        ({"kind": "applist", "version": 1, "services": {}}, "services must be a list"),
        ({"kind": "trustlist", "version": 1, "services": []}, "kind must be"),
        ({"kind": "applist", "version": 0, "services": []}, "version must be"),
        ({"kind": "applist", "version": "1", "services": []}, "version must be"),
        ({"kind": "applist", "version": 1, "services": [], "x": 1}, "unknown keys"),
        (
            {"kind": "applist", "version": 1, "services": [_service(), _service()]},
            "listed twice",
        ),
    ],
)
def test_malformed_lists_are_refused(body: Any, reason: str) -> None:
    with pytest.raises(ApplicationListError, match=reason):
        parse_application_list(body)


def test_application_list_error_is_a_document_error() -> None:
    # The download path refuses a bad list like any other bad document.
    assert issubclass(ApplicationListError, DocumentError)


def test_parse_does_not_keep_references_to_the_body() -> None:
    body = copy.deepcopy(BODY)
    parsed = parse_application_list(body)
    body["services"][2]["category_fares"]["4"] = 999
    bus = parsed.get("bus")
    assert bus is not None and bus.fare_for("4") == 0


# --- property: decide never raises ----------------------------------------------------------

_DATES = st.dates(dt.date(2020, 1, 1), dt.date(2032, 12, 31))
_CATEGORY = st.sampled_from(["1", "2", "3", "4"])


@st.composite
def _service_entries(draw: st.DrawFn, code: str) -> dict[str, Any]:
    start = draw(_DATES)
    entry: dict[str, Any] = {
        "code": code,
        "name": draw(st.text(min_size=1, max_size=20).filter(str.strip)),
        "scope": draw(st.sampled_from([s.value for s in Scope])),
        "valid_from": start.isoformat(),
    }
    if draw(st.booleans()):
        end = draw(st.one_of(st.none(), st.dates(start, dt.date(2033, 1, 1))))
        entry["valid_to"] = None if end is None else end.isoformat()
    if draw(st.booleans()):
        entry["fare"] = draw(st.integers(0, 100_000))
    if draw(st.booleans()):
        entry["category_fares"] = draw(st.dictionaries(_CATEGORY, st.integers(0, 10_000)))
    if draw(st.booleans()):
        entry["categories"] = sorted(draw(st.sets(_CATEGORY, min_size=1)))
    if draw(st.booleans()):
        entry["credentials"] = sorted(draw(st.sets(st.sampled_from(["card", "code"]), min_size=1)))
    if draw(st.booleans()):
        entry["cards"] = sorted(draw(st.sets(st.sampled_from(["ssc", "tunion"]), min_size=1)))
    return entry


_CODES = ["museum-entry", "bus", "library-entry"]


@st.composite
def _applists(draw: st.DrawFn) -> ApplicationList:
    codes = draw(st.sets(st.sampled_from(_CODES)))
    services = [draw(_service_entries(code)) for code in sorted(codes)]
    return parse_application_list({"kind": "applist", "version": 1, "services": services})


_REGIONS = st.one_of(
    st.sampled_from(["500103", "510104", "110105", "440305"]),
    st.from_regex(r"\d{6}", fullmatch=True),
)


@st.composite
def _credentials(draw: st.DrawFn) -> Credential:
    return Credential(
        kind=draw(st.sampled_from(list(CredentialKind))),
        card_token=draw(st.binary(min_size=16, max_size=16)),
        region=draw(_REGIONS),
        category=draw(st.one_of(st.none(), _CATEGORY)),
        expiry=draw(st.one_of(st.none(), _DATES)),
        card_kind=draw(st.sampled_from(list(CardKind))),
        other_tokens=draw(st.lists(st.binary(min_size=16, max_size=16), max_size=2).map(tuple)),
    )


@settings(max_examples=400, deadline=None)
@given(
    cred=_credentials(),
    authentic=st.builds(AuthenticityOutcome, st.booleans(), st.text(max_size=10), st.text()),
    applist=_applists(),
    hot=st.booleans(),
    service=st.sampled_from([*_CODES, "zoo"]),
    today=_DATES,
    offered=st.one_of(st.none(), st.frozensets(st.sampled_from([*_CODES, "zoo"]))),
)
def test_decide_never_raises_and_is_consistent(
    cred: Credential,
    authentic: AuthenticityOutcome,
    applist: ApplicationList,
    hot: bool,
    service: str,
    today: dt.date,
    offered: frozenset[str] | None,
) -> None:
    hotlist = hotlist_of(cred) if hot else HotList.empty()
    if hot and cred.other_tokens:
        # Reported under its other identity only (the e-purse of an SSC): refused all the same.
        hotlist = HotList.from_keys(1, [hotlist_key(cred.other_tokens[-1])])
    d = decide(cred, authentic, applist, hotlist, service, today, offered)
    assert d.reason in {r.value for r in Reason}
    assert d.accepted == (d.reason == "ok")
    assert (d.fare is not None) == d.accepted
    if d.accepted:
        item = applist.get(service)
        assert item is not None
        assert authentic.ok and not hot
        assert item.scope.accepts(cred.region)
        assert cred.card_kind in item.cards
        assert d.fare == item.fare_for(cred.category) >= 0
    if not authentic.ok:
        assert not d.accepted
    if hot:
        assert not d.accepted


# --- card kinds: the SSC and the plain T-Union card -----------------------------------------


def test_todays_lists_refuse_a_plain_tunion_card() -> None:
    d = decide_at("bus", tunion_credential())
    assert not d.accepted and d.reason == "card_kind_not_accepted"
    assert "transit cards" in d.detail


def test_a_service_taking_tunion_cards() -> None:
    d = decide_at("metro", tunion_credential())
    assert d.accepted and d.fare == 300  # no category: the full fare
    assert decide_at("metro", credential(category="4")).fare == 0
    assert decide_at("airport-line", credential()).reason == "card_kind_not_accepted"
    assert decide_at("airport-line", tunion_credential()).accepted


def test_card_kind_comes_after_the_service_facts_and_before_authenticity() -> None:
    assert decide_at("ended", tunion_credential()).reason == "service_not_in_force"
    refused = decide_at("bus", tunion_credential(), authentic=FORGED)
    assert refused.reason == "card_kind_not_accepted"


def test_the_placeholder_region_passes_only_a_national_scope() -> None:
    body = copy.deepcopy(BODY)
    for entry in body["services"]:
        entry["cards"] = ["ssc", "tunion"]
    applist = parse_application_list(body)

    def at(service: str, cred: Credential) -> str:
        return decide(cred, GENUINE, applist, HotList.empty(), service, TODAY).reason

    assert at("museum-entry", tunion_credential()) == "region_not_accepted"
    assert at("library-entry", tunion_credential()) == "region_not_accepted"
    assert at("bus", tunion_credential()) == "ok"
    assert at("museum-entry", tunion_credential(region="500000")) == "ok"


def test_a_card_is_hotlisted_by_any_of_its_tokens() -> None:
    purse_token = tunion_card_token(TOKEN_KEY, SERIAL)
    ssc = credential(other_tokens=(purse_token,))
    reported_purse = HotList.from_keys(1, [hotlist_key(purse_token)])
    assert decide_at("bus", ssc, hotlist=reported_purse).reason == "hotlisted"
    assert decide_at("metro", tunion_credential(), hotlist=reported_purse).reason == "hotlisted"
    assert decide_at("bus", ssc, hotlist=hotlist_of(ssc)).reason == "hotlisted"
    assert decide_at("bus", ssc).accepted


def test_tunion_and_ssc_tokens_never_collide() -> None:
    # The "tunion:" prefix: no card number is the input of a T-Union token.
    assert tunion_card_token(TOKEN_KEY, SERIAL) == card_token(TOKEN_KEY, "tunion:" + SERIAL.hex())
    assert tunion_card_token(TOKEN_KEY, SERIAL) != card_token(TOKEN_KEY, SERIAL.hex())
