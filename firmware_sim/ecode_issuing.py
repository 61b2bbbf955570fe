"""Issuing side of the electronic social security card code (docs/ecode.md).

What an app platform and the back office do, in software: make issuer keys, sign codes
for a card, sign the trust list with the root key, and write a small "e-code world" into a
directory for tests and the demo (:func:`issue_ecode_world`). Keys are files of hex
(the 32-byte scalar of a private key, the ``04 || X || Y`` public key); private key files
and the card token key are created with mode 0600.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Iterable
from pathlib import Path

from terminal.crypto.signing import (
    Algorithm,
    PrivateKey,
    generate_private_key,
    load_private_key,
    private_key_bytes,
    public_key_bytes,
)
from terminal.ecode.payload import DEFAULT_VALIDITY, NONCE_LENGTH, CodePayload, sign_code
from terminal.ecode.trustlist import IssuerKey, IssuerStatus, sign_trust_list
from terminal.host.secretfile import write_secret_file
from terminal.pki.certificate import key_id as public_key_id
from terminal.ssc.fields import CardCategory

Category = CardCategory | str | int


def make_issuer_key(alg: Algorithm = Algorithm.SM2) -> tuple[PrivateKey, bytes]:
    """A fresh issuer key and its 8-byte key id (SM3 of the public key, first 8 bytes)."""
    key = generate_private_key(alg)
    return key, public_key_id(public_key_bytes(key))


def issuer_entry(
    private_key: PrivateKey,
    alg: Algorithm,
    not_before: dt.datetime,
    not_after: dt.datetime,
    status: IssuerStatus = IssuerStatus.ACTIVE,
) -> IssuerKey:
    """The trust list entry of an issuer key (times must carry a time zone)."""
    public = public_key_bytes(private_key)
    return IssuerKey(public_key_id(public), alg, public, not_before, not_after, status)


def _category(value: Category) -> CardCategory:
    if isinstance(value, CardCategory):
        return value
    return CardCategory(str(value))


def issue_code(
    private_key: PrivateKey,
    key_id: bytes,
    alg: Algorithm,
    region: str,
    card: str | bytes,
    category: Category,
    issued_at: int,
    validity: int = DEFAULT_VALIDITY,
    scope: str | None = None,
    nonce: bytes | None = None,
) -> str:
    """A signed code text for a card: ``card`` is the 9-character card number (str) or the
    16-byte card token (bytes). ``nonce`` defaults to 8 fresh random bytes."""
    payload = CodePayload(
        algorithm=alg,
        issuer_key_id=key_id,
        region=region,
        category=_category(category),
        issued_at=int(issued_at),
        card_number=card if isinstance(card, str) else None,
        card_token=bytes(card) if isinstance(card, bytes | bytearray) else None,
        validity=validity,
        nonce=secrets.token_bytes(NONCE_LENGTH) if nonce is None else nonce,
        scope=scope,
    )
    return sign_code(payload, private_key, alg)


def make_trust_list(
    root_key: PrivateKey,
    root_alg: Algorithm,
    issuers: Iterable[IssuerKey],
    version: int = 1,
    issued_at: dt.datetime | None = None,
) -> bytes:
    """A trust list file naming ``issuers``, signed by the back office's root key."""
    return sign_trust_list(issuers, version, root_key, root_alg, issued_at)


# --- key files ------------------------------------------------------------------------------


def write_secret(path: Path, text: str) -> None:
    """Write an operator secret with mode 0600 (also when the file existed before)."""
    write_secret_file(path, text)


def read_private_key(path: str | Path, alg: Algorithm) -> PrivateKey:
    """A private key from a file of 64 hex digits."""
    return load_private_key(alg, bytes.fromhex(Path(path).read_text().strip()))


def read_public_key(path: str | Path) -> bytes:
    """A public key ``04 || X || Y`` from a file of 130 hex digits."""
    return bytes.fromhex(Path(path).read_text().strip())


def _write_key_pair(out: Path, name: str, key: PrivateKey) -> dict[str, str]:
    write_secret(out / f"{name}.key", private_key_bytes(key).hex() + "\n")
    (out / f"{name}.pub").write_text(public_key_bytes(key).hex() + "\n")
    return {
        "private_key": str(out / f"{name}.key"),
        "public_key": str(out / f"{name}.pub"),
        "key_id": public_key_id(public_key_bytes(key)).hex(),
    }


def issue_ecode_world(
    out_dir: str | Path,
    alg: Algorithm = Algorithm.SM2,
    now: dt.datetime | None = None,
    version: int = 1,
) -> dict[str, object]:
    """Write a small e-code world into ``out_dir`` and return its manifest (also written as
    ``manifest.json``): the root key pair; an active issuer, a revoked issuer and an issuer
    the trust list does not name (for UNKNOWN_ISSUER), all of algorithm ``alg``; the signed
    trust list; a card token key; and a sample card (region, number, category)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    when = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    not_before = when - dt.timedelta(days=1)
    not_after = when + dt.timedelta(days=365)

    root = generate_private_key(alg)
    issuer, _ = make_issuer_key(alg)
    revoked, _ = make_issuer_key(alg)
    unknown, _ = make_issuer_key(alg)
    entries = [
        issuer_entry(issuer, alg, not_before, not_after),
        issuer_entry(revoked, alg, not_before, not_after, IssuerStatus.REVOKED),
    ]
    trust_list = out / "trust-list.json"
    trust_list.write_bytes(make_trust_list(root, alg, entries, version, when))
    write_secret(out / "token.key", secrets.token_bytes(32).hex() + "\n")

    manifest: dict[str, object] = {
        "algorithm": alg.value,
        "root": _write_key_pair(out, "root", root),
        "issuer": _write_key_pair(out, "issuer", issuer),
        "revoked_issuer": _write_key_pair(out, "issuer-revoked", revoked),
        "unknown_issuer": _write_key_pair(out, "issuer-unknown", unknown),
        "trust_list": str(trust_list),
        "trust_list_version": version,
        "token_key": str(out / "token.key"),
        "card": {"region": "500101", "card_number": "D2143569X", "category": "3"},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest
