"""Issuing side of the card PKI (docs/pki.md): a root, issuers per region, card credentials.

Used by the project's issuing tools and by tests. Every function returns the new private key
with the certificate bytes (:mod:`terminal.pki.certificate` layout); keys travel as hex of
their 32-byte scalar (:func:`key_to_hex` / :func:`key_from_hex`). One chain uses one
algorithm: an issuer or card is issued with the algorithm of the certificate above it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from firmware_sim.cardos import CardOS
from firmware_sim.pki_applet import PkiApplet
from terminal.crypto.signing import (
    Algorithm,
    PrivateKey,
    generate_private_key,
    load_private_key,
    private_key_bytes,
    public_key_bytes,
)
from terminal.pki.certificate import (
    CertType,
    card_subject,
    issue_certificate,
    issuer_subject,
    key_id,
    parse_certificate,
    root_subject,
)

Validity = tuple[dt.date, dt.date]
"""``(not_before, not_after)``, both days included."""


def key_to_hex(private_key: PrivateKey) -> str:
    """The private key as 64 hex digits (an operator secret: never log it)."""
    return private_key_bytes(private_key).hex()


def key_from_hex(alg: Algorithm, text: str) -> PrivateKey:
    """A private key back from :func:`key_to_hex`."""
    return load_private_key(alg, bytes.fromhex(text.strip()))


def _chain_alg(parent_cert: bytes, alg: Algorithm | None) -> Algorithm:
    parent = parse_certificate(parent_cert).algorithm
    if alg is not None and alg is not parent:
        raise ValueError(f"a {parent.value} chain cannot hold a {alg.value} certificate")
    return parent


def make_root(
    alg: Algorithm, name: str, not_before: dt.date, not_after: dt.date
) -> tuple[PrivateKey, bytes]:
    """A fresh root key and its self-signed root certificate (subject: ``name`` in GBK)."""
    key = generate_private_key(alg)
    public = public_key_bytes(key)
    cert = issue_certificate(
        key, key_id(public), alg, CertType.ROOT, root_subject(name), not_before, not_after, public
    )
    return key, cert


def make_issuer(
    root_key: PrivateKey,
    root_cert: bytes,
    region6: str,
    name: str,
    validity: Validity,
    alg: Algorithm | None = None,
) -> tuple[PrivateKey, bytes]:
    """A fresh issuer key for region ``region6`` and its certificate, signed by the root."""
    alg = _chain_alg(root_cert, alg)
    key = generate_private_key(alg)
    root = parse_certificate(root_cert)
    cert = issue_certificate(
        root_key,
        root.subject_key_id,
        alg,
        CertType.ISSUER,
        issuer_subject(region6, name),
        validity[0],
        validity[1],
        public_key_bytes(key),
    )
    return key, cert


def make_card_credentials(
    issuer_key: PrivateKey,
    issuer_cert: bytes,
    card_id_hex: str,
    validity: Validity,
    alg: Algorithm | None = None,
) -> tuple[PrivateKey, bytes]:
    """A fresh card key and the card certificate for identification code ``card_id_hex``
    (EF05 tag 01, 32 hex digits), signed by the issuer."""
    alg = _chain_alg(issuer_cert, alg)
    key = generate_private_key(alg)
    issuer = parse_certificate(issuer_cert)
    cert = issue_certificate(
        issuer_key,
        issuer.subject_key_id,
        alg,
        CertType.CARD,
        card_subject(card_id_hex),
        validity[0],
        validity[1],
        public_key_bytes(key),
    )
    return key, cert


@dataclass(frozen=True)
class DemoHierarchy:
    """A root, one issuer and one card of one algorithm: demos and tests."""

    alg: Algorithm
    root_key: PrivateKey
    root_cert: bytes
    issuer_key: PrivateKey
    issuer_cert: bytes
    card_key: PrivateKey
    card_cert: bytes
    card_id_hex: str

    def applet(self) -> PkiApplet:
        """A genuine card's PKI applet."""
        return PkiApplet(self.card_key, self.alg, self.card_cert, self.issuer_cert)

    def install(self, card: CardOS) -> PkiApplet:
        """Install the genuine PKI applet on ``card``."""
        return card.install(self.applet())


def make_hierarchy(
    alg: Algorithm,
    card_id_hex: str,
    today: dt.date,
    region6: str | None = None,
    years: int = 10,
) -> DemoHierarchy:
    """Root, issuer (region: ``region6`` or the card's) and card credentials, all valid
    from ``today - 1 day`` for ``years`` * 365 days (the issuer and card a day less than the root).
    """
    start = today - dt.timedelta(days=1)
    end = start + dt.timedelta(days=365 * years)
    inner: Validity = (start, end - dt.timedelta(days=1))
    root_key, root_cert = make_root(alg, "onecard demo root", start, end)
    region = region6 or card_id_hex[:6]
    issuer_key, issuer_cert = make_issuer(root_key, root_cert, region, "demo issuer", inner, alg)
    card_key, card_cert = make_card_credentials(issuer_key, issuer_cert, card_id_hex, inner, alg)
    return DemoHierarchy(
        alg, root_key, root_cert, issuer_key, issuer_cert, card_key, card_cert, card_id_hex
    )
