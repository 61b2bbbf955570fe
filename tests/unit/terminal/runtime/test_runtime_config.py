"""terminal.toml parsing: defaults, types, unknown keys, relative paths."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.paths import EXAMPLES

from terminal.errors import ConfigError
from terminal.runtime.config import load_config, parse_config

MINIMAL = {"terminal": {"id": "GATE-0001", "profile": "gate", "service": "museum-entry"}}


def test_minimal_config_has_documented_defaults() -> None:
    config = parse_config(MINIMAL)
    assert config.profile == "gate"
    assert config.gate.passback_minutes == 10
    assert config.validator.repeat_seconds == 60
    assert config.counter.api_port == 8765
    assert config.status.port == 9100
    assert config.readers.names == ()
    assert config.security.accept_unverified is False
    assert config.outputs.kind == "console"


def test_example_files_parse() -> None:
    for name in ("gate", "validator", "counter"):
        config = load_config(EXAMPLES / f"{name}.toml")
        assert config.profile == name


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ({}, "[terminal] is required"),
        ({**MINIMAL, "gates": {}}, "unknown sections gates"),
        ({"terminal": {**MINIMAL["terminal"], "profile": "turnstile"}}, "profile must be one of"),
        ({"terminal": {**MINIMAL["terminal"], "id": "bad id!"}}, "id must be"),
        ({"terminal": {**MINIMAL["terminal"], "service": "Museum"}}, "service must be"),
        ({**MINIMAL, "gate": {"passback_minuts": 5}}, "unknown keys passback_minuts"),
        ({**MINIMAL, "gate": {"passback_minutes": "10"}}, "must be an integer or a number"),
        ({**MINIMAL, "gate": {"passback_minutes": -1}}, "must be 0..1440"),
        ({**MINIMAL, "status": {"port": True}}, "must be an integer"),
        ({**MINIMAL, "security": {"accept_unverified": 1}}, "true or false"),
        ({**MINIMAL, "readers": {"names": ["a", 2]}}, "list of strings"),
        ({**MINIMAL, "security": {"trust_list": "t.json"}}, "needs root_key"),
        ({**MINIMAL, "outputs": {"kind": "serial"}}, "needs serial"),
        ({**MINIMAL, "counter": {"pinpad": "script"}}, "needs pins"),
        ({**MINIMAL, "readers": "pcsc"}, "[readers] must be a table"),
    ],
)
def test_errors_name_the_reason(table: dict, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(table)
    assert words in caught.value.reason


def test_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "terminal.toml"
    path.write_text(
        '[terminal]\nid = "G1"\nprofile = "gate"\nservice = "museum-entry"\n'
        '[backoffice]\njournal = "state/journal.db"\n'
        '[scanner]\nserial = "/dev/ttyACM0"\n'
    )
    config = load_config(path)
    assert config.backoffice.journal == str(tmp_path / "state" / "journal.db")
    assert config.scanner.serial == "/dev/ttyACM0"


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[terminal\n")
    with pytest.raises(ConfigError, match="not a TOML configuration"):
        load_config(bad)


def test_heartbeat_seconds_default_bounds_and_examples() -> None:
    assert parse_config(MINIMAL).backoffice.heartbeat_seconds == 60
    journal = {"journal": "/var/lib/onecard/journal.db"}
    table = {**MINIMAL, "backoffice": {**journal, "heartbeat_seconds": 15}}
    assert parse_config(table).backoffice.heartbeat_seconds == 15
    for edge in (5, 3600):
        table = {**MINIMAL, "backoffice": {**journal, "heartbeat_seconds": edge}}
        assert parse_config(table).backoffice.heartbeat_seconds == edge
    for wrong in (4.9, 3601, 0):
        table = {**MINIMAL, "backoffice": {**journal, "heartbeat_seconds": wrong}}
        with pytest.raises(ConfigError) as caught:
            parse_config(table)
        assert "[backoffice] heartbeat_seconds must be 5..3600" in caught.value.reason
    # The examples show the key, with its default.
    for name in ("gate", "validator", "counter"):
        assert "heartbeat_seconds = 60" in (EXAMPLES / f"{name}.toml").read_text()
        assert load_config(EXAMPLES / f"{name}.toml").backoffice.heartbeat_seconds == 60


def test_every_example_loads_with_its_profile() -> None:
    profiles = {
        "gate": "gate",
        "validator": "validator",
        "counter": "counter",
        "rail-entry": "rail",
        "inspector": "inspector",
        "museum-gate": "gate",
    }
    for name, profile in profiles.items():
        config = load_config(EXAMPLES / f"{name}.toml")
        assert config.profile == profile, name
    assert load_config(EXAMPLES / "rail-entry.toml").rail.station == "0101"
    assert load_config(EXAMPLES / "rail-entry.toml").transit.identify == "purse"
    museum = load_config(EXAMPLES / "museum-gate.toml").venue
    assert museum is not None and museum.kind == "museum" and museum.maximum == 800


def test_rail_and_venue_settings_are_checked() -> None:
    journal = {"journal": "/var/lib/onecard/journal.db"}
    rail = {
        **MINIMAL,
        "terminal": {**MINIMAL["terminal"], "profile": "rail"},
        "backoffice": journal,
    }
    with pytest.raises(ConfigError, match=r"\[rail\] station"):
        parse_config(rail)
    with pytest.raises(ConfigError, match="4 hex digits"):
        parse_config({**rail, "rail": {"station": "1"}})
    with pytest.raises(ConfigError, match="card_types"):
        parse_config({**MINIMAL, "transit": {"card_types": {"4": "elderly"}}})
    with pytest.raises(ConfigError, match=r"\[venue\] is for the gate"):
        parse_config({**rail, "rail": {"station": "0101"}, "venue": {"kind": "scenic", "id": "x"}})
