"""Signed published documents (docs/sync.md): canonical form, signature, key id, kind, and
refusal of every alteration."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from terminal.crypto import signing
from terminal.crypto.signing import Algorithm
from terminal.crypto.sm2 import sm3
from terminal.errors import ConfigError
from terminal.wire.canonical import canonical_json
from terminal.wire.document import (
    DocumentError,
    key_id,
    parse_document,
    sign_document,
    verify_document,
)

BODY: dict[str, Any] = {
    "kind": "applist",
    "version": 3,
    "services": [
        {
            "code": "museum-entry",
            "name": "重庆自然博物馆",
            "scope": "sichuan-chongqing",
            "valid_from": "2025-01-01",
            "category_fares": {"4": 0, "2": 100},
        }
    ],
}


@cache
def _key(alg: Algorithm) -> signing.PrivateKey:
    return signing.generate_private_key(alg)


def key(alg: Algorithm = Algorithm.SM2) -> signing.PrivateKey:
    return _key(alg)


def pub(alg: Algorithm = Algorithm.SM2) -> bytes:
    return signing.public_key_bytes(key(alg))


@cache
def _signed(alg: Algorithm) -> bytes:
    return sign_document(BODY, key(alg), alg)


def signed(alg: Algorithm = Algorithm.SM2) -> bytes:
    return _signed(alg)


def resign_raw(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


@pytest.mark.parametrize("alg", list(Algorithm))
def test_round_trip(alg: Algorithm) -> None:
    raw = signed(alg)
    assert verify_document(raw, pub(alg), alg, "applist") == BODY
    assert verify_document(raw, pub(alg), alg.value, "applist") == BODY


def test_signed_form_is_canonical_and_names_the_key() -> None:
    raw = signed()
    obj = json.loads(raw)
    assert raw == canonical_json(obj)
    assert obj["signature"]["algorithm"] == "sm2"
    assert obj["signature"]["key_id"] == sm3(pub())[:8].hex() == key_id(pub())
    assert len(obj["signature"]["value"]) == 128
    assert "重庆" in raw.decode()  # ensure_ascii=False: UTF-8, not \u escapes


def test_verification_does_not_depend_on_layout() -> None:
    # A document pretty-printed or reordered in transit still carries the same signed body.
    obj = json.loads(signed())
    pretty = json.dumps(dict(reversed(list(obj.items()))), indent=2).encode()
    assert verify_document(pretty, pub(), Algorithm.SM2, "applist") == BODY


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj)
    for k, v in items:
        if isinstance(v, dict | list) and v:
            out.extend(_paths(v, (*prefix, k)))
        else:
            out.append((*prefix, k))
    return out


def _tamper(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return 1
    if isinstance(value, int):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    return [value]


@pytest.mark.parametrize("path", _paths(BODY))
def test_any_altered_field_is_refused(path: tuple[Any, ...]) -> None:
    obj = json.loads(signed())
    node = obj
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = _tamper(node[path[-1]])
    with pytest.raises(DocumentError, match="does not verify"):
        verify_document(resign_raw(obj), pub(), Algorithm.SM2, "applist")


def test_added_and_removed_fields_are_refused() -> None:
    obj = json.loads(signed())
    obj["extra"] = 1
    with pytest.raises(DocumentError, match="does not verify"):
        verify_document(resign_raw(obj), pub(), Algorithm.SM2, "applist")
    obj = json.loads(signed())
    del obj["services"][0]["category_fares"]
    with pytest.raises(DocumentError, match="does not verify"):
        verify_document(resign_raw(obj), pub(), Algorithm.SM2, "applist")


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_flipped_byte_is_refused(data: st.DataObject) -> None:
    raw = bytearray(signed())
    pos = data.draw(st.integers(0, len(raw) - 1))
    bit = data.draw(st.integers(0, 7))
    raw[pos] ^= 1 << bit
    try:
        body = verify_document(bytes(raw), pub(), Algorithm.SM2, "applist")
    except DocumentError:
        return
    # A flip that survives can only be one JSON ignores (e.g. the case of a hex digit in the
    # signature or key id): the body must then be exactly the signed one.
    assert body == BODY


def test_unsigned_is_refused() -> None:
    with pytest.raises(DocumentError, match="not signed"):
        verify_document(canonical_json(BODY), pub(), Algorithm.SM2, "applist")


def test_wrong_key_is_refused() -> None:
    other = signing.generate_private_key(Algorithm.SM2)
    raw = sign_document(BODY, other, Algorithm.SM2)
    with pytest.raises(DocumentError, match="signed by key"):
        verify_document(raw, pub(), Algorithm.SM2, "applist")
    # Even with the key id forged to name the publication key, the signature fails.
    obj = json.loads(raw)
    obj["signature"]["key_id"] = key_id(pub())
    with pytest.raises(DocumentError, match="does not verify"):
        verify_document(resign_raw(obj), pub(), Algorithm.SM2, "applist")


def test_wrong_algorithm_is_refused() -> None:
    raw = signed(Algorithm.ECDSA_P256)
    with pytest.raises(DocumentError, match="signed with 'ecdsa-p256'"):
        verify_document(raw, pub(), Algorithm.SM2, "applist")


def test_wrong_kind_is_refused() -> None:
    with pytest.raises(DocumentError, match="kind 'applist', expected 'trustlist'"):
        verify_document(signed(), pub(), Algorithm.SM2, "trustlist")


@pytest.mark.parametrize("version", [0, -1, "3", 1.5, True, None])
def test_bad_version_is_refused(version: Any) -> None:
    body = dict(BODY, version=version)
    if version is None:
        del body["version"]
    raw = sign_document(body, key(), Algorithm.SM2)
    with pytest.raises(DocumentError, match="version"):
        verify_document(raw, pub(), Algorithm.SM2, "applist")


@pytest.mark.parametrize(
    "signature",
    [
        "abc",
        {"algorithm": "sm2", "key_id": "00"},
        {"algorithm": "sm2", "key_id": "00", "value": "00", "extra": 1},
        {"algorithm": "sm2", "key_id": 1, "value": "00" * 64},
        {"algorithm": "sm2", "key_id": "00", "value": "zz" * 64},
        {"algorithm": "sm2", "key_id": "00", "value": "00" * 63},
        {"algorithm": "sm2", "key_id": "00", "value": "00 " * 42 + "00"},
    ],
)
def test_malformed_signature_is_refused(signature: Any) -> None:
    obj = dict(BODY, signature=signature)
    with pytest.raises(DocumentError):
        verify_document(resign_raw(obj), pub(), Algorithm.SM2, "applist")


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"[]",
        b'"applist"',
        b"{",
        b"\xff\xfe{}",
        b'{"kind": "applist", "kind": "applist"}',
        b'{"version": NaN}',
        b"[" * 100_000,
        "{}".encode("utf-16"),
    ],
)
def test_malformed_json_is_refused(raw: bytes) -> None:
    with pytest.raises(DocumentError):
        verify_document(raw, pub(), Algorithm.SM2, "applist")


def test_duplicate_key_smuggling_is_refused() -> None:
    # The signed body says version 3; a second "version" appended after the signature must
    # not be what the terminal acts on.
    raw = signed()[:-1] + b',"version":99}'
    with pytest.raises(DocumentError, match="duplicate key 'version'"):
        verify_document(raw, pub(), Algorithm.SM2, "applist")


def test_non_bytes_is_refused() -> None:
    with pytest.raises(DocumentError, match="must be bytes"):
        parse_document("{}")  # type: ignore[arg-type]


def test_unusable_publication_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        verify_document(signed(), b"\x04" + bytes(64), Algorithm.SM2, "applist")
    with pytest.raises(ConfigError):
        verify_document(signed(), pub(), "rsa", "applist")


def test_signing_a_signed_body_is_refused() -> None:
    with pytest.raises(DocumentError):
        sign_document(dict(BODY, signature={}), key(), Algorithm.SM2)
