"""Is this card genuine? One verification flow, one typed verdict (articles 8 and 21).

The flow, on the SSSE then the PKI application (docs/card-authentication.md, docs/pki.md)::

    SELECT SSSE, READ EF05                      identity, generation, algorithm flag
    INTERNAL AUTHENTICATE                       card holds its IRK (secure module)
    GET CHALLENGE, EXTERNAL AUTHENTICATE        terminal holds RKSSSE (3.0, secure module)
    READ EF06                                   holder data, where allowed
    SELECT PKI, READ card certificate,          certificate chain against the trust store,
    INTERNAL AUTHENTICATE (sign a challenge)    dynamic signature (3.0, no PSAM needed)

Nine APDUs for a 3.0 card over T=1. The verdict weighs the PKI evidence first - it is the
more specific: a clone with copied files fails the dynamic signature (CLONED) even though
its symmetric keys are wrong too - then the symmetric one (FORGED).
"""

from __future__ import annotations

import datetime
import enum
import hmac
import logging
from dataclasses import dataclass, field

from terminal.crypto.symmetric import SymmetricAlgorithm
from terminal.devices.reader import CardChannel
from terminal.errors import (
    CardError,
    CryptoError,
    NotSocialSecurityCardError,
    ParseError,
    SecureModuleError,
)
from terminal.iso7816.status_words import SW, describe
from terminal.pki.session import NoPkiApplicationError, verify_card_pki
from terminal.pki.truststore import TrustStore
from terminal.ssc import auth, layout
from terminal.ssc.cardspec import CARD_SPEC, HISTORICAL_BYTES_NEEDED
from terminal.ssc.records import HolderData
from terminal.ssc.secure_module import SecureModule
from terminal.ssc.session import (
    ReadMode,
    SscRead,
    Unreadable,
    holder_generation,
    read_holder_data,
    read_ssc,
)

log = logging.getLogger(__name__)

BLOCKED_SW = {SW.APPLICATION_BLOCKED, SW.FILE_INVALIDATED}


class Verdict(enum.Enum):
    GENUINE = "genuine"
    FORGED = "forged"  # internal authentication failed, or a certificate not from its issuer
    CLONED = "cloned"  # certificate copied, private key absent: dynamic signature failed
    CERTIFICATE_EXPIRED = "certificate_expired"
    ISSUER_REVOKED = "issuer_revoked"
    UNKNOWN_ISSUER = "unknown_issuer"
    BLOCKED = "blocked"  # the card's application is blocked (9303)
    UNSUPPORTED_ALGORITHM = "unsupported_algorithm"  # SSF33, or an unknown algorithm flag
    UNVERIFIED = "unverified"  # no means to verify this card here (no secure module, no PKI)
    CARD_ERROR = "card_error"
    NOT_SSC = "not_ssc"  # no social security application on the card (a plain T-Union card)


class Check(enum.Enum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class CheckResult:
    check: Check
    detail: str
    sw: int | None = None
    """The card's status word when the card refused the check (``63C2``: two tries left)."""

    def to_json(self) -> dict[str, str]:
        out = {"result": self.check.value, "detail": self.detail}
        if self.sw is not None:
            out["sw"] = f"{self.sw:04X}"
        return out


class RkssseRefusals:
    """Card kinds (region, algorithm) whose EXTERNAL AUTHENTICATE this terminal's secure
    module has seen refused.

    A refused RKSSSE cryptogram costs the card one of its tries (``63Cx``, then ``6983``: the
    holder data locked until the card is reset at the issuer). When the module lacks the
    right master for a region, every card of that region would pay a try on every tap; so
    after the first refusal the terminal stops trying that kind of card until it restarts
    (an operator fixing the key file restarts it anyway). Bounded; not thread-safe - one per
    transaction loop.
    """

    MAX_KINDS = 256

    def __init__(self) -> None:
        self._refused: set[tuple[str, SymmetricAlgorithm]] = set()

    def refused(self, region: str, algorithm: SymmetricAlgorithm) -> bool:
        return (region, algorithm) in self._refused

    def note(self, region: str, algorithm: SymmetricAlgorithm) -> None:
        if len(self._refused) < self.MAX_KINDS:
            self._refused.add((region, algorithm))


@dataclass
class CardVerification:
    """The verdict on one card, the reason, the evidence, and what was read."""

    verdict: Verdict
    reason: str
    read: SscRead | None
    checks: dict[str, CheckResult] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {
            "verdict": self.verdict.value,
            "reason": self.reason,
            "checks": {name: result.to_json() for name, result in self.checks.items()},
        }


_PKI_VERDICTS = {
    "CLONED": Verdict.CLONED,
    "CERTIFICATE_EXPIRED": Verdict.CERTIFICATE_EXPIRED,
    "ISSUER_REVOKED": Verdict.ISSUER_REVOKED,
    "UNKNOWN_ISSUER": Verdict.UNKNOWN_ISSUER,
    "BAD_SIGNATURE": Verdict.FORGED,
    "SUBJECT_MISMATCH": Verdict.FORGED,
    "WRONG_TYPE": Verdict.FORGED,
}


def card_algorithm(read: SscRead) -> SymmetricAlgorithm | None:
    """The card's symmetric algorithm from the SSSE FCI: its flag (tag 86 in 9F0C), DES/3DES
    when the FCI carries no algorithm template (many 1.0 and 2.0 cards, Sichuan spec 10.1);
    None for SSF33 or a flag no module could hold."""
    flag = read.fci.algorithm
    if flag is None:
        return CARD_SPEC.default_algorithm
    if flag in (SymmetricAlgorithm.DES3, SymmetricAlgorithm.SM4):
        return SymmetricAlgorithm(flag)
    return None


def _card_diversification(read: SscRead, atr_historical: bytes) -> tuple[str, bytes] | None:
    region = read.issuer.region
    if region is None or len(atr_historical) < HISTORICAL_BYTES_NEEDED:
        return None
    return region, atr_historical


def internal_authentication(
    channel: CardChannel,
    module: SecureModule,
    algorithm: SymmetricAlgorithm,
    region: str,
    historical: bytes,
    random: auth.RandomSource = auth.random_bytes,
) -> CheckResult:
    """INTERNAL AUTHENTICATE: the card's cryptogram of a fresh R must match the module's.

    P and R are the terminal's own random bytes (real readers often take both from GET
    CHALLENGE, which would let a card choose the challenge it answers).
    """
    process_factor, original = random(auth.PROCESS_FACTOR_LENGTH), random(auth.CRYPTOGRAM_LENGTH)
    answer = channel.transmit(auth.internal_authenticate(process_factor, original))
    if not answer.ok:
        return CheckResult(
            Check.FAILED, f"card refused INTERNAL AUTHENTICATE: {describe(answer.sw)}"
        )
    expected = module.cryptogram(
        auth.KeyName.IRK, algorithm, region, historical, process_factor, original
    )
    if len(answer.data) != auth.CRYPTOGRAM_LENGTH or not hmac.compare_digest(answer.data, expected):
        return CheckResult(Check.FAILED, "the card's cryptogram does not match its issuer's keys")
    return CheckResult(Check.PASSED, f"IRK cryptogram matches ({algorithm.name})")


def external_authentication(
    channel: CardChannel,
    module: SecureModule,
    algorithm: SymmetricAlgorithm,
    region: str,
    historical: bytes,
    random: auth.RandomSource = auth.random_bytes,
) -> CheckResult:
    """GET CHALLENGE + EXTERNAL AUTHENTICATE with RKSSSE: unlocks EF06 on 3.0 cards.

    The card's challenge is the process factor of the session key; the terminal's cryptogram
    A of an original R' travels with R' (``00 82 00 0A 10 A || R'``).
    """
    answer = channel.transmit(auth.get_challenge())
    if not answer.ok or len(answer.data) != auth.CHALLENGE_LENGTH:
        return CheckResult(
            Check.FAILED, f"no usable challenge from the card ({describe(answer.sw)})"
        )
    original = random(auth.CRYPTOGRAM_LENGTH)
    auth_data = module.cryptogram(
        auth.KeyName.RKSSSE, algorithm, region, historical, answer.data, original
    )
    answer = channel.transmit(auth.external_authenticate(auth_data, original))
    if not answer.ok:
        return CheckResult(
            Check.FAILED, f"card refused EXTERNAL AUTHENTICATE: {describe(answer.sw)}", answer.sw
        )
    return CheckResult(Check.PASSED, "RKSSSE accepted: holder data unlocked")


def verify_card(
    channel: CardChannel,
    atr_historical: bytes,
    module: SecureModule | None,
    trust_store: TrustStore | None,
    today: datetime.date,
    mode: ReadMode = ReadMode.AUTO,
    read_holder: bool = True,
    random: auth.RandomSource = auth.random_bytes,
    issuer_items: frozenset[str] | None = None,
    rkssse_refusals: RkssseRefusals | None = None,
) -> CardVerification:
    """Run the whole flow over ``channel`` and return the verdict with its evidence.

    Reader-side failures (card removed, PC/SC gone) propagate as exceptions; everything the
    card itself says, malformed answers included, becomes a verdict (``not_ssc`` for a card
    without the social security application, such as a plain T-Union card).
    ``random`` is the source of the terminal's random bytes (tests and trace replays hand in
    their own); ``issuer_items`` limits a per-tag read of EF05 to those items
    (:data:`terminal.ssc.layout.DECISION_ITEMS` at a gate: fewer APDUs on every tap);
    ``rkssse_refusals`` spares the cards of a kind whose external authentication this module
    has seen refused (:class:`RkssseRefusals`). Holder data that cannot be read is reported
    in ``unreadable``: it says nothing about whether the card is genuine.
    """
    try:
        read = read_ssc(channel, mode, read_holder=False, items=issuer_items)
    except NotSocialSecurityCardError as error:
        return CardVerification(Verdict.NOT_SSC, error.reason, None)
    except CardError as error:
        if error.sw in BLOCKED_SW:
            return CardVerification(Verdict.BLOCKED, error.reason, None)
        return CardVerification(Verdict.CARD_ERROR, error.reason, None)
    except ParseError as error:
        return CardVerification(Verdict.CARD_ERROR, f"malformed card answer: {error.reason}", None)

    checks: dict[str, CheckResult] = {}
    holder: HolderData | None = None
    unreadable: list[Unreadable] = list(read.unreadable)
    generation = holder_generation(read.issuer)
    algorithm = card_algorithm(read)
    diversification = _card_diversification(read, atr_historical)

    def result(verdict: Verdict, reason: str) -> CardVerification:
        final = SscRead(read.fci, read.issuer, holder, tuple(unreadable), read.mode)
        return CardVerification(verdict, reason, final, checks)

    if algorithm is None:
        flag = read.fci.algorithm
        name = "SSF33" if flag == SymmetricAlgorithm.SSF33 else f"flag {flag}"
        return result(Verdict.UNSUPPORTED_ALGORITHM, f"card algorithm {name} is not supported")

    symmetric_ok: bool | None = None
    unlocked = generation is not layout.Generation.V3
    try:
        if module is None:
            checks["internal_auth"] = CheckResult(Check.SKIPPED, "no secure module")
        elif diversification is None:
            checks["internal_auth"] = CheckResult(Check.FAILED, "no region or ATR to derive keys")
            symmetric_ok = False
        else:
            region, historical = diversification
            checks["internal_auth"] = internal_authentication(
                channel, module, algorithm, region, historical, random
            )
            symmetric_ok = checks["internal_auth"].check is Check.PASSED
            if symmetric_ok and generation is layout.Generation.V3 and read_holder:
                if rkssse_refusals is not None and rkssse_refusals.refused(region, algorithm):
                    checks["external_auth"] = CheckResult(
                        Check.SKIPPED, "cards of this region refused this module's RKSSSE"
                    )
                else:
                    checks["external_auth"] = external_authentication(
                        channel, module, algorithm, region, historical, random
                    )
                    refused = checks["external_auth"].sw is not None
                    if refused and rkssse_refusals is not None:
                        rkssse_refusals.note(region, algorithm)
                unlocked = checks["external_auth"].check is Check.PASSED
    except (SecureModuleError, CryptoError) as error:
        # The terminal cannot compute for this card (a PSAM without SM4, a missing key):
        # not the card's fault - fall back on what else there is.
        checks.setdefault("internal_auth", CheckResult(Check.SKIPPED, error.reason))
        symmetric_ok = None if "external_auth" not in checks else symmetric_ok
    except CardError as error:
        if error.sw in BLOCKED_SW:
            return result(Verdict.BLOCKED, error.reason)
        return result(Verdict.CARD_ERROR, error.reason)

    if read_holder and symmetric_ok is not False:
        if unlocked:
            # A card read in one multi-record APDU is asked the same for EF06, falling back
            # to per tag like the first read; a per-tag card is not probed again.
            holder_mode = ReadMode.PER_TAG if read.mode is ReadMode.PER_TAG else ReadMode.AUTO
            try:
                holder, more = read_holder_data(channel, generation, holder_mode)
                unreadable += more
            except CardError as error:
                log.info("holder data not read: %s", error.reason)
                unreadable.append(Unreadable("EF06", None, error.sw))
            except ParseError as error:
                # The card answered 9000 with something that is not holder data.
                log.info("holder data malformed: %s", error.reason)
                unreadable.append(Unreadable("EF06", None, SW.OK))
        else:
            refusal = checks.get("external_auth")
            sw = refusal.sw if refusal is not None and refusal.sw is not None else None
            unreadable.append(Unreadable("EF06", None, sw or SW.SECURITY_NOT_SATISFIED))

    pki_verdict: Verdict | None = None
    if generation is layout.Generation.V3:
        if trust_store is None:
            checks["pki"] = CheckResult(Check.SKIPPED, "no trust store")
        else:
            try:
                pki = verify_card_pki(channel, trust_store, today, read.issuer.card_id)
            except NoPkiApplicationError as error:
                checks["pki"] = CheckResult(Check.FAILED, error.reason)
                pki_verdict = Verdict.FORGED
            except CardError as error:
                return result(Verdict.CARD_ERROR, error.reason)
            else:
                passed = pki.outcome.name == "VALID"
                checks["pki"] = CheckResult(Check.PASSED if passed else Check.FAILED, pki.reason)
                if not passed:
                    pki_verdict = _PKI_VERDICTS.get(pki.outcome.name, Verdict.FORGED)

    if pki_verdict is not None:
        return result(pki_verdict, checks["pki"].detail)
    if symmetric_ok is False:
        return result(Verdict.FORGED, checks["internal_auth"].detail)
    ran = [name for name, check in checks.items() if check.check is Check.PASSED]
    if not ran:
        return result(Verdict.UNVERIFIED, "no check could run: no secure module or trust store")
    return result(Verdict.GENUINE, "passed: " + ", ".join(ran))
