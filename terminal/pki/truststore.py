"""The operator's trust store and the chain check of a card certificate (docs/pki.md,
sections 2 and 3). Pure: no card I/O.

The trust store is a JSON file the operator controls::

    {"version": 1,
     "roots": ["<root certificate hex, self-signed>", ...],
     "issuers": ["<issuer certificate hex>", ...],
     "revoked_issuers": ["<issuer key id, 16 hex digits>", ...]}

Loading fails closed: a root whose self-signature does not verify, an issuer certificate
that no root in the file signed, an unknown key or a malformed entry is a
:class:`ConfigError` naming the entry - never a store that silently trusts less or more
than the file says. Certificates outside their validity are kept (a check then says
"expired", which tells the operator more than "unknown").

:func:`check_card_certificate` decides what a card certificate is worth, in a fixed order
(type, issuer known, revoked, issuer validity, signature, card validity, subject) so that
the first failing rule names the outcome.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from terminal.errors import CertificateError, ConfigError
from terminal.host.atomicfile import write_atomically
from terminal.host.operatorfile import load_operator_json, parse_operator_json
from terminal.pki.certificate import (
    KEY_ID_LENGTH,
    Certificate,
    CertType,
    parse_certificate,
    verify_certificate_signature,
)
from terminal.privacy.masking import mask_middle

log = logging.getLogger(__name__)

STORE_VERSION = 1
_KEYS = frozenset({"version", "roots", "issuers", "revoked_issuers"})


@dataclass(frozen=True)
class TrustStore:
    """Trusted roots and issuers by subject key id, and the revoked issuer key ids.

    ``expired`` holds the key ids of certificates that were outside their validity on the
    day the store was loaded (for the operator's log); checks use their own ``now``.
    """

    roots: Mapping[bytes, Certificate]
    issuers: Mapping[bytes, Certificate]
    revoked: frozenset[bytes] = frozenset()
    expired: frozenset[bytes] = field(default=frozenset())

    def root(self, key_id: bytes) -> Certificate | None:
        return self.roots.get(bytes(key_id))

    def issuer(self, key_id: bytes) -> Certificate | None:
        """The trusted issuer certificate whose subject key id is ``key_id``."""
        return self.issuers.get(bytes(key_id))

    def is_revoked(self, key_id: bytes) -> bool:
        return bytes(key_id) in self.revoked

    def is_expired(self, key_id: bytes) -> bool:
        """True when the root or issuer ``key_id`` was expired (or not yet valid) at load."""
        return bytes(key_id) in self.expired


# --- loading --------------------------------------------------------------------------------


def _hex_list(doc: Mapping[str, object], key: str) -> list[str]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"trust store: {key!r} must be a list of hex strings")
    return value


def _certificate(text: str, where: str) -> Certificate:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ConfigError(f"trust store: {where} is not hex") from None
    try:
        return parse_certificate(raw)
    except CertificateError as exc:
        raise ConfigError(f"trust store: {where} is malformed: {exc.reason}") from exc


def parse_trust_store(text: str | bytes, now: dt.date | None = None) -> TrustStore:
    """Build a :class:`TrustStore` from its JSON text (or UTF-8 bytes), checking every
    signature. The text is read by the one strict reader (:mod:`terminal.host.operatorfile`):
    a key given twice, a ``1e400``, a 4,301-digit version or deep nesting is refused.

    ``now`` (default: today) only decides which certificates are marked expired.
    Raises :class:`ConfigError` for anything the store cannot be trusted with.
    """
    return _trust_store_of(parse_operator_json(text, "<trust store>", "trust store"), now)


def _trust_store_of(doc: object, now: dt.date | None) -> TrustStore:
    now = dt.date.today() if now is None else now
    if not isinstance(doc, dict):
        raise ConfigError("trust store must be a JSON object")
    unknown = set(doc) - _KEYS
    if unknown:
        # A misspelt "revoked_issuers" would silently revoke nothing: refuse it.
        raise ConfigError(f"trust store: unknown keys {sorted(unknown)}")
    if doc.get("version") != STORE_VERSION:
        version = repr(doc.get("version"))[:20]  # a file can hold a megabyte there
        raise ConfigError(f"trust store version {version} unsupported (want 1)")

    roots: dict[bytes, Certificate] = {}
    for i, text_hex in enumerate(_hex_list(doc, "roots")):
        where = f"roots[{i}]"
        cert = _certificate(text_hex, where)
        if cert.cert_type is not CertType.ROOT:
            raise ConfigError(f"trust store: {where} is a {cert.cert_type.name.lower()} cert")
        if not verify_certificate_signature(cert, cert.public_key):
            raise ConfigError(f"trust store: {where} self-signature does not verify")
        _add(roots, cert, where)

    issuers: dict[bytes, Certificate] = {}
    for i, text_hex in enumerate(_hex_list(doc, "issuers")):
        where = f"issuers[{i}]"
        cert = _certificate(text_hex, where)
        if cert.cert_type is not CertType.ISSUER:
            raise ConfigError(f"trust store: {where} is a {cert.cert_type.name.lower()} cert")
        root = roots.get(cert.issuer_key_id)
        if root is None:
            raise ConfigError(
                f"trust store: {where} ({cert.subject_name}) names root key "
                f"{cert.issuer_key_id.hex().upper()}, which is not in the store"
            )
        if cert.algorithm is not root.algorithm or not verify_certificate_signature(
            cert, root.public_key
        ):
            raise ConfigError(
                f"trust store: {where} ({cert.subject_name}) is not signed by its root"
            )
        _add(issuers, cert, where)

    revoked: set[bytes] = set()
    for i, text_hex in enumerate(_hex_list(doc, "revoked_issuers")):
        try:
            kid = bytes.fromhex(text_hex)
        except ValueError:
            kid = b""
        if len(kid) != KEY_ID_LENGTH:
            raise ConfigError(f"trust store: revoked_issuers[{i}] is not 16 hex digits")
        revoked.add(kid)

    expired = frozenset(
        kid for kid, cert in (*roots.items(), *issuers.items()) if not cert.is_valid_at(now)
    )
    for kid in sorted(expired):
        cert = roots.get(kid) or issuers[kid]
        log.warning("trust store: %s is not valid on %s", cert.describe(), now)
    return TrustStore(
        roots=MappingProxyType(roots),
        issuers=MappingProxyType(issuers),
        revoked=frozenset(revoked),
        expired=expired,
    )


def _add(table: dict[bytes, Certificate], cert: Certificate, where: str) -> None:
    known = table.get(cert.subject_key_id)
    if known is not None and known != cert:
        # Two different certificates for one key: which validity applies would be a guess.
        raise ConfigError(
            f"trust store: {where} repeats key {cert.subject_key_id.hex().upper()} "
            "with a different certificate"
        )
    table[cert.subject_key_id] = cert


def load_trust_store(path: str | os.PathLike[str], now: dt.date | None = None) -> TrustStore:
    """Read and check the trust store file at ``path`` (see :func:`parse_trust_store`)."""
    doc = load_operator_json(path, "trust store")
    try:
        return _trust_store_of(doc, now)
    except ConfigError as exc:
        raise ConfigError(f"{os.fspath(path)}: {exc.reason}") from exc


def dump_trust_store(
    roots: Iterable[bytes],
    issuers: Iterable[bytes] = (),
    revoked_issuers: Iterable[bytes] = (),
) -> str:
    """The JSON text of a trust store (certificates and key ids as upper-case hex).

    ``revoked_issuers`` takes 8-byte key ids or, for the issuing tools' convenience, the
    issuer certificates themselves (their subject key id is written).
    """
    doc = {
        "version": STORE_VERSION,
        "roots": [bytes(c).hex().upper() for c in roots],
        "issuers": [bytes(c).hex().upper() for c in issuers],
        "revoked_issuers": [
            _revoked_key_id(bytes(k), i).hex().upper() for i, k in enumerate(revoked_issuers)
        ],
    }
    return json.dumps(doc, indent=2) + "\n"


def _revoked_key_id(entry: bytes, index: int) -> bytes:
    if len(entry) == KEY_ID_LENGTH:
        return entry
    try:
        return parse_certificate(entry).subject_key_id
    except CertificateError as exc:
        raise ConfigError(
            f"revoked_issuers[{index}] is neither a key id nor a certificate: {exc.reason}"
        ) from exc


def write_trust_store(
    path: str | os.PathLike[str],
    roots: Iterable[bytes],
    issuers: Iterable[bytes] = (),
    revoked_issuers: Iterable[bytes] = (),
) -> None:
    """Write a trust store atomically (temporary file + rename). The text is checked with
    :func:`parse_trust_store` first, so a tool can never write a store that does not load."""
    text = dump_trust_store(roots, issuers, revoked_issuers)
    parse_trust_store(text)
    write_atomically(path, text.encode("utf-8"))


# --- chain check ----------------------------------------------------------------------------


class PkiOutcome(enum.Enum):
    """What the PKI check says about a card (docs/pki.md section 3)."""

    VALID = "valid"
    UNKNOWN_ISSUER = "unknown_issuer"
    """The issuer key is neither in the store nor in a card-supplied issuer certificate that
    chains to a trusted root."""
    ISSUER_REVOKED = "issuer_revoked"
    CERTIFICATE_EXPIRED = "certificate_expired"
    """The card, issuer or root certificate is outside its validity."""
    BAD_SIGNATURE = "bad_signature"
    """The card certificate is not signed by its issuer: a forgery."""
    SUBJECT_MISMATCH = "subject_mismatch"
    """The certificate names another card than EF05 does: a copied certificate."""
    WRONG_TYPE = "wrong_type"
    """The card's certificate EF holds a root or issuer certificate."""
    MALFORMED = "malformed"
    """The card's certificate does not parse (docs/pki.md section 1)."""
    CLONED = "cloned"
    """The chain is valid but the card cannot sign with the certificate's key: copied
    certificate, no private key."""


@dataclass(frozen=True)
class PkiCheck:
    """The outcome, a human reason, and the card certificate (None if it did not parse)."""

    outcome: PkiOutcome
    reason: str
    certificate: Certificate | None

    @property
    def ok(self) -> bool:
        return self.outcome is PkiOutcome.VALID

    def to_json(self) -> dict[str, object]:
        cert = self.certificate
        return {
            "outcome": self.outcome.value,
            "reason": self.reason,
            "serial": None if cert is None else cert.serial.hex().upper(),
            "issuer_key_id": None if cert is None else cert.issuer_key_id.hex().upper(),
        }


def _chain_card_issuer(
    issuer_cert: Certificate, wanted_key_id: bytes, store: TrustStore
) -> tuple[Certificate | None, str]:
    """A card-supplied issuer certificate, if it is the issuer named by the card certificate
    and a trusted root signed it; else None and why not."""
    if issuer_cert.cert_type is not CertType.ISSUER:
        return None, "the card's issuer certificate is not of type issuer"
    if issuer_cert.subject_key_id != wanted_key_id:
        return None, "the card's issuer certificate is for another key"
    root = store.root(issuer_cert.issuer_key_id)
    if root is None:
        return None, "the card's issuer certificate names no trusted root"
    if issuer_cert.algorithm is not root.algorithm or not verify_certificate_signature(
        issuer_cert, root.public_key
    ):
        return None, "the card's issuer certificate is not signed by a trusted root"
    return issuer_cert, ""


def _period(cert: Certificate) -> str:
    return f"{cert.not_before:%Y-%m-%d}..{cert.not_after:%Y-%m-%d}"


def check_card_certificate(
    card_cert: Certificate,
    store: TrustStore,
    now: dt.date,
    card_id_hex: str | None,
    issuer_cert_from_card: Certificate | None = None,
) -> PkiCheck:
    """Check ``card_cert`` against ``store`` on day ``now``; the first failing rule wins.

    Order: type, issuer known (store first, else ``issuer_cert_from_card`` if it chains to a
    trusted root), issuer revoked, issuer and root validity, signature, card validity,
    subject (the card identification code ``card_id_hex`` from EF05 tag 01; None skips this
    rule, and the reason says so). Signatures only: the card's possession of the private key
    is :func:`terminal.pki.session.dynamic_authenticate`.
    """

    def result(outcome: PkiOutcome, reason: str) -> PkiCheck:
        return PkiCheck(outcome, reason, card_cert)

    if card_cert.cert_type is not CertType.CARD:
        return result(
            PkiOutcome.WRONG_TYPE, f"a {card_cert.cert_type.name.lower()} certificate, not a card's"
        )
    issuer_id = card_cert.issuer_key_id
    issuer = store.issuer(issuer_id)
    why = "not in the trust store"
    if issuer is None and issuer_cert_from_card is not None:
        issuer, why_not = _chain_card_issuer(issuer_cert_from_card, issuer_id, store)
        why += f", and {why_not}" if issuer is None else ""
    if issuer is None:
        return result(PkiOutcome.UNKNOWN_ISSUER, f"issuer key {issuer_id.hex().upper()} {why}")
    if store.is_revoked(issuer_id):
        return result(PkiOutcome.ISSUER_REVOKED, f"issuer {issuer.subject_name} is revoked")
    if not issuer.is_valid_at(now):
        return result(
            PkiOutcome.CERTIFICATE_EXPIRED,
            f"issuer certificate of {issuer.subject_name} is valid {_period(issuer)}, not {now}",
        )
    root = store.root(issuer.issuer_key_id)
    if root is not None and not root.is_valid_at(now):
        return result(
            PkiOutcome.CERTIFICATE_EXPIRED,
            f"root certificate {root.subject_name} is valid {_period(root)}, not {now}",
        )
    if card_cert.algorithm is not issuer.algorithm:
        return result(
            PkiOutcome.BAD_SIGNATURE,
            f"card certificate uses {card_cert.algorithm.value}, its issuer "
            f"{issuer.algorithm.value}",
        )
    if not verify_certificate_signature(card_cert, issuer.public_key):
        return result(
            PkiOutcome.BAD_SIGNATURE,
            f"card certificate is not signed by issuer {issuer.subject_name}",
        )
    if not card_cert.is_valid_at(now):
        return result(
            PkiOutcome.CERTIFICATE_EXPIRED,
            f"card certificate is valid {_period(card_cert)}, not {now}",
        )
    if card_id_hex is None:
        return result(
            PkiOutcome.VALID,
            f"signed by {issuer.subject_name} (subject not compared: no card id given)",
        )
    try:
        card_id = bytes.fromhex(card_id_hex)
    except (ValueError, TypeError):
        card_id = None
    if card_id != card_cert.subject:
        # Masked: reasons end up in logs and the journal.
        return result(
            PkiOutcome.SUBJECT_MISMATCH,
            f"certificate is for card {mask_middle(card_cert.subject_name, 6, 4)}, "
            f"EF05 says {mask_middle(str(card_id_hex).upper(), 6, 4)}",
        )
    return result(PkiOutcome.VALID, f"signed by {issuer.subject_name}")
