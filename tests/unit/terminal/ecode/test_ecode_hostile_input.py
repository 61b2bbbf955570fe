"""The e-code parsers of outside data - the trust list file, a verified trust list body, an
e-code world manifest, a scanned code - give a value or their typed error for any input,
within a time and memory bound (issue 17). Each input that once leaked is a regression
test: ``parse_trust_list`` raised ``ValueError`` on a 4,301-digit version and accepted a key
given twice."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from helpers.hostile import DEADLINE, EXAMPLES, LARGE_INPUTS, bounded, hostile_json, nested, total
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_sim.ecode_issuing import issuer_entry, make_issuer_key, make_trust_list
from terminal.crypto.signing import Algorithm, generate_private_key, public_key_bytes
from terminal.ecode.payload import PREFIX, parse_code
from terminal.ecode.trustlist import parse_trust_list, trust_list_from_body
from terminal.ecode.world import load_world, read_hex_key_file
from terminal.errors import ConfigError, ParseError, TrustListError
from terminal.wire.canonical import JsonError, parse_json

ALG = Algorithm.ECDSA_P256
ROOT = generate_private_key(ALG)
ROOT_PUBLIC = public_key_bytes(ROOT)
_WHEN = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
_ISSUER, _ = make_issuer_key(ALG)
GOOD = make_trust_list(
    ROOT, ALG, [issuer_entry(_ISSUER, ALG, _WHEN, _WHEN + dt.timedelta(days=365))], 3, _WHEN
)
GOOD_DOC = json.loads(GOOD)


def parse(raw: bytes) -> object:
    return parse_trust_list(raw, ROOT_PUBLIC, ALG)


def test_the_good_list_parses() -> None:
    assert parse(GOOD).version == 3  # type: ignore[attr-defined]


# --- regressions: the inputs that leaked -------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"version": ' + b"1" * 4301 + b"}", "more than 4300 digits"),  # was ValueError
        (b'{"version": 1e400}', "out of the range of a double"),
        (b'{"version": 1, "issuers": ["\\ud800"]}', "lone surrogate"),
        (nested(100_000).encode(), "nested more than 64"),
        (nested(65, kind="{").encode(), "nested more than 64"),
        (b'{"version": NaN}', "not a JSON number"),
    ],
    ids=["4301 digits", "1e400", "lone surrogate", "deep arrays", "deep objects", "NaN"],
)
def test_inputs_that_leaked_are_trust_list_errors(raw: bytes, reason: str) -> None:
    with pytest.raises(TrustListError, match=reason):
        parse(raw)


def test_a_key_given_twice_is_refused() -> None:
    """Two readers may keep different copies of a repeated key: the list verified and the
    list used could differ. The signed list with a second ``issuers`` member after the
    signed one was accepted before."""
    text = GOOD.decode().rstrip().rstrip("}") + ', "issuers": []}'
    with pytest.raises(TrustListError, match="duplicate key 'issuers'"):
        parse(text.encode())


# --- properties -----------------------------------------------------------------------------


@settings(max_examples=EXAMPLES, deadline=DEADLINE)
@given(hostile_json(GOOD_DOC))
def test_parse_trust_list_is_total(raw: bytes) -> None:
    total(parse, raw, TrustListError)


@settings(max_examples=EXAMPLES, deadline=DEADLINE)
@given(hostile_json({k: v for k, v in GOOD_DOC.items() if k != "signature"}))
def test_a_verified_body_with_anything_in_it_is_total(raw: bytes) -> None:
    """The body a document store verified goes to ``trust_list_from_body``: whatever the
    back office signed, a value or a TrustListError."""
    try:
        body = parse_json(raw)
    except JsonError:
        return
    if isinstance(body, dict):
        total(trust_list_from_body, body, TrustListError)


@pytest.mark.parametrize("name", sorted(LARGE_INPUTS))
def test_large_inputs_are_refused_within_bounds(name: str) -> None:
    bounded(lambda: total(parse, LARGE_INPUTS[name], TrustListError))


@settings(max_examples=EXAMPLES, deadline=DEADLINE)
@given(st.text(max_size=5000) | st.sampled_from([PREFIX + "\ud800", PREFIX + "A" * 100_000]))
def test_scanned_text_of_any_size_is_a_code_or_a_parse_error(text: str) -> None:
    total(parse_code, text, ParseError)


# --- the e-code world manifest (an operator file) ------------------------------------------


@pytest.mark.parametrize(
    ("manifest", "reason"),
    [
        (b'{"algorithm": "sm2"}', "root must be an object"),
        (b'{"algorithm": "sm2", "root": {}, "trust_list": "t.json"}', "root.public_key"),
        (b'{"algorithm": [1], "root": {"public_key": "r"}, "trust_list": "t"}', "algorithm"),
        (b'{"algorithm": "sm2", "algorithm": "ecdsa-p256"}', "duplicate key"),
        (b'{"trust_list_version": 1e400}', "out of the range of a double"),
        (b"[]", "JSON object"),
        (b"\xff", "not strict JSON"),
    ],
)
def test_a_bad_manifest_is_a_config_error_naming_it(
    tmp_path: Path, manifest: bytes, reason: str
) -> None:
    (tmp_path / "manifest.json").write_bytes(manifest)
    with pytest.raises(ConfigError, match=reason) as info:
        load_world(tmp_path)
    assert str(tmp_path / "manifest.json") in info.value.reason


def test_a_missing_world_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the e-code world manifest"):
        load_world(tmp_path / "absent")


@settings(max_examples=EXAMPLES, deadline=DEADLINE)
@given(
    hostile_json(
        {"algorithm": "sm2", "root": {"public_key": "r.pub"}, "trust_list": "t", "token_key": "k"}
    )
)
def test_load_world_is_total(tmp_path_factory: pytest.TempPathFactory, raw: bytes) -> None:
    directory = tmp_path_factory.mktemp("world", numbered=True)
    (directory / "manifest.json").write_bytes(raw)
    total(load_world, directory, ConfigError)


def test_a_key_file_that_is_not_hex_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "root.pub"
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not one line of hex"):
        read_hex_key_file(path, "root public key")
    path.write_bytes(b"04" * 5000)
    with pytest.raises(ConfigError, match="larger than"):
        read_hex_key_file(path, "root public key")
