"""Issuing tools: make a test world of keys, trust material and personalised cards.

``issue_world(out)`` writes, into ``out``:

    keys.toml           master keys (3DES and SM4, with the e-purse purchase and maintenance
                        masters) - the software secure module's key file, and what a
                        simulated PSAM is personalised from
    issuer-keys.toml    the back office's issuer key file (docs/clearing.md): the purchase
                        masters and, with the ``separate-master`` TAC scheme, the TAC
                        masters the e-purses' DTKs come from (mode 0600)
    trust.json          the trust store: a root, the Chongqing and Sichuan issuers, and a
                        revoked issuer (listed in revoked_issuers)
    pki/*.key           private keys of the root and issuers (mode 0600)
    cards/<name>.toml   personalised cards, one per verdict (see :data:`CARD_KINDS`), and
                        plain T-Union cards for the validator (:data:`TRANSIT_KINDS`)
    world.json          a manifest: files, the verdict each card should get (``expected``,
                        null for a card without the SSSE) and what it is for (``purpose``)

Everything secret is made here, at test or demo time, from ``secrets``: nothing secret is
committed. Cards start from the shipped sample profiles. The files are written in the
terminal's formats (key file, trust store), but every card key is derived by the
simulator's own crypto (:mod:`firmware_sim.crypto`): SSC card keys with the region factor
(Zhejiang exception included) and ATR T6..TD, e-purse purchase keys from the key file's
``purchase`` masters.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from firmware_sim import crypto
from firmware_sim.keys import MasterKeys
from firmware_sim.pki_issuing import make_card_credentials, make_issuer, make_root
from firmware_sim.profile import (
    CardKeys,
    CardProfile,
    PkiPersonalisation,
    TUnionSettings,
    format_profile,
    load_sample,
)
from firmware_sim.spec.psam import SSC_KEY_NAMES
from firmware_sim.spec.ssc import Generation
from firmware_sim.spec.tunion import TAC_SCHEME_DPK_VARIANT, TAC_SCHEME_SEPARATE_MASTER, TAC_SCHEMES
from terminal.crypto.signing import Algorithm, generate_private_key, private_key_bytes
from terminal.host.secretfile import write_secret_file
from terminal.pki.truststore import write_trust_store
from terminal.secure.keyfile import KeySet, generate_key_set, write_key_file

PKI_NAMES = {Algorithm.SM2: "sm2", Algorithm.ECDSA_P256: "ecdsa-p256"}

PURPOSE_VERIFICATION = "verification"
"""A social security card for the verification flow: ``expected`` is its verdict."""
PURPOSE_VERIFICATION_TRANSIT = "verification+transit"
"""A social security card that also carries the T-Union e-purse."""
PURPOSE_TRANSIT = "transit"
"""A plain T-Union card (no SSSE): for the validator's purchase, no SSC verdict."""


@dataclass(frozen=True)
class CardKind:
    """One personalised test card: which sample, what is wrong with it, the verdict the
    verification flow gives it (``not_ssc`` for a card without the social security
    application) and what it is for."""

    sample: str
    expected: str
    story: str
    purpose: str = PURPOSE_VERIFICATION


CARD_KINDS: dict[str, CardKind] = {
    "genuine-cq-2.0": CardKind("chongqing-2.0", "genuine", "a genuine Chongqing 2.0 card"),
    "genuine-sc-3.0": CardKind("sichuan-3.0", "genuine", "a genuine Sichuan 3.0 card"),
    "forged-cq-2.0": CardKind("chongqing-2.0", "forged", "copied data, keys not the issuer's"),
    "cloned-sc-3.0": CardKind("sichuan-3.0", "cloned", "copied files and certificate, no key"),
    "expired-cert-sc-3.0": CardKind(
        "sichuan-3.0", "certificate_expired", "its card certificate has expired"
    ),
    "revoked-issuer-sc-3.0": CardKind(
        "sichuan-3.0", "issuer_revoked", "issued by an issuer since revoked"
    ),
    "unknown-issuer-sc-3.0": CardKind(
        "sichuan-3.0", "unknown_issuer", "certificate from an issuer nobody trusts"
    ),
    "blocked-cq-2.0": CardKind("chongqing-2.0", "blocked", "its application is blocked"),
    "ssf33-cq-2.0": CardKind("chongqing-2.0", "unsupported_algorithm", "an SSF33 card"),
    "genuine-cq-2.0-t0": CardKind(
        "chongqing-2.0-t0",
        "genuine",
        "a genuine Chongqing 2.0 T=0 card: no algorithm template (DES), no tag 4E",
    ),
    "genuine-zj-2.0": CardKind(
        "zhejiang-2.0",
        "genuine",
        "a genuine Zhejiang 2.0 card (region 330381): keys diversified with 330300sx",
    ),
    "genuine-sc-3.0-transit": CardKind(
        "sichuan-3.0-transit",
        "genuine",
        "a genuine contactless Sichuan 3.0 card with a T-Union e-purse (SM4)",
        PURPOSE_VERIFICATION_TRANSIT,
    ),
}
"""Social security cards, one per verdict of the verification flow."""

TRANSIT_KINDS: dict[str, CardKind] = {
    "tunion-plain": CardKind(
        "tunion-plain", "not_ssc", "a plain T-Union card of another city", PURPOSE_TRANSIT
    ),
    "tunion-bit31": CardKind(
        "tunion-bit31",
        "not_ssc",
        "a T-Union card: balance bit 31 set, no 9F0C in the FCI, mostly empty log",
        PURPOSE_TRANSIT,
    ),
}
"""Plain T-Union cards (no SSSE): the verification flow says ``not_ssc``; they are for the
validator's purchase."""


def card_keys(profile: CardProfile, keyset: KeySet | MasterKeys) -> CardKeys:
    """The card's own keys: the master keys diversified for this card (region factor with
    the Zhejiang exception, then ATR T6..TD), by the simulator's crypto."""
    if profile.issuer is None:
        raise ValueError(f"profile {profile.name} has no social security application")
    masters = MasterKeys.coerce(keyset)
    algorithm = profile.card.algorithm
    region = profile.issuer.region

    def key(name: str) -> bytes:
        master = masters.key(algorithm, name)
        if master is None:
            raise ValueError(f"key set has no {name} master key of algorithm {algorithm}")
        return crypto.ssc_card_key(algorithm, master, region, profile.card.historical)

    irk, rkssse, ukssse = (key(name) for name in SSC_KEY_NAMES.values())
    return CardKeys(irk, rkssse, ukssse)


def purchase_key(settings: TUnionSettings, keyset: KeySet | MasterKeys) -> bytes:
    """The card's e-purse purchase key DPK from the key set's purchase master."""
    master = MasterKeys.coerce(keyset).purchase_master(settings.algorithm)
    if master is None:
        raise ValueError(f"key set has no purchase master key of algorithm {settings.algorithm}")
    info = settings.public_info
    return crypto.purchase_key(settings.algorithm, master, info.issuer_id, info.app_serial)


def maintenance_key(settings: TUnionSettings, keyset: KeySet | MasterKeys) -> bytes | None:
    """The card's application maintenance key DAMK from the key set's ``maintenance``
    master (None when the key set has none: the card then refuses APPLICATION BLOCK)."""
    master = MasterKeys.coerce(keyset).maintenance_master(settings.algorithm)
    if master is None:
        return None
    info = settings.public_info
    return crypto.maintenance_key(settings.algorithm, master, info.issuer_id, info.app_serial)


def personalise_tunion(
    profile: CardProfile,
    keyset: KeySet | MasterKeys,
    tac_masters: Mapping[int, bytes] | None = None,
) -> CardProfile:
    """``profile`` with the purchase key and the maintenance key of its e-purse
    (unchanged without ``[tunion]``) and, given ``tac_masters`` (algorithm flag -> issuer
    TAC master: the ``separate-master`` scheme), its separate TAC key DTK."""
    if profile.tunion is None:
        return profile
    tunion = profile.tunion
    tac_key = None
    if tac_masters is not None:
        tac_master = tac_masters.get(tunion.algorithm)
        if tac_master is None:
            raise ValueError(f"no TAC master key of algorithm {tunion.algorithm}")
        info = tunion.public_info
        tac_key = crypto.tac_card_key(tunion.algorithm, tac_master, info.issuer_id, info.app_serial)
    settings = dataclasses.replace(
        tunion,
        purchase_key=purchase_key(tunion, keyset),
        tac_key=tac_key,
        maintenance_key=maintenance_key(tunion, keyset),
    )
    return dataclasses.replace(profile, tunion=settings)


_ISSUER_TABLES = {crypto.DES3: "des3", crypto.SM4: "sm4"}


def format_issuer_keys(keyset: KeySet | MasterKeys, tac_masters: Mapping[int, bytes]) -> str:
    """The back office's issuer key file (docs/clearing.md) for cards issued from
    ``keyset``'s purchase masters and ``tac_masters``. Written from the documented format,
    not with the back office's code: the simulator stays independent of it."""
    masters = MasterKeys.coerce(keyset)
    lines = ["# onecard issuer master keys (made by onecard sim issue): secret, mode 0600"]
    for algorithm, table in _ISSUER_TABLES.items():
        master = masters.purchase_master(algorithm)
        if master is None:
            continue
        lines += [f"[{table}]", f'purchase = "{master.hex().upper()}"']
        if algorithm in tac_masters:
            lines.append(f'tac = "{tac_masters[algorithm].hex().upper()}"')
    return "\n".join(lines) + "\n"


def random_card_keys() -> CardKeys:
    """Keys a forger could make: right shape, wrong values."""
    return CardKeys(secrets.token_bytes(16), secrets.token_bytes(16), secrets.token_bytes(16))


def issue_world(
    out: Path,
    today: datetime.date | None = None,
    algorithm: Algorithm = Algorithm.SM2,
    terminal_number: str = "000000000001",
    tac_scheme: str = TAC_SCHEME_DPK_VARIANT,
) -> dict[str, object]:
    """Make the whole test world under ``out``; returns the manifest (also world.json).
    ``tac_scheme`` (:data:`TAC_SCHEMES`) is how every e-purse's TAC key is made:
    ``separate-master`` makes an issuer TAC master per algorithm and gives each card its
    DTK; the default keeps the project's convention (from the DPK)."""
    if tac_scheme not in TAC_SCHEMES:
        raise ValueError(f"unknown TAC key scheme {tac_scheme!r} (one of {TAC_SCHEMES})")
    today = today or datetime.date.today()
    for directory in (out, out / "pki", out / "cards"):
        directory.mkdir(parents=True, exist_ok=True)
    years = datetime.timedelta(days=365)
    valid = (today - years, today + 10 * years)

    # Purchase masters too: the same key file personalises the PSAM of a validator.
    keyset = generate_key_set(terminal_number, purchase=True)
    write_key_file(keyset, out / "keys.toml")
    # The issuer's TAC masters, made here like every other secret: only with the separate
    # scheme, so that a default world's cards keep the DPK-derived TAC key.
    tac_masters: dict[int, bytes] | None = None
    if tac_scheme == TAC_SCHEME_SEPARATE_MASTER:
        tac_masters = {alg: secrets.token_bytes(16) for alg in _ISSUER_TABLES}
    write_secret_file(out / "issuer-keys.toml", format_issuer_keys(keyset, tac_masters or {}))

    root_key, root_cert = make_root(algorithm, "onecard test root", *valid)
    sichuan_key, sichuan_cert = make_issuer(
        root_key, root_cert, "510000", "Sichuan", valid, algorithm
    )
    chongqing_key, chongqing_cert = make_issuer(
        root_key, root_cert, "500000", "Chongqing", valid, algorithm
    )
    revoked_key, revoked_cert = make_issuer(
        root_key, root_cert, "510100", "Revoked City", valid, algorithm
    )
    stranger_root_key, stranger_root_cert = make_root(algorithm, "untrusted root", *valid)
    stranger_key, stranger_cert = make_issuer(
        stranger_root_key, stranger_root_cert, "510000", "Untrusted", valid, algorithm
    )
    for name, key in {
        "root": root_key,
        "issuer-510000": sichuan_key,
        "issuer-500000": chongqing_key,
        "issuer-revoked": revoked_key,
    }.items():
        write_secret_file(out / "pki" / f"{name}.key", private_key_bytes(key).hex() + "\n")
    write_trust_store(
        out / "trust.json",
        roots=[root_cert],
        issuers=[sichuan_cert, chongqing_cert, revoked_cert],
        revoked_issuers=[revoked_cert],
    )

    def pki_for(profile: CardProfile, issuer: tuple, validity=valid) -> PkiPersonalisation:
        issuer_key, issuer_cert = issuer
        card_key, card_cert = make_card_credentials(
            issuer_key, issuer_cert, profile.issuer.card_id, validity, algorithm
        )
        return PkiPersonalisation(
            PKI_NAMES[algorithm], private_key_bytes(card_key), card_cert, issuer_cert
        )

    cards: dict[str, dict[str, str | None]] = {}
    sichuan = (sichuan_key, sichuan_cert)
    for name, kind in CARD_KINDS.items():
        profile = personalise_tunion(load_sample(kind.sample), keyset, tac_masters)
        keys = card_keys(profile, keyset)
        third_generation = profile.generation is Generation.V3
        pki = pki_for(profile, sichuan) if third_generation else None
        if name.startswith("forged"):
            keys = random_card_keys()
        elif name.startswith("cloned"):
            keys = random_card_keys()
            other_key = generate_private_key(algorithm)
            pki = dataclasses.replace(pki, private_key=private_key_bytes(other_key))
        elif name.startswith("expired-cert"):
            pki = pki_for(profile, sichuan, (today - 3 * years, today - datetime.timedelta(1)))
        elif name.startswith("revoked-issuer"):
            pki = pki_for(profile, (revoked_key, revoked_cert))
        elif name.startswith("unknown-issuer"):
            pki = pki_for(profile, (stranger_key, stranger_cert))
        elif name.startswith("blocked"):
            profile = dataclasses.replace(
                profile, card=dataclasses.replace(profile.card, blocked=True)
            )
        elif name.startswith("ssf33"):
            ssf33 = dataclasses.replace(profile.card, algorithm=2)
            profile = dataclasses.replace(profile, card=ssf33)
            keys = None
        profile = dataclasses.replace(profile, name=name, keys=keys, pki=pki)
        path = out / "cards" / f"{name}.toml"
        write_secret_file(
            path,
            format_profile(
                profile, f"{kind.story} (made by onecard sim issue; holds card secrets)"
            ),
        )
        cards[name] = _entry(path, kind)
    for name, kind in TRANSIT_KINDS.items():
        profile = dataclasses.replace(
            personalise_tunion(load_sample(kind.sample), keyset, tac_masters), name=name
        )
        path = out / "cards" / f"{name}.toml"
        story = f"{kind.story} (made by onecard sim issue; holds card secrets)"
        write_secret_file(path, format_profile(profile, story))
        cards[name] = _entry(path, kind)

    manifest: dict[str, object] = {
        "made": today.isoformat(),
        "algorithm": PKI_NAMES[algorithm],
        "keys": str(out / "keys.toml"),
        "issuer_keys": str(out / "issuer-keys.toml"),
        "tac_scheme": tac_scheme,
        "trust_store": str(out / "trust.json"),
        "cards": cards,
    }
    (out / "world.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest


def _entry(path: Path, kind: CardKind) -> dict[str, str | None]:
    return {
        "file": str(path),
        "expected": kind.expected,
        "story": kind.story,
        "purpose": kind.purpose,
        "sample": kind.sample,
    }
