"""What a scanned electronic social security card code is worth, decided offline.

:meth:`CodeVerifier.check` checks, in this order, and the first failing rule names the
verdict: form (:func:`~terminal.ecode.payload.parse_code`) -> issuer key in the trust list
(unknown; revoked or outside its validity now) -> signature -> time window
(``issued_at - skew <= now <= issued_at + validity + skew``) -> hotlist hook -> not seen
before (replay cache). Checking writes nothing.

A code's nonce is recorded (:meth:`CodeVerifier.commit`) only when the code is admitted:
the runtime commits a valid code once the policy and the profile accepted the transaction,
just before the journal records the acceptance, and takes it back
(:meth:`CodeVerifier.release`) if the journal then refuses. So a code refused for any
reason - its own, or a transient one of the terminal (service not offered, journal full,
no application list) - can be shown again, and a code that was admitted is refused as
``replayed`` ever after, across restarts (docs/ecode.md, "Verification").
:meth:`CodeVerifier.verify` checks and commits at once, for tools that admit what they
verify.

Bad codes never raise: every one is a :class:`CodeVerdict`. Only the terminal's own
failures do (a replay cache that cannot be read or written,
:class:`~terminal.errors.ReplayCacheError`; an exception of the hotlist hook).
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass

from terminal.crypto.signing import verify as verify_signature
from terminal.ecode.payload import CodePayload, parse_code
from terminal.ecode.replay import ReplayCache, ReplayKey
from terminal.ecode.trustlist import IssuerStatus, TrustList
from terminal.errors import (
    ConfigError,
    CryptoError,
    MalformedCodeError,
    NotOurCodeError,
    SignatureFormatError,
)
from terminal.host.clock import Clock
from terminal.privacy.cardtoken import MIN_KEY_LENGTH, card_token
from terminal.privacy.masking import mask_middle

log = logging.getLogger(__name__)

DEFAULT_SKEW = 30


class CodeVerdict(enum.Enum):
    """The outcome of checking one scanned code."""

    VALID = "valid"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_ISSUER = "unknown_issuer"
    ISSUER_REVOKED = "issuer_revoked"
    HOTLISTED = "hotlisted"
    REPLAYED = "replayed"
    MALFORMED = "malformed"
    NOT_OUR_CODE = "not_our_code"


@dataclass(frozen=True)
class CodeResult:
    """A verdict, its human reason, and the parsed payload when the code parsed."""

    verdict: CodeVerdict
    reason: str
    payload: CodePayload | None = None

    @property
    def accepted(self) -> bool:
        return self.verdict is CodeVerdict.VALID

    def to_json(self) -> dict[str, object]:
        """For ``--json`` output and logs: no personal data (card number and token masked,
        no nonce)."""
        out: dict[str, object] = {"verdict": self.verdict.value, "reason": self.reason}
        p = self.payload
        if p is not None:
            code: dict[str, object] = {
                "issuer_key_id": p.issuer_key_id.hex(),
                "algorithm": p.algorithm.value,
                "region": p.region,
                "category": p.category.value,
                "issued_at": dt.datetime.fromtimestamp(p.issued_at, dt.UTC).isoformat(),
                "validity": p.validity,
            }
            if p.card_number is not None:
                code["card_number"] = mask_middle(p.card_number, 1, 1)
            if p.card_token is not None:
                code["card_token"] = mask_middle(p.card_token.hex(), 4, 4)
            if p.scope is not None:
                code["scope"] = p.scope
            out["code"] = code
        return out


class CodeVerifier:
    """Checks electronic-card codes against a trust list, the clock, a hotlist and the
    replay cache, and records the codes admitted.

    ``hotlist`` is called with the card's 16-byte token (computed with ``token_key`` from
    the card number, or the token the code carries) and says True for a hotlisted card; it
    needs ``token_key`` (a :class:`ConfigError` otherwise: card-number codes could not be
    looked up). ``skew_seconds`` is the clock difference tolerated on both sides of a
    code's window.
    """

    def __init__(
        self,
        trust_list: TrustList,
        replay_cache: ReplayCache,
        clock: Clock,
        skew_seconds: int = DEFAULT_SKEW,
        hotlist: Callable[[bytes], bool] | None = None,
        token_key: bytes | None = None,
    ) -> None:
        if hotlist is not None and token_key is None:
            raise ConfigError("a hotlist needs the card token key (hotlists hold tokens)")
        if token_key is not None and len(token_key) < MIN_KEY_LENGTH:
            raise ConfigError(f"card token key must be at least {MIN_KEY_LENGTH} bytes")
        if not 0 <= skew_seconds <= 300:
            raise ConfigError("clock skew must be 0..300 seconds")
        self.trust_list = trust_list
        self.replay_cache = replay_cache
        self.clock = clock
        self.skew = int(skew_seconds)
        self.hotlist = hotlist
        self.token_key = token_key

    def card_token_of(self, payload: CodePayload) -> bytes | None:
        """The card's token: the one the code carries, or the keyed token of its number
        (None without a token key)."""
        if payload.card_token is not None:
            return payload.card_token
        if self.token_key is None or payload.card_number is None:
            return None
        return card_token(self.token_key, payload.card_number)

    def replay_key(self, payload: CodePayload) -> ReplayKey:
        """What the replay cache knows ``payload``'s code by; its entry may go once the
        code's window and the skew are over."""
        return ReplayKey(
            issuer_key_id=payload.issuer_key_id,
            nonce=payload.nonce,
            card_ref=payload.card_reference,
            issued_at=payload.issued_at,
            expires_at=payload.expires_at + self.skew,
        )

    def verify(self, text: str | bytes) -> CodeResult:
        """:meth:`check` and, for a valid code, :meth:`commit`: the verdict of a tool that
        admits what it verifies (``onecard code verify``). The runtime checks and commits
        apart, around its decision and journal."""
        result = self.check(text)
        return self.commit(result) if result.accepted else result

    def commit(self, result: CodeResult) -> CodeResult:
        """Record the nonce of a code :meth:`check` found valid: ``result`` itself when this
        is its first admission, or a ``REPLAYED`` result when the code was admitted since it
        was checked (another thread, or another process sharing the cache). Durable when it
        returns. Raises :class:`~terminal.errors.ReplayCacheError` when the cache cannot be
        written - the code must then be refused."""
        if not result.accepted or result.payload is None:
            raise ValueError("only a code found valid is committed")
        if not self.replay_cache.record(self.replay_key(result.payload)):
            return CodeResult(CodeVerdict.REPLAYED, "code was already used", result.payload)
        return result

    def release(self, result: CodeResult) -> None:
        """Take back the :meth:`commit` of ``result`` because its transaction was not
        journaled: the code may be shown again. Raises
        :class:`~terminal.errors.ReplayCacheError` (the code then stays used: refused on its
        next showing, never admitted twice)."""
        if result.payload is not None:
            self.replay_cache.forget(self.replay_key(result.payload))

    def check(self, text: str | bytes) -> CodeResult:
        """The verdict on one scanned code text (see the module docstring for the order).
        Writes nothing: a ``VALID`` code is admitted by :meth:`commit`."""
        if isinstance(text, bytes | bytearray):
            try:
                text = bytes(text).decode("ascii")
            except UnicodeDecodeError:
                return CodeResult(CodeVerdict.NOT_OUR_CODE, "scanned data is not ASCII text")
        try:
            code = parse_code(text)
        except NotOurCodeError as exc:
            return CodeResult(CodeVerdict.NOT_OUR_CODE, exc.reason)
        except MalformedCodeError as exc:
            return CodeResult(CodeVerdict.MALFORMED, exc.reason)
        p = code.payload
        now = self.clock.now()

        issuer = self.trust_list.issuer(p.issuer_key_id)
        if issuer is None:
            return CodeResult(
                CodeVerdict.UNKNOWN_ISSUER,
                f"issuer key {p.issuer_key_id.hex()} is not in trust list "
                f"version {self.trust_list.version}",
                p,
            )
        if issuer.status is IssuerStatus.REVOKED:
            return CodeResult(CodeVerdict.ISSUER_REVOKED, "issuer key is revoked", p)
        if not issuer.valid_at(now):
            return CodeResult(
                CodeVerdict.ISSUER_REVOKED, "issuer key is outside its validity period", p
            )

        if issuer.algorithm is not p.algorithm:
            return CodeResult(
                CodeVerdict.BAD_SIGNATURE,
                f"code claims {p.algorithm.value}, issuer key is {issuer.algorithm.value}",
                p,
            )
        try:
            good = verify_signature(
                issuer.algorithm, issuer.public_key, code.signed_bytes, code.signature
            )
        except (SignatureFormatError, CryptoError) as exc:  # a trust-list key cannot, but
            good = False  # a verdict is still the only outcome for a code
            log.warning("issuer key %s unusable: %s", issuer.key_id.hex(), exc.reason)
        if not good:
            return CodeResult(CodeVerdict.BAD_SIGNATURE, "signature does not verify", p)

        if now < p.issued_at - self.skew:
            return CodeResult(
                CodeVerdict.NOT_YET_VALID,
                f"issued {p.issued_at - now:.0f} s in the future (skew {self.skew} s)",
                p,
            )
        if now > p.expires_at + self.skew:
            return CodeResult(CodeVerdict.EXPIRED, f"expired {now - p.expires_at:.0f} s ago", p)

        if self.hotlist is not None:
            token = self.card_token_of(p)
            if token is not None and self.hotlist(token):
                return CodeResult(CodeVerdict.HOTLISTED, "card is on the hotlist", p)

        if self.replay_cache.seen(self.replay_key(p)):
            return CodeResult(CodeVerdict.REPLAYED, "code was already used", p)
        return CodeResult(CodeVerdict.VALID, "ok", p)
