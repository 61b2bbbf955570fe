"""The ``[venue]`` table (terminal.venue.settings): defaults, the library's ``[venue.ils]``,
message overrides, and every bad key or value refused with a ConfigError naming it."""

from __future__ import annotations

from typing import Any

import pytest

from terminal.errors import ConfigError
from terminal.host.clock import FixedClock
from terminal.venue.ils import Fallback, IlsSettings
from terminal.venue.settings import (
    VENUE_MESSAGES,
    VenueSettings,
    parse_venue_settings,
)
from terminal.venue.sip2 import PatronIdKind

ILS: dict[str, Any] = {
    "host": "10.0.0.5",
    "port": 6001,
    "user": "gate01",
    "password": "secret",
    "patron_id": "social_security_number",
    "fallback": "refuse",
    "flags": {"recall_overdue": "refuse"},
}


def parse(**table: Any) -> VenueSettings | None:
    return parse_venue_settings(table, "terminal.toml")


def refused(table: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_venue_settings(table, "terminal.toml")
    return caught.value.reason


def test_no_table_or_no_kind_is_no_venue() -> None:
    assert parse_venue_settings(None, "terminal.toml") is None
    assert parse() is None
    assert parse(kind="") is None
    # kind = "" switches the venue off, but a typo next to it is still a typo.
    assert parse(kind="", id="museum-1", maximum=300) is None
    assert "unknown keys maxmum" in refused({"kind": "", "maxmum": 3})


def test_museum_with_defaults() -> None:
    settings = parse(kind="museum", id="museum-1")
    assert settings == VenueSettings(kind="museum", id="museum-1")
    assert settings.role == "entry" and settings.maximum == 0
    assert settings.occupancy_maximum is None
    assert (settings.grace_minutes, settings.stale_seconds) == (15.0, 30.0)
    assert settings.occupancy_poll_seconds == 5.0
    assert settings.ils is None and settings.messages == VENUE_MESSAGES


def test_every_key() -> None:
    settings = parse(
        kind="museum",
        id="science-centre-2",
        role="both",
        maximum=300,
        grace_minutes=0,
        stale_seconds=12.5,
        occupancy_poll_seconds=2,
        messages={"venue_full": ["请稍候", "Please wait"]},
    )
    assert settings is not None
    assert settings.role == "both" and settings.occupancy_maximum == 300
    assert settings.grace_minutes == 0.0 and isinstance(settings.occupancy_poll_seconds, float)
    assert settings.messages["venue_full"] == ("请稍候", "Please wait")
    # Keys not overridden keep their defaults; the defaults themselves are not touched.
    assert settings.messages["no_reservation"] == VENUE_MESSAGES["no_reservation"]
    assert VENUE_MESSAGES["venue_full"] == ("馆内人数已满，请稍候", "Full - please wait")


def test_library_reads_its_ils_table_unchanged() -> None:
    settings = parse(kind="library", id="city-library", ils=ILS)
    assert settings is not None
    assert settings.ils == IlsSettings.from_dict(ILS)
    assert settings.ils.patron_id is PatronIdKind.social_security_number
    assert settings.ils.fallback is Fallback.refuse


def test_library_needs_ils_and_only_a_library_has_one() -> None:
    assert "needs [venue.ils]" in refused({"kind": "library", "id": "lib"})
    assert "[venue] ils" in refused({"kind": "library", "id": "lib", "ils": "10.0.0.5"})
    assert "library" in refused({"kind": "museum", "id": "m", "ils": ILS})
    reason = refused({"kind": "library", "id": "lib", "ils": {**ILS, "port": 0}})
    assert reason.startswith("terminal.toml: [venue.ils]") and "port" in reason
    assert "hots" in refused({"kind": "library", "id": "lib", "ils": {**ILS, "hots": "x"}})


@pytest.mark.parametrize(
    ("table", "names"),
    [
        ({"kind": "zoo", "id": "z"}, "[venue] kind"),
        ({"kind": 1, "id": "z"}, "[venue] kind"),
        ({"id": "museum-1"}, "[venue] kind is required"),
        ({"kind": "museum"}, "[venue] id is required"),
        ({"kind": "museum", "id": "Museum_1"}, "[venue] id"),
        ({"kind": "museum", "id": ""}, "[venue] id"),
        ({"kind": "museum", "id": "m" * 65}, "[venue] id"),
        ({"kind": "museum", "id": 7}, "[venue] id"),
        ({"kind": "museum", "id": "m", "role": "sideways"}, "[venue] role"),
        ({"kind": "museum", "id": "m", "maximum": -1}, "[venue] maximum"),
        ({"kind": "museum", "id": "m", "maximum": True}, "[venue] maximum"),
        ({"kind": "museum", "id": "m", "maximum": 1.5}, "[venue] maximum"),
        ({"kind": "museum", "id": "m", "maximum": 10**9}, "[venue] maximum"),
        ({"kind": "museum", "id": "m", "grace_minutes": 1441}, "[venue] grace_minutes"),
        ({"kind": "museum", "id": "m", "grace_minutes": -1}, "[venue] grace_minutes"),
        ({"kind": "museum", "id": "m", "grace_minutes": "15"}, "[venue] grace_minutes"),
        ({"kind": "museum", "id": "m", "stale_seconds": 0}, "[venue] stale_seconds"),
        ({"kind": "museum", "id": "m", "stale_seconds": False}, "[venue] stale_seconds"),
        ({"kind": "museum", "id": "m", "occupancy_poll_seconds": 0}, "occupancy_poll_seconds"),
        ({"kind": "museum", "id": "m", "occupancy_poll_seconds": 4000}, "occupancy_poll"),
        ({"kind": "museum", "id": "m", "messages": ["x"]}, "[venue] messages"),
        ({"kind": "museum", "id": "m", "messages": {"venu_full": ["a", "b"]}}, "venu_full"),
        ({"kind": "museum", "id": "m", "messages": {"venue_full": "满"}}, "venue_full"),
        ({"kind": "museum", "id": "m", "messages": {"venue_full": ["满"]}}, "venue_full"),
        ({"kind": "museum", "id": "m", "messages": {"venue_full": ["满", ""]}}, "venue_full"),
        ({"kind": "museum", "id": "m", "messages": {"venue_full": ["满", 3]}}, "venue_full"),
        ({"kind": "museum", "id": "m", "messages": {"venue_full": ["满" * 101, "x"]}}, "full"),
        ({"kind": "museum", "id": "m", "token_key_for_ils": "x"}, "unknown keys"),
    ],
)
def test_bad_keys_and_values_are_refused_naming_them(table: dict[str, Any], names: str) -> None:
    reason = refused(table)
    assert reason.startswith("terminal.toml:")
    assert names in reason


def test_a_table_that_is_not_a_table() -> None:
    with pytest.raises(ConfigError, match=r"\[venue\] must be a table"):
        parse_venue_settings("museum", "terminal.toml")  # type: ignore[arg-type]


def test_new_occupancy_follows_the_settings() -> None:
    clock = FixedClock()
    settings = parse(kind="museum", id="museum-1", role="exit", stale_seconds=9)
    assert settings is not None
    occupancy = settings.new_occupancy(clock, gate="east-1")
    assert (occupancy.venue, occupancy.role, occupancy.gate) == ("museum-1", "exit", "east-1")
    assert occupancy.maximum is None and occupancy.stale_seconds == 9.0
    limited = parse(kind="museum", id="museum-1", maximum=2)
    assert limited is not None and limited.new_occupancy(clock, gate="g").maximum == 2
