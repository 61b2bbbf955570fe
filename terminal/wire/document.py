"""Signed documents the back office publishes (docs/sync.md, "Published documents").

A published document is one JSON object - the hotlist delta, the e-code trust list, the
application list, the rail fare table, a venue's reservations, a scenic area's passes -
with a ``kind``, a ``version`` and a ``signature``::

    {"kind": "applist", "version": 7, ..., "signature":
        {"algorithm": "sm2", "key_id": "<16 hex>", "value": "<128 hex r||s>"}}

The signature covers the canonical JSON of the object without ``signature``. ``key_id`` is
the first 8 bytes of SM3 over the publication public key (``04 || X || Y``), hex: it names
the key, so a document signed by another key is refused as such rather than as "bad
signature".

The document is read under the canonical-JSON rules (:mod:`terminal.wire.canonical`), so a
``NaN``, a ``1e400``, a duplicated key or a lone surrogate is a :class:`DocumentError` like
any other refusal, before the signature is even looked at. The back office signs with
:func:`document_signature` and the terminal verifies with :func:`verify_document`.

Pure: bytes in, a dict or a :class:`DocumentError` out. Nothing here touches a file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from terminal.crypto import signing
from terminal.crypto.signing import Algorithm, PrivateKey
from terminal.crypto.sm2 import sm3
from terminal.errors import ConfigError, CryptoError, OneCardError, SignatureFormatError
from terminal.wire.canonical import JsonError, canonical_json, parse_json

KIND_HOTLIST = "hotlist-delta"
KIND_TRUSTLIST = "trustlist"
KIND_APPLIST = "applist"
KIND_FARES = "fares"
"""The rail fare table and its stations (:mod:`terminal.transit.fares`)."""
KIND_RESERVATIONS = "reservations"
"""A venue's real-name time-slot reservations (:mod:`terminal.venue.reservations`)."""
KIND_PASSES = "passes"
"""A scenic area's annual passes bound to cards (:mod:`terminal.venue.passes`)."""
HOTLIST_DELTA_FIELDS = frozenset({"kind", "version", "base", "added", "removed"})
"""``{"kind": "hotlist-delta", "version": W, "base": V, "added": [...], "removed": [...]}``."""
HOTLIST_ENTRY_HEX = 16
"""A hotlist entry: the first 8 bytes of a card token, hex."""

SIGNATURE_FIELD = "signature"
KEY_ID_LENGTH = 8
SIGNATURE_LENGTH = 64
# A document far larger than a full provincial hotlist (10 million entries of 19 bytes in
# JSON is about 190 MB) is not one the back office published.
MAX_DOCUMENT_BYTES = 512 * 1024 * 1024

_SIGNATURE_KEYS = frozenset({"algorithm", "key_id", "value"})


class DocumentError(OneCardError):
    """A published document the terminal refuses: malformed, unsigned, signed by another
    key, a signature that does not verify, the wrong ``kind``, or content that breaks its
    format. A refused document changes nothing: the previous one stays in force."""

    code = "bad_document"


ENVELOPE_KEYS = frozenset({"kind", "version", SIGNATURE_FIELD})
"""The keys a verified document's body may still carry besides its content."""


def check_body_keys(
    body: object,
    kind: str,
    keys: frozenset[str],
    error: type[DocumentError],
    what: str,
) -> int:
    """The version of a document body with exactly ``keys`` (besides :data:`ENVELOPE_KEYS`):
    an object, nothing unknown, nothing missing, ``kind`` (if present) ``kind``, ``version``
    (if present) a non-negative integer; else ``error`` naming what is wrong with ``what``.
    The one envelope check of the documents parsed beside the application list."""
    if not isinstance(body, Mapping):
        raise error(f"{what} must be an object")
    unknown = body.keys() - keys - ENVELOPE_KEYS
    if unknown:
        raise error(f"{what} has unknown keys {sorted(unknown)!r}")
    missing = keys - body.keys()
    if missing:
        raise error(f"{what} lacks {sorted(missing)!r}")
    if "kind" in body and body["kind"] != kind:
        raise error(f"kind must be {kind!r}, not {body['kind']!r}")
    version = body.get("version", 0)
    if type(version) is not int or version < 0:
        raise error(f"version must be a positive integer, not {version!r}")
    return version


class StaleDocumentError(DocumentError):
    """An authentic document whose ``version`` is not newer than the one in force (a
    rollback, or the same document delivered again). ``identical`` is True when it is the
    very document already in force - nothing new, rather than an attack."""

    code = "stale_document"

    def __init__(self, reason: str, version: int, current: int, identical: bool = False) -> None:
        super().__init__(reason)
        self.version = version
        self.current = current
        self.identical = identical

    def to_json(self) -> dict[str, object]:
        out = super().to_json()
        out.update(version=self.version, current=self.current, identical=self.identical)
        return out


def key_id(public_key: bytes) -> str:
    """The key id of a publication public key: first 8 bytes of SM3(``04 || X || Y``), hex."""
    return sm3(bytes(public_key))[:KEY_ID_LENGTH].hex()


def _algorithm(algorithm: Algorithm | str) -> Algorithm:
    if isinstance(algorithm, Algorithm):
        return algorithm
    try:
        return Algorithm(algorithm)
    except ValueError:
        raise ConfigError(f"unknown publication algorithm {algorithm!r}") from None


def parse_document(raw: bytes) -> dict[str, Any]:
    """Read ``raw`` as one JSON object under the canonical-JSON rules
    (:func:`terminal.wire.canonical.parse_json`: UTF-8, no duplicate keys, finite numbers...).
    Raises only :class:`DocumentError`."""
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise DocumentError("document must be bytes")
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise DocumentError(f"document of {len(raw)} bytes exceeds {MAX_DOCUMENT_BYTES}")
    try:
        obj = parse_json(raw)
    except JsonError as exc:
        raise DocumentError(f"document refused: {exc.reason}") from exc
    if not isinstance(obj, dict):
        raise DocumentError("document must be a JSON object")
    return obj


def _signature_fields(obj: Mapping[str, Any]) -> tuple[str, str, bytes]:
    sig = obj.get(SIGNATURE_FIELD)
    if sig is None:
        raise DocumentError("document is not signed")
    if not isinstance(sig, dict) or set(sig) != _SIGNATURE_KEYS:
        raise DocumentError("signature must be an object with algorithm, key_id and value")
    alg, kid, value = sig["algorithm"], sig["key_id"], sig["value"]
    if not all(isinstance(v, str) for v in (alg, kid, value)):
        raise DocumentError("signature algorithm, key_id and value must be strings")
    if len(value) != 2 * SIGNATURE_LENGTH:
        raise DocumentError(f"signature value must be {2 * SIGNATURE_LENGTH} hex digits")
    try:
        raw_sig = bytes.fromhex(value)
    except ValueError:
        raise DocumentError("signature value is not hex") from None
    if len(raw_sig) != SIGNATURE_LENGTH:  # fromhex skips spaces
        raise DocumentError(f"signature value must be {2 * SIGNATURE_LENGTH} hex digits")
    return alg, kid, raw_sig


def verify_document(
    raw: bytes,
    public_key: bytes,
    algorithm: Algorithm | str,
    kind: str,
) -> dict[str, Any]:
    """Check a published document and return its body (the object without ``signature``);
    see :func:`verify_document_digest`."""
    return verify_document_digest(raw, public_key, algorithm, kind)[0]


def verify_document_digest(
    raw: bytes,
    public_key: bytes,
    algorithm: Algorithm | str,
    kind: str,
) -> tuple[dict[str, Any], bytes]:
    """Check a published document and return its body (the object without ``signature``)
    and the SHA-256 of the body's canonical JSON - the bytes the signature covers, which
    tell the very same document from another of the same version without writing a large
    body out once more.

    Order: strict JSON object -> signed -> signed with ``algorithm`` -> by this key
    (``key_id``) -> signature verifies over the canonical body -> ``kind`` is ``kind`` ->
    ``version`` is a positive integer. Nothing in the body is trusted before the signature
    verifies. Any failure is a :class:`DocumentError` with the reason; a publication key
    that is not a valid point is the operator's :class:`ConfigError`.
    """
    alg = _algorithm(algorithm)
    try:
        signing.check_public_key(alg, public_key)
    except (SignatureFormatError, CryptoError) as exc:
        raise ConfigError(f"publication key unusable: {exc.reason}") from exc
    obj = parse_document(raw)
    sig_alg, sig_kid, sig_value = _signature_fields(obj)
    if sig_alg != alg.value:
        raise DocumentError(f"document signed with {sig_alg!r}, terminal expects {alg.value!r}")
    expected_kid = key_id(public_key)
    if sig_kid.lower() != expected_kid:
        raise DocumentError(
            f"document signed by key {sig_kid!r}, not the publication key {expected_kid}"
        )
    body = {k: v for k, v in obj.items() if k != SIGNATURE_FIELD}
    # The body was read under the canonical rules, so it has a canonical form.
    message = canonical_json(body)
    try:
        good = signing.verify(alg, public_key, message, sig_value)
    except (SignatureFormatError, CryptoError) as exc:
        raise ConfigError(f"publication key unusable: {exc.reason}") from exc
    if not good:
        raise DocumentError("document signature does not verify (altered or forged)")
    if body.get("kind") != kind:
        raise DocumentError(f"document kind {body.get('kind')!r}, expected {kind!r}")
    version = body.get("version")
    if type(version) is not int or version < 1:
        raise DocumentError(f"document version must be a positive integer, not {version!r}")
    return body, hashlib.sha256(message).digest()


def document_signature(
    body: Mapping[str, Any], private_key: PrivateKey, algorithm: Algorithm | str
) -> dict[str, str]:
    """The ``signature`` object of ``body`` (which must not carry one): ``algorithm``,
    ``key_id`` and ``value`` over the canonical JSON of ``body``. Raises
    :class:`DocumentError` for a body with no canonical form (a NaN, say)."""
    alg = _algorithm(algorithm)
    if SIGNATURE_FIELD in body:
        raise DocumentError("body to sign already has a signature")
    try:
        message = canonical_json(body)
    except JsonError as exc:
        raise DocumentError(f"body cannot be signed: {exc.reason}") from exc
    return {
        "algorithm": alg.value,
        "key_id": key_id(signing.public_key_bytes(private_key)),
        "value": signing.sign(alg, private_key, message).hex(),
    }


def sign_document(
    body: Mapping[str, Any], private_key: PrivateKey, algorithm: Algorithm | str
) -> bytes:
    """Sign ``body`` (which must not carry a ``signature``) as the back office publishes it:
    the canonical JSON of the body plus ``signature``."""
    signed = dict(body)
    signed[SIGNATURE_FIELD] = document_signature(body, private_key, algorithm)
    return canonical_json(signed)
