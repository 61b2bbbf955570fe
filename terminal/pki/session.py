"""The PKI check of a third-generation card over a :class:`CardChannel`, without any PSAM
(docs/pki.md, section 4). The card-side counterpart is :mod:`firmware_sim.pki_applet`.

On the wire (T=1; a T=0 card adds a GET RESPONSE after SELECT and after INTERNAL
AUTHENTICATE, which the channel sends)::

    -> 00 A4 04 00 0C <"PKI.社会保障" GBK> 00    SELECT the PKI DF by name
    <- [FCI] 9000                                  6A82: no PKI application
    -> 00 B0 82 00 00                              READ BINARY, SFI 02: card certificate
    <- <certificate> 6282 | 9000                   (< 256 bytes: one READ, 6282 = EOF)
   [-> 00 B0 81 00 00                              SFI 01: issuer certificate, only when
    <- <certificate> 6282 | 9000]                  the trust store lacks the issuer]
    -> 00 88 00 00 10 <challenge 16> 00            INTERNAL AUTHENTICATE
    <- <r || s, 64 bytes> 9000                     over "onecard/card-auth/v1" || challenge

The asymmetric command set of the real 3.0 card is unconfirmed (shared domain notes,
section 2), so every command byte, the SFIs and the signed-message prefix are the one
table :data:`COMMANDS`; the simulated card imports it from here.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

from terminal.crypto.signing import Algorithm, verify
from terminal.devices.reader import CardChannel
from terminal.errors import CardError, CertificateError, NoPkiApplicationError, SignatureFormatError
from terminal.iso7816.apdu import SHORT_MAX_LE, CommandAPDU
from terminal.iso7816.status_words import SW, describe
from terminal.pki.certificate import Certificate, CertType, certificate_length, parse_certificate
from terminal.pki.truststore import PkiCheck, PkiOutcome, TrustStore, check_card_certificate

PKI_DF_NAME = "PKI.社会保障".encode("gbk")
"""DF name of the PKI application: ``504B492EC9E7BBE1B1A3D5CF`` (12 bytes)."""


@dataclass(frozen=True)
class PkiCommands:
    """Every byte of the PKI exchange that the public specification does not confirm."""

    df_name: bytes = PKI_DF_NAME
    select: tuple[int, int, int, int] = (0x00, 0xA4, 0x04, 0x00)  # CLA INS P1(by name) P2(FCI)
    read_binary: tuple[int, int] = (0x00, 0xB0)  # CLA INS; P1 = 80|SFI, P2 = offset 0
    internal_authenticate: tuple[int, int, int, int] = (0x00, 0x88, 0x00, 0x00)
    issuer_cert_sfi: int = 0x01
    card_cert_sfi: int = 0x02
    challenge_length: int = 16
    signature_length: int = 64
    auth_prefix: bytes = b"onecard/card-auth/v1"
    """Signed before the challenge, so a card signature made here can never pass for a
    signature over some other protocol's data (domain separation)."""


COMMANDS = PkiCommands()

# A read may end early with a warning and still carry the whole (short) file.
_READ_OK = frozenset({SW.OK, SW.END_OF_FILE})
_PADDING = (0x00, 0xFF)


# --- commands -------------------------------------------------------------------------------


def select_command(commands: PkiCommands = COMMANDS) -> CommandAPDU:
    """``00 A4 04 00 Lc <DF name> 00``."""
    cla, ins, p1, p2 = commands.select
    return CommandAPDU(cla, ins, p1, p2, commands.df_name, le=SHORT_MAX_LE)


def read_certificate_command(sfi: int, commands: PkiCommands = COMMANDS) -> CommandAPDU:
    """``00 B0 <80|SFI> 00 00``: the whole file (Le 256), which holds one certificate."""
    cla, ins = commands.read_binary
    return CommandAPDU(cla, ins, 0x80 | sfi, 0x00, le=SHORT_MAX_LE)


def auth_message(challenge: bytes, commands: PkiCommands = COMMANDS) -> bytes:
    """What the card signs: ``prefix || challenge``."""
    return commands.auth_prefix + bytes(challenge)


def internal_authenticate_command(
    challenge: bytes, commands: PkiCommands = COMMANDS
) -> CommandAPDU:
    """``00 88 00 00 10 <challenge> 00``."""
    cla, ins, p1, p2 = commands.internal_authenticate
    return CommandAPDU(cla, ins, p1, p2, bytes(challenge), le=SHORT_MAX_LE)


# --- reads ----------------------------------------------------------------------------------


def select_pki(channel: CardChannel, commands: PkiCommands = COMMANDS) -> None:
    """SELECT the PKI DF. :class:`NoPkiApplicationError` on ``6A82``; :class:`CardError`
    on any other refusal."""
    response = channel.transmit(select_command(commands))
    if response.sw == SW.FILE_NOT_FOUND:
        raise NoPkiApplicationError("card has no PKI application", response.sw)
    if response.sw != SW.OK:
        raise CardError(f"SELECT PKI application: {describe(response.sw)}", response.sw)


def _trim(data: bytes) -> bytes:
    """Cut a certificate out of a fixed-size EF padded after it with 00 or FF bytes; any
    other tail is left for the parser to reject."""
    n = certificate_length(data)
    if n is None or len(data) <= n:
        return data
    tail = data[n:]
    if tail.count(tail[0]) == len(tail) and tail[0] in _PADDING:
        return data[:n]
    return data


def read_certificate(
    channel: CardChannel, sfi: int, commands: PkiCommands = COMMANDS
) -> bytes | None:
    """The certificate in EF ``sfi`` of the selected PKI DF; None when the card has no such
    EF (``6A82``/``6A83``). :class:`CardError` on any other refusal."""
    response = channel.transmit(read_certificate_command(sfi, commands))
    if response.sw in (SW.FILE_NOT_FOUND, SW.RECORD_NOT_FOUND):
        return None
    if response.sw not in _READ_OK:
        raise CardError(f"READ BINARY SFI {sfi:02X}: {describe(response.sw)}", response.sw)
    return _trim(response.data)


def read_card_certificates(
    channel: CardChannel, read_issuer: bool = False, commands: PkiCommands = COMMANDS
) -> tuple[bytes, bytes | None]:
    """SELECT the PKI DF and read the card certificate, and the issuer certificate only if
    ``read_issuer`` (one APDU saved on every card whose issuer is in the trust store).

    Raises :class:`NoPkiApplicationError` for a card without the PKI DF or without a card
    certificate, :class:`CardError` for other refusals.
    """
    select_pki(channel, commands)
    card_cert = read_certificate(channel, commands.card_cert_sfi, commands)
    if card_cert is None:
        raise NoPkiApplicationError("PKI application has no card certificate", SW.FILE_NOT_FOUND)
    issuer_cert = (
        read_certificate(channel, commands.issuer_cert_sfi, commands) if read_issuer else None
    )
    return card_cert, issuer_cert


# --- dynamic authentication -----------------------------------------------------------------


def _dynamic_authenticate(
    channel: CardChannel,
    card_cert: Certificate,
    alg: Algorithm | None,
    commands: PkiCommands,
) -> str | None:
    """None when the card signed a fresh challenge with the certificate's key, else why not."""
    challenge = secrets.token_bytes(commands.challenge_length)
    response = channel.transmit(internal_authenticate_command(challenge, commands))
    if response.sw != SW.OK:
        return f"card refused INTERNAL AUTHENTICATE: {describe(response.sw)}"
    if len(response.data) != commands.signature_length:
        return (
            f"card answered {len(response.data)} bytes, "
            f"not a {commands.signature_length}-byte signature"
        )
    try:
        good = verify(
            alg or card_cert.algorithm,
            card_cert.public_key,
            auth_message(challenge, commands),
            response.data,
        )
    except SignatureFormatError:
        good = False  # the certificate key was checked at parse: only a forged Certificate
    return None if good else "card signature does not verify with the certificate's key"


def dynamic_authenticate(
    channel: CardChannel,
    card_cert: Certificate,
    alg: Algorithm | None = None,
    commands: PkiCommands = COMMANDS,
) -> bool:
    """Send a fresh 16-byte challenge (``secrets``) with INTERNAL AUTHENTICATE and check the
    card's signature with the certificate's public key (``alg`` defaults to the
    certificate's). The PKI DF must be selected. False - never an exception - for a refusal,
    a wrong length or a signature that does not verify; reader errors still propagate."""
    return _dynamic_authenticate(channel, card_cert, alg, commands) is None


# --- the whole check ------------------------------------------------------------------------


def verify_card_pki(
    channel: CardChannel,
    store: TrustStore,
    now: dt.date,
    card_id_hex: str | None,
    commands: PkiCommands = COMMANDS,
) -> PkiCheck:
    """Read the card certificate, check its chain, and - only for a valid chain - have the
    card prove it holds the private key.

    3 APDUs on a T=1 card whose issuer is in the store (SELECT, READ BINARY, INTERNAL
    AUTHENTICATE); one more READ BINARY when the issuer certificate must come from the card.
    ``card_id_hex`` is the card identification code from EF05 tag 01. Outcomes as
    :func:`check_card_certificate`, plus ``MALFORMED`` (the certificate does not parse) and
    ``CLONED`` (valid chain, no private key). :class:`NoPkiApplicationError` for a card
    without the PKI application.
    """
    card_raw, _ = read_card_certificates(channel, read_issuer=False, commands=commands)
    try:
        card_cert = parse_certificate(card_raw)
    except CertificateError as exc:
        return PkiCheck(PkiOutcome.MALFORMED, f"card certificate: {exc.reason}", None)

    issuer_from_card: Certificate | None = None
    if card_cert.cert_type is CertType.CARD and store.issuer(card_cert.issuer_key_id) is None:
        try:
            issuer_raw = read_certificate(channel, commands.issuer_cert_sfi, commands)
        except CardError:
            issuer_raw = None  # an optional file the card refuses: the issuer stays unknown
        if issuer_raw is not None:
            try:
                issuer_from_card = parse_certificate(issuer_raw)
            except CertificateError:
                issuer_from_card = None  # reported as an unknown issuer below

    check = check_card_certificate(card_cert, store, now, card_id_hex, issuer_from_card)
    if check.outcome is not PkiOutcome.VALID:
        return check
    why_not = _dynamic_authenticate(channel, card_cert, None, commands)
    if why_not is not None:
        return PkiCheck(
            PkiOutcome.CLONED, f"copied certificate, no private key: {why_not}", card_cert
        )
    return PkiCheck(PkiOutcome.VALID, f"{check.reason}; card holds the private key", card_cert)
