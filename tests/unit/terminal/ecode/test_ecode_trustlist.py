"""The signed trust list of issuer keys: round trip, and every way it fails closed."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from firmware_sim.ecode_issuing import issuer_entry, make_issuer_key, make_trust_list
from terminal.crypto.signing import Algorithm, generate_private_key, public_key_bytes, sign
from terminal.ecode.trustlist import (
    IssuerStatus,
    canonical_bytes,
    load_trust_list,
    parse_trust_list,
    sign_trust_list,
)
from terminal.errors import OneCardError, TrustListError

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
T1 = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module", params=list(Algorithm), ids=lambda a: a.value)
def world(request: pytest.FixtureRequest) -> dict[str, object]:
    alg = request.param
    root = generate_private_key(alg)
    active, _ = make_issuer_key(alg)
    revoked, _ = make_issuer_key(Algorithm.ECDSA_P256)  # a list may mix algorithms
    entries = [
        issuer_entry(active, alg, T0, T1),
        issuer_entry(revoked, Algorithm.ECDSA_P256, T0, T1, IssuerStatus.REVOKED),
    ]
    data = make_trust_list(root, alg, entries, version=3, issued_at=T0)
    return {
        "alg": alg,
        "root": root,
        "pub": public_key_bytes(root),
        "entries": entries,
        "data": data,
    }


def test_round_trip(world: dict) -> None:
    tl = parse_trust_list(world["data"], world["pub"], world["alg"])
    assert tl.version == 3
    assert tl.issued_at == T0
    for entry in world["entries"]:
        assert tl.issuer(entry.key_id) == entry
    assert tl.issuer(b"\x00" * 8) is None
    assert tl.issuer(world["entries"][1].key_id).status is IssuerStatus.REVOKED
    assert tl.issuer(world["entries"][0].key_id).valid_at(T0.timestamp() + 10)
    assert not tl.issuer(world["entries"][0].key_id).valid_at(T1.timestamp() + 1)


def test_load_from_file(world: dict, tmp_path: Path) -> None:
    path = tmp_path / "trust-list.json"
    path.write_bytes(world["data"])
    assert load_trust_list(path, world["pub"], world["alg"]).version == 3
    with pytest.raises(TrustListError, match="cannot read"):
        load_trust_list(tmp_path / "missing.json", world["pub"], world["alg"])


def _resign(world: dict, doc: dict) -> bytes:
    doc = dict(doc)
    doc["signature"] = dict(doc["signature"])
    doc["signature"]["value"] = sign(world["alg"], world["root"], canonical_bytes(doc)).hex()
    return json.dumps(doc).encode()


def test_unsigned(world: dict) -> None:
    doc = json.loads(world["data"])
    del doc["signature"]
    with pytest.raises(TrustListError, match="not signed"):
        parse_trust_list(json.dumps(doc).encode(), world["pub"], world["alg"])


def test_tampered(world: dict) -> None:
    doc = json.loads(world["data"])
    doc["issuers"][1]["status"] = "active"  # un-revoke a key
    with pytest.raises(TrustListError, match="does not verify"):
        parse_trust_list(json.dumps(doc).encode(), world["pub"], world["alg"])
    doc = json.loads(world["data"])
    doc["version"] = 4
    with pytest.raises(TrustListError, match="does not verify"):
        parse_trust_list(json.dumps(doc).encode(), world["pub"], world["alg"])


def test_formatting_does_not_matter(world: dict) -> None:
    doc = json.loads(world["data"])
    compact = json.dumps(doc, separators=(",", ":")).encode()
    assert parse_trust_list(compact, world["pub"], world["alg"]).version == 3


def test_other_root(world: dict) -> None:
    other = public_key_bytes(generate_private_key(world["alg"]))
    with pytest.raises(TrustListError, match="not by the root key"):
        parse_trust_list(world["data"], other, world["alg"])
    wrong_alg = next(a for a in Algorithm if a is not world["alg"])
    with pytest.raises(TrustListError, match="root key is"):
        parse_trust_list(world["data"], world["pub"], wrong_alg)


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (lambda d: d.update(version=0), "version"),
        (lambda d: d.update(version=True), "version"),
        (lambda d: d.update(version="3"), "version"),
        (lambda d: d.update(issued_at="yesterday"), "ISO 8601"),
        (lambda d: d.update(issued_at="2026-01-01T00:00:00"), "time zone"),
        (lambda d: d.update(issuers={}), "list"),
        (lambda d: d["issuers"].append(d["issuers"][0]), "repeats"),
        (lambda d: d["issuers"][0].update(key_id="00" * 8), "key id of its public key"),
        (lambda d: d["issuers"][0].update(key_id="zz" * 8), "hex"),
        (lambda d: d["issuers"][0].update(public_key="04" + "00" * 64), "public_key"),
        (lambda d: d["issuers"][0].update(algorithm="rsa"), "algorithm"),
        (lambda d: d["issuers"][0].update(status="paused"), "status"),
        (lambda d: d["issuers"][0].update(not_after="2020-01-01T00:00:00+00:00"), "ends before"),
        (lambda d: d["issuers"][0].pop("not_before"), "lacks not_before"),
        (lambda d: d["issuers"].append("x"), "not an object"),
    ],
)
def test_malformed_even_when_signed(world: dict, edit, why: str) -> None:
    doc = json.loads(world["data"])
    edit(doc)
    with pytest.raises(TrustListError, match=why):
        parse_trust_list(_resign(world, doc), world["pub"], world["alg"])


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xfe",
        b"[]",
        b'{"signature": 1}',
        b'{"version": NaN, "signature": {}}',
        b"[" * 100_000,
        b'{"signature": {"algorithm": "sm2", "key_id": "00", "value": "00"}}',
    ],
)
def test_garbage(world: dict, data: bytes) -> None:
    with pytest.raises(TrustListError):
        parse_trust_list(data, world["pub"], world["alg"])


def test_signing_refuses_bad_input(world: dict) -> None:
    with pytest.raises(TrustListError):
        sign_trust_list(world["entries"], 0, world["root"], world["alg"])
    naive = dt.datetime(2026, 1, 1)
    with pytest.raises(TrustListError):
        sign_trust_list(world["entries"], 1, world["root"], world["alg"], naive)
    assert issubclass(TrustListError, OneCardError)
