"""Operator files are read into values or a ConfigError naming the file, for any content,
within a time and memory bound (issue 17): JSON through the one strict reader, TOML with
every failure of ``tomllib`` mapped - deep nesting raised ``RecursionError`` out of the key
file and ``terminal.toml`` loaders, a 4,301-digit integer ``ValueError`` out of
``terminal.toml``'s."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers.hostile import DEADLINE, EXAMPLES, LARGE_INPUTS, bounded, hostile_json, nested, total
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_sim.profile import parse_profile
from terminal.errors import ConfigError
from terminal.host.operatorfile import (
    MAX_FILE_BYTES,
    load_operator_json,
    load_operator_toml,
    parse_operator_json,
    parse_toml,
)
from terminal.runtime.config import load_config
from terminal.secure.keyfile import parse_key_file

DEEP_TOML = {
    "arrays": "a = " + nested(3000),
    "inline tables": "a = " + "{b = " * 3000 + "1" + "}" * 3000,
    "4301 digits": "a = " + "1" * 4301,
    "lone surrogate": "a = '\ud800'",
    "escaped surrogate": 'a = "\\ud800"',
    "key twice": "a = 1\na = 2",
}


@pytest.mark.parametrize("name", sorted(DEEP_TOML))
def test_toml_that_leaked_is_a_config_error_naming_the_file(name: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_toml(DEEP_TOML[name], "some.toml", "key file")
    assert info.value.reason.startswith("some.toml: ")


@pytest.mark.parametrize("name", sorted(DEEP_TOML))
def test_key_files_terminal_toml_and_card_profiles_refuse_it(tmp_path: Path, name: str) -> None:
    text = DEEP_TOML[name]
    with pytest.raises(ConfigError, match=r"keys\.toml: "):
        parse_key_file(text, "keys.toml")  # was RecursionError
    path = tmp_path / "terminal.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        load_config(path)  # was RecursionError, and ValueError for 4,301 digits
    with pytest.raises(ConfigError, match=r"card\.toml: "):
        parse_profile(text, "card.toml")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"a": 1e400}', "out of the range of a double"),
        (b'{"a": ' + b"1" * 4301 + b"}", "more than 4300 digits"),
        (b'{"a": "\\ud800"}', "lone surrogate"),
        (nested(100_000).encode(), "nested more than 64"),
        (b'{"a": 1, "a": 2}', "duplicate key"),
        (b"\xff", "not UTF-8"),
    ],
)
def test_json_operator_files_are_strict(tmp_path: Path, raw: bytes, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        parse_operator_json(raw, "world.json", "manifest")
    path = tmp_path / "world.json"
    path.write_bytes(raw)
    with pytest.raises(ConfigError, match=reason) as info:
        load_operator_json(path, "manifest")
    assert info.value.reason.startswith(f"{path}: the manifest is not strict JSON")


def test_files_are_read_up_to_a_bound(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_bytes(b" " * (MAX_FILE_BYTES + 1))
    for load in (load_operator_json, load_operator_toml):
        with pytest.raises(ConfigError, match="larger than"):
            load(path, "file")
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_operator_toml(tmp_path / "absent.toml", "file")
    (tmp_path / "bad.toml").write_bytes(b"a = '\xff'")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_operator_toml(tmp_path / "bad.toml", "file")


@settings(max_examples=EXAMPLES, deadline=DEADLINE)
@given(hostile_json({"version": 1, "roots": [], "algorithm": "sm2"}))
def test_parse_operator_json_is_total(raw: bytes) -> None:
    total(lambda r: parse_operator_json(r, "x.json", "file"), raw, ConfigError)


_TOML_LINES = st.lists(
    st.one_of(
        st.text(max_size=30),
        st.sampled_from(sorted(DEEP_TOML.values())),
        st.sampled_from(["[sm4]", "[[x]]", "a.b.c = 1", 'terminal_number = "000000000001"']),
    ),
    max_size=5,
).map("\n".join)


@settings(max_examples=EXAMPLES, deadline=DEADLINE)
@given(_TOML_LINES)
def test_toml_operator_files_are_total(text: str) -> None:
    total(lambda t: parse_toml(t, "x.toml", "file"), text, ConfigError)
    total(lambda t: parse_key_file(t, "keys.toml"), text, ConfigError)


@pytest.mark.parametrize("name", sorted(LARGE_INPUTS))
def test_large_json_files_are_refused_within_bounds(name: str) -> None:
    raw = LARGE_INPUTS[name]
    bounded(lambda: total(lambda r: parse_operator_json(r, "x", "file"), raw, ConfigError))


def test_a_megabyte_of_toml_nesting_is_refused_within_bounds() -> None:
    text = "a = " + "[" * (MAX_FILE_BYTES - 8)
    bounded(lambda: total(lambda t: parse_toml(t, "x.toml", "file"), text, ConfigError))
