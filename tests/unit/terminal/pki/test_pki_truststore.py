"""The operator's trust store (fail-closed loading) and the pure chain check of a card
certificate: every outcome and the order of the rules (docs/pki.md sections 2-3)."""

from __future__ import annotations

import datetime as dt
import json
from functools import cache
from pathlib import Path

import pytest

from firmware_sim.pki_issuing import (
    DemoHierarchy,
    make_card_credentials,
    make_hierarchy,
    make_issuer,
    make_root,
)
from terminal.crypto.signing import Algorithm, public_key_bytes
from terminal.errors import ConfigError
from terminal.pki.certificate import (
    Certificate,
    CertType,
    issue_certificate,
    issuer_subject,
    parse_certificate,
)
from terminal.pki.truststore import (
    PkiOutcome,
    TrustStore,
    check_card_certificate,
    dump_trust_store,
    load_trust_store,
    parse_trust_store,
    write_trust_store,
)

TODAY = dt.date(2025, 6, 1)
CARD_ID = "510104D15600000520000002A1B2C3D4"
OTHER_CARD_ID = "500103D15600000510000001FFFFFFFF"
ALGS = (Algorithm.SM2, Algorithm.ECDSA_P256)
LONG = (TODAY - dt.timedelta(days=30), TODAY + dt.timedelta(days=3650))
PAST = (dt.date(2010, 1, 1), dt.date(2020, 1, 1))
FUTURE = (dt.date(2030, 1, 1), dt.date(2040, 1, 1))


@cache
def hierarchy(alg: Algorithm = Algorithm.SM2) -> DemoHierarchy:
    return make_hierarchy(alg, CARD_ID, TODAY)


def store_of(h: DemoHierarchy, issuers: bool = True, revoked: tuple[bytes, ...] = ()) -> TrustStore:
    text = dump_trust_store([h.root_cert], [h.issuer_cert] if issuers else [], revoked)
    return parse_trust_store(text, TODAY)


def card(h: DemoHierarchy) -> Certificate:
    return parse_certificate(h.card_cert)


def key_of(cert: bytes) -> bytes:
    return parse_certificate(cert).subject_key_id


# --- loading --------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGS)
def test_store_round_trip_through_a_file(tmp_path: Path, alg: Algorithm) -> None:
    h = hierarchy(alg)
    path = tmp_path / "trust.json"
    write_trust_store(path, [h.root_cert], [h.issuer_cert], [bytes(8)])
    doc = json.loads(path.read_text())
    assert doc["version"] == 1 and doc["revoked_issuers"] == ["0000000000000000"]
    store = load_trust_store(path, TODAY)
    assert store.issuer(key_of(h.issuer_cert)) == parse_certificate(h.issuer_cert)
    assert store.root(key_of(h.root_cert)) == parse_certificate(h.root_cert)
    assert store.issuer(key_of(h.root_cert)) is None
    assert store.is_revoked(bytes(8)) and not store.is_revoked(key_of(h.issuer_cert))
    assert not store.expired
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_store_with_two_algorithms() -> None:
    sm2, p256 = hierarchy(Algorithm.SM2), hierarchy(Algorithm.ECDSA_P256)
    text = dump_trust_store([sm2.root_cert, p256.root_cert], [sm2.issuer_cert, p256.issuer_cert])
    store = parse_trust_store(text, TODAY)
    assert len(store.roots) == 2 and len(store.issuers) == 2


def _doc(h: DemoHierarchy, **changes: object) -> str:
    doc: dict[str, object] = json.loads(dump_trust_store([h.root_cert], [h.issuer_cert]))
    doc.update(changes)
    return json.dumps(doc)


def _flip_last(cert: bytes) -> str:
    return (cert[:-1] + bytes((cert[-1] ^ 1,))).hex()


def _p256_issuer_under(h: DemoHierarchy) -> bytes:
    """A P-256 issuer certificate that names the SM2 root of ``h`` as its issuer."""
    p256 = hierarchy(Algorithm.ECDSA_P256)
    issuer = parse_certificate(p256.issuer_cert)
    return issue_certificate(
        p256.root_key, key_of(h.root_cert), Algorithm.ECDSA_P256, CertType.ISSUER,
        issuer.subject, *LONG, issuer.public_key,
    )  # fmt: skip


def _bad_stores() -> dict[str, tuple[str, str]]:
    h = hierarchy()
    stranger = make_hierarchy(Algorithm.SM2, CARD_ID, TODAY)
    return {
        "not json": ("{", "not strict JSON"),
        "not an object": ("[]", "object"),
        "version": (_doc(h, version=2), "version"),
        "no version": (json.dumps({"roots": []}), "version"),
        "unknown key": (_doc(h, revoked_issuer=[]), "unknown keys"),
        "roots not a list": (_doc(h, roots="ab"), "list"),
        "bad hex": (_doc(h, roots=["zz"]), r"roots\[0\] is not hex"),
        "malformed": (_doc(h, roots=["0102"]), r"roots\[0\] is malformed"),
        "root bad self-signature": (_doc(h, roots=[_flip_last(h.root_cert)]), "self-signature"),
        "issuer as root": (_doc(h, roots=[h.issuer_cert.hex()]), "issuer cert"),
        "card as issuer": (_doc(h, issuers=[h.card_cert.hex()]), "card cert"),
        "unknown root": (_doc(h, issuers=[stranger.issuer_cert.hex()]), "not in the store"),
        "issuer bad signature": (_doc(h, issuers=[_flip_last(h.issuer_cert)]), "not signed"),
        "cross-algorithm": (_doc(h, issuers=[_p256_issuer_under(h).hex()]), "not signed"),
        "revoked not 8 bytes": (_doc(h, revoked_issuers=["abcd"]), "16 hex"),
        "revoked not hex": (_doc(h, revoked_issuers=["x" * 16]), "16 hex"),
    }


@pytest.mark.parametrize("case", sorted(_bad_stores()))
def test_untrustworthy_store_fails_closed(case: str) -> None:
    text, reason = _bad_stores()[case]
    with pytest.raises(ConfigError, match=reason):
        parse_trust_store(text, TODAY)


def test_conflicting_duplicate_issuer_is_refused() -> None:
    h = hierarchy()
    # A second certificate from the root for the same issuer key (a renewal, say).
    issuer = parse_certificate(h.issuer_cert)
    again = issue_certificate(
        h.root_key, issuer.issuer_key_id, Algorithm.SM2, CertType.ISSUER,
        issuer_subject("510104", "renewed"), *LONG, public_key_bytes(h.issuer_key),
    )  # fmt: skip
    with pytest.raises(ConfigError, match="repeats key"):
        parse_trust_store(dump_trust_store([h.root_cert], [h.issuer_cert, again]), TODAY)
    # The very same certificate twice is harmless.
    parse_trust_store(dump_trust_store([h.root_cert], [h.issuer_cert, h.issuer_cert]), TODAY)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the trust store"):
        load_trust_store(tmp_path / "absent.json", TODAY)
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": 3}')
    with pytest.raises(ConfigError, match=r"bad\.json"):
        load_trust_store(bad, TODAY)


def test_write_refuses_a_store_that_would_not_load(tmp_path: Path) -> None:
    h = hierarchy()
    with pytest.raises(ConfigError):
        write_trust_store(tmp_path / "t.json", [], [h.issuer_cert])
    assert not list(tmp_path.iterdir())


def test_expired_entries_are_kept_and_marked(caplog: pytest.LogCaptureFixture) -> None:
    root_key, root = make_root(Algorithm.SM2, "old root", *PAST)
    _, issuer = make_issuer(root_key, root, "500000", "old", PAST)
    store = parse_trust_store(dump_trust_store([root], [issuer]), TODAY)
    assert store.issuer(key_of(issuer)) is not None
    assert store.is_expired(key_of(issuer)) and store.is_expired(key_of(root))
    assert "not valid on" in caplog.text


# --- chain check: every outcome -------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGS)
def test_valid(alg: Algorithm) -> None:
    h = hierarchy(alg)
    check = check_card_certificate(card(h), store_of(h), TODAY, CARD_ID.lower())
    assert check.outcome is PkiOutcome.VALID and check.ok
    assert check.certificate == card(h)
    assert check.to_json()["outcome"] == "valid"


def test_valid_without_card_id_says_subject_not_compared() -> None:
    h = hierarchy()
    check = check_card_certificate(card(h), store_of(h), TODAY, None)
    assert check.outcome is PkiOutcome.VALID and "not compared" in check.reason


def test_wrong_type() -> None:
    h = hierarchy()
    issuer = parse_certificate(h.issuer_cert)
    check = check_card_certificate(issuer, store_of(h), TODAY, CARD_ID)
    assert check.outcome is PkiOutcome.WRONG_TYPE


def test_unknown_issuer() -> None:
    h = hierarchy()
    check = check_card_certificate(card(h), store_of(h, issuers=False), TODAY, CARD_ID)
    assert check.outcome is PkiOutcome.UNKNOWN_ISSUER and "not in the trust store" in check.reason


def test_card_supplied_issuer_that_chains_is_accepted() -> None:
    h = hierarchy()
    issuer = parse_certificate(h.issuer_cert)
    check = check_card_certificate(card(h), store_of(h, issuers=False), TODAY, CARD_ID, issuer)
    assert check.outcome is PkiOutcome.VALID


def test_card_supplied_issuer_that_does_not_chain_is_unknown() -> None:
    h = hierarchy()
    stranger = make_hierarchy(Algorithm.SM2, CARD_ID, TODAY)
    store = store_of(h, issuers=False)
    # A forger's own issuer under a root the store does not trust.
    forged = check_card_certificate(
        card(stranger), store, TODAY, CARD_ID, parse_certificate(stranger.issuer_cert)
    )
    assert forged.outcome is PkiOutcome.UNKNOWN_ISSUER and "no trusted root" in forged.reason
    # The right issuer certificate, but the card certificate names another key.
    other = check_card_certificate(
        card(stranger), store, TODAY, CARD_ID, parse_certificate(h.issuer_cert)
    )
    assert other.outcome is PkiOutcome.UNKNOWN_ISSUER and "another key" in other.reason
    # A root certificate offered as the issuer.
    as_root = check_card_certificate(card(h), store, TODAY, CARD_ID, parse_certificate(h.root_cert))
    assert as_root.outcome is PkiOutcome.UNKNOWN_ISSUER


def test_card_supplied_issuer_with_bad_root_signature_is_unknown() -> None:
    h = hierarchy()
    raw = h.issuer_cert[:-1] + bytes((h.issuer_cert[-1] ^ 1,))
    check = check_card_certificate(
        card(h), store_of(h, issuers=False), TODAY, CARD_ID, parse_certificate(raw)
    )
    assert check.outcome is PkiOutcome.UNKNOWN_ISSUER and "not signed" in check.reason


def test_issuer_revoked() -> None:
    h = hierarchy()
    check = check_card_certificate(
        card(h), store_of(h, revoked=(key_of(h.issuer_cert),)), TODAY, CARD_ID
    )
    assert check.outcome is PkiOutcome.ISSUER_REVOKED


def test_revocation_applies_to_card_supplied_issuers_too() -> None:
    h = hierarchy()
    store = parse_trust_store(dump_trust_store([h.root_cert], [], [key_of(h.issuer_cert)]), TODAY)
    check = check_card_certificate(card(h), store, TODAY, CARD_ID, parse_certificate(h.issuer_cert))
    assert check.outcome is PkiOutcome.ISSUER_REVOKED


@pytest.mark.parametrize("period", [PAST, FUTURE], ids=["expired", "not-yet-valid"])
def test_issuer_outside_validity(period: tuple[dt.date, dt.date]) -> None:
    root_key, root = make_root(Algorithm.SM2, "root", dt.date(2000, 1, 1), dt.date(2099, 1, 1))
    issuer_key, issuer = make_issuer(root_key, root, "510104", "", period)
    _, card_cert = make_card_credentials(issuer_key, issuer, CARD_ID, LONG)
    store = parse_trust_store(dump_trust_store([root], [issuer]), TODAY)
    check = check_card_certificate(parse_certificate(card_cert), store, TODAY, CARD_ID)
    assert check.outcome is PkiOutcome.CERTIFICATE_EXPIRED and "issuer" in check.reason


def test_root_outside_validity() -> None:
    root_key, root = make_root(Algorithm.SM2, "root", *PAST)
    issuer_key, issuer = make_issuer(root_key, root, "510104", "", LONG)
    _, card_cert = make_card_credentials(issuer_key, issuer, CARD_ID, LONG)
    store = parse_trust_store(dump_trust_store([root], [issuer]), TODAY)
    check = check_card_certificate(parse_certificate(card_cert), store, TODAY, CARD_ID)
    assert check.outcome is PkiOutcome.CERTIFICATE_EXPIRED and "root" in check.reason


def test_card_outside_validity() -> None:
    h = hierarchy()
    _, card_cert = make_card_credentials(h.issuer_key, h.issuer_cert, CARD_ID, PAST)
    check = check_card_certificate(parse_certificate(card_cert), store_of(h), TODAY, CARD_ID)
    assert check.outcome is PkiOutcome.CERTIFICATE_EXPIRED and "card" in check.reason


def test_bad_signature_card_certificate_signed_by_the_wrong_key() -> None:
    h = hierarchy()
    stranger = make_hierarchy(Algorithm.SM2, CARD_ID, TODAY)
    # Forger: claims the genuine issuer's key id, signs with its own issuer key.
    _, forged = make_card_credentials(stranger.issuer_key, h.issuer_cert, CARD_ID, LONG)
    check = check_card_certificate(parse_certificate(forged), store_of(h), TODAY, CARD_ID)
    assert check.outcome is PkiOutcome.BAD_SIGNATURE


def test_bad_signature_card_certificate_of_another_algorithm() -> None:
    sm2, p256 = hierarchy(Algorithm.SM2), hierarchy(Algorithm.ECDSA_P256)
    # A P-256 card certificate claiming the SM2 issuer's key id.
    _, forged = make_card_credentials(p256.issuer_key, p256.issuer_cert, CARD_ID, LONG)
    raw = forged[:11] + key_of(sm2.issuer_cert) + forged[19:]
    check = check_card_certificate(parse_certificate(raw), store_of(sm2), TODAY, CARD_ID)
    assert check.outcome is PkiOutcome.BAD_SIGNATURE and "uses" in check.reason


def test_subject_mismatch() -> None:
    h = hierarchy()
    check = check_card_certificate(card(h), store_of(h), TODAY, OTHER_CARD_ID)
    assert check.outcome is PkiOutcome.SUBJECT_MISMATCH
    assert OTHER_CARD_ID not in check.reason  # card ids are masked in reasons
    garbage = check_card_certificate(card(h), store_of(h), TODAY, "not hex")
    assert garbage.outcome is PkiOutcome.SUBJECT_MISMATCH


def test_rules_apply_in_order() -> None:
    # Revoked and expired issuer, forged signature, other card: revocation is named first.
    root_key, root = make_root(Algorithm.SM2, "root", dt.date(2000, 1, 1), dt.date(2099, 1, 1))
    issuer_key, issuer = make_issuer(root_key, root, "510104", "", PAST)
    stranger = make_hierarchy(Algorithm.SM2, CARD_ID, TODAY)
    _, forged = make_card_credentials(stranger.issuer_key, issuer, CARD_ID, PAST)
    cert = parse_certificate(forged)
    revoked = parse_trust_store(dump_trust_store([root], [issuer], [key_of(issuer)]), TODAY)
    plain = parse_trust_store(dump_trust_store([root], [issuer]), TODAY)
    assert check_card_certificate(cert, revoked, TODAY, OTHER_CARD_ID).outcome is (
        PkiOutcome.ISSUER_REVOKED
    )
    assert check_card_certificate(cert, plain, TODAY, OTHER_CARD_ID).outcome is (
        PkiOutcome.CERTIFICATE_EXPIRED
    )
    # Issuer valid on a day inside PAST: now the forged signature is what fails.
    day = dt.date(2015, 1, 1)
    assert check_card_certificate(cert, plain, day, OTHER_CARD_ID).outcome is (
        PkiOutcome.BAD_SIGNATURE
    )
    # A genuine card certificate that expired: named before the subject mismatch.
    _, old = make_card_credentials(issuer_key, issuer, CARD_ID, (PAST[0], dt.date(2014, 1, 1)))
    assert check_card_certificate(parse_certificate(old), plain, day, OTHER_CARD_ID).outcome is (
        PkiOutcome.CERTIFICATE_EXPIRED
    )


def test_writer_takes_revoked_issuers_as_certificates_too() -> None:
    h = hierarchy()
    text = dump_trust_store([h.root_cert], [h.issuer_cert], [h.issuer_cert])
    assert json.loads(text)["revoked_issuers"] == [key_of(h.issuer_cert).hex().upper()]
    assert parse_trust_store(text, TODAY).is_revoked(key_of(h.issuer_cert))
    with pytest.raises(ConfigError, match="neither"):
        dump_trust_store([h.root_cert], [], [b"\x01\x02"])
