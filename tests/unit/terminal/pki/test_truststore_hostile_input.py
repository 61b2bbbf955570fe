"""The operator's trust store file gives a store or a ConfigError for any input, within a
time and memory bound (issue 17: a 4,301-digit version raised ``ValueError``, deep nesting
``RecursionError``, and a key given twice was taken)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from helpers.hostile import DEADLINE, EXAMPLES, LARGE_INPUTS, bounded, hostile_json, nested, total
from hypothesis import given, settings

from firmware_sim.pki_issuing import make_hierarchy
from terminal.crypto.signing import Algorithm
from terminal.errors import ConfigError
from terminal.pki.truststore import dump_trust_store, load_trust_store, parse_trust_store

TODAY = dt.date(2025, 6, 1)
_H = make_hierarchy(Algorithm.ECDSA_P256, "510104D15600000520000002A1B2C3D4", TODAY)
GOOD = dump_trust_store([_H.root_cert], [_H.issuer_cert], [b"\x01" * 8])


def parse(raw: bytes) -> object:
    return parse_trust_store(raw, TODAY)


def test_the_good_store_parses_from_text_and_bytes() -> None:
    assert parse_trust_store(GOOD, TODAY) == parse(GOOD.encode())


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"version": ' + b"1" * 4301 + b"}", "more than 4300 digits"),  # was ValueError
        (nested(100_000).encode(), "nested more than 64"),  # was RecursionError
        (b'{"version": 1e400}', "out of the range of a double"),
        (b'{"version": 1, "roots": ["\\ud800"]}', "lone surrogate"),
        (b'{"version": 1, "revoked_issuers": [], "revoked_issuers": ["0101010101010101"]}', "dup"),
        (b"\xff", "not UTF-8"),  # was UnicodeDecodeError from load_trust_store
    ],
    ids=["4301 digits", "deep", "1e400", "lone surrogate", "key twice", "not UTF-8"],
)
def test_inputs_that_leaked_are_config_errors(raw: bytes, reason: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=reason):
        parse(raw)
    path = tmp_path / "trust.json"
    path.write_bytes(raw)
    with pytest.raises(ConfigError, match=reason) as info:
        load_trust_store(path, TODAY)
    assert info.value.reason.startswith(str(path))


@settings(max_examples=EXAMPLES, deadline=DEADLINE)
@given(hostile_json(json.loads(GOOD)))
def test_parse_trust_store_is_total(raw: bytes) -> None:
    total(parse, raw, ConfigError)


@pytest.mark.parametrize("name", sorted(LARGE_INPUTS))
def test_large_inputs_are_refused_within_bounds(name: str) -> None:
    bounded(lambda: total(parse, LARGE_INPUTS[name], ConfigError))
