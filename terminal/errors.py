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


# --- camera (drivers/camera.py) -----------------------------------------------------------


class CameraError(OneCardError):
    """A camera source (device index, video file, stream URL) or an image that cannot be
    opened or read."""

    code = "camera_error"


# --- code scanners ------------------------------------------------------------------------


class ScannerError(OneCardError):
    """A code scanner that cannot be used: a port that cannot be opened or configured."""

    code = "scanner_error"


class ScannerGoneError(ScannerError):
    """The scanner is not connected (unplugged, or not back yet) when it was asked to act."""

    code = "scanner_gone"


# --- electronic social security card codes (docs/ecode.md) --------------------------------


class NotOurCodeError(ParseError):
    """A scanned text that is not an onecard electronic-card code: the ``SC1:`` prefix is
    missing (another QR code: a payment code, a URL, a code of another scheme)."""

    code = "not_our_code"


class MalformedCodeError(ParseError):
    """An electronic-card code with our prefix whose Base45 text, length or fields break
    the layout of docs/ecode.md (or a payload that cannot be encoded into it)."""

    code = "malformed_code"


class Base45Error(MalformedCodeError):
    """Text that is not strict Base45 (RFC 9285): a character outside the QR alphanumeric
    set, a length of 1 modulo 3, or a group whose value does not fit its bytes."""


class TrustListError(OneCardError):
    """An electronic-card trust list that cannot be used: malformed JSON or fields, no
    signature, a signature that does not verify under the back office's root key."""

    code = "bad_trust_list"


class ReplayCacheError(OneCardError):
    """The electronic-card replay cache (an SQLite file) cannot be opened, read or written:
    the terminal cannot tell whether a code was already used, so it must not accept it."""

    code = "replay_cache_error"


# --- the journal (terminal/journal, docs/sync.md) -----------------------------------------


class JournalError(OneCardError):
    """The transaction journal cannot be used as asked (closed, opened read-only, used
    across a fork, or belonging to another terminal)."""

    code = "journal_error"


class JournalFullError(JournalError):
    """The journal cannot record another transaction - too many retained entries, too
    little free disk space, or the disk filled up during the commit - so the terminal must
    refuse the transaction rather than accept one it has not recorded. Nothing was written."""

    code = "journal_full"


class JournalCorruptError(JournalError):
    """The journal file is not a sound journal: not an SQLite database, damaged pages, a
    missing table or meta value, or a broken hash chain. The file is left untouched for
    inspection; ``path`` names it."""

    code = "journal_corrupt"

    def __init__(self, reason: str, path: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path

    def to_json(self) -> dict[str, object]:
        return {"error": self.code, "reason": self.reason, "path": self.path}


class JournalEntryError(ParseError):
    """A journal entry (or a transaction record) whose fields break docs/sync.md: a wrong
    type or format, or a personal field (a name, an ID number) in ``extra``."""

    code = "bad_journal_entry"


# --- sync with the back office (terminal/sync, docs/sync.md) ------------------------------


class SyncError(OneCardError):
    """An upload to (or a download from) the back office that did not complete. The uploader
    logs it and backs off; nothing is lost, unacknowledged entries are sent again.
    ``status`` is the HTTP status when the back office answered."""

    code = "sync_error"

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.status = status

    def to_json(self) -> dict[str, object]:
        out = super().to_json()
        if self.status is not None:
            out["status"] = self.status
        return out


class SyncUnreachableError(SyncError):
    """No connection to the back office: refused, no route, name not resolved, TLS failed."""

    code = "sync_unreachable"


class SyncTimeoutError(SyncError):
    """The back office did not answer within the request time-out."""

    code = "sync_timeout"


class SyncConnectionLostError(SyncError):
    """The connection was cut before the whole answer arrived."""

    code = "sync_connection_lost"


class SyncServerError(SyncError):
    """The back office answered 5xx: its problem, try again later."""

    code = "sync_server_error"


class SyncThrottledError(SyncServerError):
    """The back office said "not now": ``429`` (rate limited) or ``503`` (busy).
    ``retry_after`` is its ``Retry-After`` in seconds, bounded, or None when it gave none
    that reads (the sender's own back-off then decides alone)."""

    code = "sync_throttled"

    def __init__(self, reason: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(reason, status)
        self.retry_after = retry_after


class SyncRejectedError(SyncError):
    """The back office refused the request (4xx: bad signature or clock, revoked terminal,
    a conflicting entry). ``server_code`` is the ``error`` field of its JSON answer."""

    code = "sync_rejected"

    def __init__(self, reason: str, status: int | None = None, server_code: str = "") -> None:
        super().__init__(reason, status)
        self.server_code = server_code


class SyncAnswerError(SyncError):
    """The back office's answer does not follow docs/sync.md: not JSON, no ``acked_up_to``,
    or an acknowledgement of entries that were never sent."""

    code = "sync_bad_answer"


# --- outputs: gate relay, lamp, buzzer, holder display (drivers/relay_board.py) -----------


class RelayBoardError(OneCardError):
    """The relay board (gate relay, lamp, buzzer, display) did not carry out a command: it
    answered ``ERR``, or something that is not an answer. The runtime logs it and carries on."""

    code = "relay_board_error"


class RelayBoardTimeoutError(RelayBoardError):
    """The relay board did not answer a command within the answer time-out; the command may
    or may not have been carried out."""

    code = "relay_board_timeout"


class RelayBoardGoneError(RelayBoardError):
    """The relay board's port cannot be opened or went away (unplugged); the driver opens it
    again on the next command."""

    code = "relay_board_gone"


# --- transit: the T-Union e-purse (terminal/transit, docs/transit.md) ---------------------


class TransitError(OneCardError):
    """A transit e-purse operation that cannot go on (not a protocol answer we can report
    as a purchase status)."""

    code = "transit_error"


class NoTransitApplicationError(CardError):
    """The card has no T-Union e-purse application (SELECT ``A000000632010105`` refused)."""

    code = "no_transit_application"


class TransitCardError(CardError):
    """The e-purse answered a purchase command with a status word that ends the purchase."""

    code = "transit_card_error"


class TransitRecordError(ParseError):
    """An e-purse file (0x15 public information, 0x18 purchase log, 0x1E trip record) or a
    purchase answer whose bytes do not follow docs/transit.md."""

    code = "bad_transit_record"


class PendingMismatchError(TransitError):
    """A torn purchase is being recovered on a card that is not the card it was made on."""

    code = "pending_mismatch"
