"""The one typed error family of onecard.

Every failure the terminal can meet - malformed bytes from a card, a card that says no, a
reader that vanished, a PC/SC service that is not running - is an :class:`OneCardError`
with a stable machine ``code`` (used in ``--json`` output and the journal) and a human
``reason``. Parsers raise only :class:`ParseError` subclasses; nothing else escapes them.
"""

from __future__ import annotations


class OneCardError(Exception):
    """Base of every error onecard raises on purpose."""

    code = "error"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def to_json(self) -> dict[str, object]:
        return {"error": self.code, "reason": self.reason}


# --- bytes that do not parse --------------------------------------------------------------


class ParseError(OneCardError):
    """Bytes that do not follow the format they claim to be."""

    code = "malformed"


class ApduError(ParseError):
    """A command or response APDU that is not well formed (ISO 7816-4 section 5)."""


class TlvError(ParseError):
    """A SIMPLE-TLV or BER-TLV structure that is truncated or invalid."""


class FieldError(ParseError):
    """A data element whose value breaks its format (cn, an, BCD date, GBK text)."""


# --- the card said no ---------------------------------------------------------------------


class CardError(OneCardError):
    """The card answered with a status word that ends the operation."""

    code = "card_error"

    def __init__(self, reason: str, sw: int) -> None:
        super().__init__(reason)
        self.sw = sw

    def to_json(self) -> dict[str, object]:
        return {"error": self.code, "reason": self.reason, "sw": f"{self.sw:04X}"}


class NotSocialSecurityCardError(CardError):
    """The card has no social security application (SSSE DDF not found)."""

    code = "not_ssc"


# --- readers and the PC/SC service --------------------------------------------------------


class ReaderError(OneCardError):
    """A reader-side failure: no reader, no card, lost card, lost service."""

    code = "reader_error"


class NoReaderError(ReaderError):
    code = "no_reader"


class NoCardError(ReaderError):
    code = "no_card"


class CardRemovedError(ReaderError):
    """The card left the reader (or the field) while a command was under way."""

    code = "card_removed"


class CardUnresponsiveError(ReaderError):
    """The card is present but does not answer (mute, or power-up failed)."""

    code = "card_unresponsive"


class PcscUnavailableError(ReaderError):
    """The PC/SC service (pcscd) is not running or went away."""

    code = "pcsc_unavailable"


class ConfigError(OneCardError):
    """An operator file (profile, configuration) that cannot be used."""

    code = "config_error"


# --- cryptography -------------------------------------------------------------------------


class CryptoError(OneCardError):
    """A cryptographic operation that cannot be carried out: bad key length or value,
    unsupported algorithm (e.g. SSF33), a native back-end that fails its self-test."""

    code = "crypto_error"


class SignatureFormatError(ParseError):
    """A signature or public key whose encoding is invalid: bad DER, wrong length,
    a point that is not on the curve."""


# --- PKI of third-generation cards (docs/pki.md) ------------------------------------------


class CertificateError(ParseError):
    """A compact card-verifiable certificate that does not follow docs/pki.md: wrong
    version, type or algorithm byte, wrong lengths, trailing bytes, a bad BCD date, a
    public key that is not a curve point."""

    code = "bad_certificate"


class NoPkiApplicationError(CardError):
    """The card has no PKI application (``PKI.社会保障`` not found): not a 3.0 card, or
    one personalised without certificates."""

    code = "no_pki"


# --- secure module (PSAM or software key file) --------------------------------------------


class SecureModuleError(OneCardError):
    """The secure module (a PSAM, or the software module's key file) cannot compute what was
    asked. ``sw`` is the PSAM's status word when a PSAM said no."""

    code = "secure_module_error"

    def __init__(self, reason: str, sw: int | None = None) -> None:
        super().__init__(reason)
        self.sw = sw

    def to_json(self) -> dict[str, object]:
        out = super().to_json()
        if self.sw is not None:
            out["sw"] = f"{self.sw:04X}"
        return out


class KeyMissingError(SecureModuleError):
    """The secure module holds no master key of that name for that algorithm (PSAM ``6A88``;
    no RKSSSE is LD/T 33 -2203)."""

    code = "key_missing"


class AlgorithmMissingError(SecureModuleError):
    """The secure module holds no keys at all for that algorithm (PSAM ``6A81``; a PSAM
    without SM4 is LD/T 33 -2202)."""

    code = "algorithm_missing"


class NoSecureModuleError(SecureModuleError):
    """No secure module: no card in the PSAM slot, or a card without the PSAM application
    (LD/T 33 -2201)."""

    code = "no_psam"
