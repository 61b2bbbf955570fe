"""The electronic-card trust list: the issuer keys a terminal accepts codes from.

A JSON file the back office publishes and signs with its root key (docs/ecode.md, "Trust
list")::

    {"version": 7, "issued_at": "2026-01-01T00:00:00+00:00",
     "issuers": [{"key_id": "<16 hex>", "algorithm": "sm2", "public_key": "<130 hex>",
                  "not_before": "<ISO 8601>", "not_after": "<ISO 8601>",
                  "status": "active"}],
     "signature": {"algorithm": "sm2", "key_id": "<16 hex>", "value": "<128 hex>"}}

The signature covers the canonical encoding of the document without ``signature``
(:func:`terminal.wire.canonical.canonical_json`: sorted keys, no spaces, UTF-8 with no ASCII
escaping, finite numbers only).
The terminal re-encodes what it parsed and verifies that, so what is verified is exactly
what is used. Loading fails closed: no signature, a signature by another key or one that
does not verify, or any malformed field is a :class:`TrustListError` - never a list that
trusts more or less than the signed file says. Key ids are the project's key id (first 8
bytes of SM3 of ``04 || X || Y``, :func:`terminal.pki.certificate.key_id`); ``version`` is
an integer that only grows (the back office refuses a rollback).
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from terminal.crypto.signing import (
    Algorithm,
    PrivateKey,
    check_public_key,
    public_key_bytes,
    sign,
    verify,
)
from terminal.errors import CryptoError, SignatureFormatError, TrustListError
from terminal.pki.certificate import key_id as public_key_id
from terminal.wire.canonical import JsonError, canonical_json, parse_json

KEY_ID_LENGTH = 8
MAX_FILE_SIZE = 1 << 20
_ISSUER_FIELDS = ("key_id", "algorithm", "public_key", "not_before", "not_after", "status")


class IssuerStatus(enum.Enum):
    """Whether the back office still stands behind an issuer key."""

    ACTIVE = "active"
    REVOKED = "revoked"


@dataclass(frozen=True)
class IssuerKey:
    """One issuer key of the trust list: the key an app platform signs codes with."""

    key_id: bytes
    algorithm: Algorithm
    public_key: bytes
    not_before: dt.datetime
    not_after: dt.datetime
    status: IssuerStatus

    def valid_at(self, when: float) -> bool:
        """True when ``when`` (Unix seconds) lies in ``[not_before, not_after]``."""
        return self.not_before.timestamp() <= when <= self.not_after.timestamp()

    def to_json(self) -> dict[str, str]:
        return {
            "key_id": self.key_id.hex(),
            "algorithm": self.algorithm.value,
            "public_key": self.public_key.hex(),
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "status": self.status.value,
        }


@dataclass(frozen=True)
class TrustList:
    """A verified trust list: issuer keys by key id, and the list's version."""

    version: int
    issued_at: dt.datetime
    issuers: Mapping[bytes, IssuerKey]

    def issuer(self, key_id: bytes) -> IssuerKey | None:
        """The issuer key of ``key_id``, or None when the list does not name it."""
        return self.issuers.get(bytes(key_id))


# --- canonical form and signing -------------------------------------------------------------


def canonical_bytes(document: Mapping[str, Any]) -> bytes:
    """The bytes the root key signs: the document without ``signature``, canonical JSON."""
    return canonical_json({k: v for k, v in document.items() if k != "signature"})


def _iso(value: dt.datetime) -> str:
    if value.tzinfo is None:
        raise TrustListError("trust list times must carry a time zone")
    return value.isoformat()


def sign_trust_list(
    issuers: Iterable[IssuerKey],
    version: int,
    root_key: PrivateKey,
    root_alg: Algorithm,
    issued_at: dt.datetime | None = None,
) -> bytes:
    """A signed trust list file (UTF-8 JSON) naming ``issuers``, signed by the root key.

    ``issued_at`` defaults to the current UTC time (an issuing-side tool, not the terminal).
    """
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise TrustListError("trust list version must be a positive integer")
    when = issued_at or dt.datetime.now(dt.UTC).replace(microsecond=0)
    entries = []
    for key in issuers:
        entry = key.to_json()
        entry["not_before"] = _iso(key.not_before)
        entry["not_after"] = _iso(key.not_after)
        entries.append(entry)
    doc: dict[str, Any] = {
        "kind": "trustlist",
        "version": version,
        "issued_at": _iso(when),
        "issuers": entries,
    }
    _parse_unsigned(doc)  # refuse to sign what no terminal would load
    root_public = public_key_bytes(root_key)
    doc["signature"] = {
        "algorithm": root_alg.value,
        "key_id": public_key_id(root_public).hex(),
        "value": sign(root_alg, root_key, canonical_bytes(doc)).hex(),
    }
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8")


# --- parsing --------------------------------------------------------------------------------


def _hex(value: object, length: int, what: str) -> bytes:
    if not isinstance(value, str):
        raise TrustListError(f"{what} must be a hex string")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise TrustListError(f"{what} is not hex") from None
    if len(raw) != length or len(value) != 2 * length:
        raise TrustListError(f"{what} must be {length} bytes")
    return raw


def _time(value: object, what: str) -> dt.datetime:
    if not isinstance(value, str):
        raise TrustListError(f"{what} must be an ISO 8601 string")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise TrustListError(f"{what} {value[:40]!r} is not ISO 8601") from None
    if parsed.tzinfo is None:
        raise TrustListError(f"{what} {value[:40]!r} has no time zone")
    return parsed


def _algorithm(value: object, what: str) -> Algorithm:
    try:
        return Algorithm(value)
    except ValueError:
        raise TrustListError(f"{what} {repr(value)[:40]} is not sm2 or ecdsa-p256") from None


def _parse_issuer(raw: object, index: int) -> IssuerKey:
    where = f"issuers[{index}]"
    if not isinstance(raw, dict):
        raise TrustListError(f"{where} is not an object")
    missing = [name for name in _ISSUER_FIELDS if name not in raw]
    if missing:
        raise TrustListError(f"{where} lacks {', '.join(missing)}")
    key_id = _hex(raw["key_id"], KEY_ID_LENGTH, f"{where}.key_id")
    alg = _algorithm(raw["algorithm"], f"{where}.algorithm")
    public_key = _hex(raw["public_key"], 65, f"{where}.public_key")
    try:
        check_public_key(alg, public_key)
    except (SignatureFormatError, CryptoError) as exc:
        raise TrustListError(f"{where}.public_key: {exc.reason}") from None
    if public_key_id(public_key) != key_id:
        raise TrustListError(f"{where}.key_id is not the key id of its public key")
    not_before = _time(raw["not_before"], f"{where}.not_before")
    not_after = _time(raw["not_after"], f"{where}.not_after")
    if not_after < not_before:
        raise TrustListError(f"{where} ends before it begins")
    try:
        status = IssuerStatus(raw["status"])
    except ValueError:
        status = repr(raw["status"])[:40]
        raise TrustListError(f"{where}.status {status} is not active/revoked") from None
    return IssuerKey(key_id, alg, public_key, not_before, not_after, status)


def trust_list_from_body(doc: Mapping[str, Any]) -> TrustList:
    """The trust list in a document whose signature was already verified (a download the
    terminal's document store checked against the back office's publication key)."""
    return _parse_unsigned(doc)


def _parse_unsigned(doc: Mapping[str, Any]) -> TrustList:
    version = doc.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise TrustListError("version must be a positive integer")
    issued_at = _time(doc.get("issued_at"), "issued_at")
    raw_issuers = doc.get("issuers")
    if not isinstance(raw_issuers, list):
        raise TrustListError("issuers must be a list")
    issuers: dict[bytes, IssuerKey] = {}
    for i, raw in enumerate(raw_issuers):
        key = _parse_issuer(raw, i)
        if key.key_id in issuers:
            raise TrustListError(f"issuers[{i}] repeats key id {key.key_id.hex()}")
        issuers[key.key_id] = key
    return TrustList(version, issued_at, MappingProxyType(issuers))


def parse_trust_list(data: bytes, root_public_key: bytes, root_alg: Algorithm) -> TrustList:
    """Verify and parse a trust list file under the back office's root public key
    (``04 || X || Y``). Any failure is a :class:`TrustListError` with the reason."""
    if not isinstance(data, bytes | bytearray):
        raise TrustListError("trust list must be bytes")
    if len(data) > MAX_FILE_SIZE:
        raise TrustListError(f"trust list is larger than {MAX_FILE_SIZE} bytes")
    try:
        # The one strict reader: a key given twice, a 1e400 or a 4,301-digit version are
        # refused here, before anything is verified or used.
        doc = parse_json(data)
    except JsonError as exc:
        raise TrustListError(f"trust list is not strict JSON: {exc.reason}") from None
    if not isinstance(doc, dict):
        raise TrustListError("trust list is not a JSON object")
    sig = doc.get("signature")
    if sig is None:
        raise TrustListError("trust list is not signed")
    if not isinstance(sig, dict):
        raise TrustListError("signature must be an object")
    alg = _algorithm(sig.get("algorithm"), "signature.algorithm")
    if alg is not root_alg:
        raise TrustListError(f"signed with {alg.value}, the root key is {root_alg.value}")
    signer = _hex(sig.get("key_id"), KEY_ID_LENGTH, "signature.key_id")
    if signer != public_key_id(root_public_key):
        raise TrustListError(f"signed by key {signer.hex()}, not by the root key")
    value = _hex(sig.get("value"), 64, "signature.value")
    try:
        good = verify(root_alg, root_public_key, canonical_bytes(doc), value)
    except (SignatureFormatError, CryptoError) as exc:
        raise TrustListError(f"root public key unusable: {exc.reason}") from None
    except JsonError as exc:  # what was read has a canonical form; kept typed all the same
        raise TrustListError(f"trust list cannot be canonicalised: {exc.reason}") from None
    if not good:
        raise TrustListError("trust list signature does not verify under the root key")
    return _parse_unsigned(doc)


def load_trust_list(path: str | Path, root_public_key: bytes, root_alg: Algorithm) -> TrustList:
    """Read, verify and parse the trust list file at ``path`` (see :func:`parse_trust_list`)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_SIZE + 1)
    except OSError as exc:
        raise TrustListError(f"cannot read trust list {path}: {exc.strerror}") from None
    return parse_trust_list(data, root_public_key, root_alg)
