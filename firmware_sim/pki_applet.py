"""The PKI application of a simulated third-generation card (docs/pki.md, section 4).

File tree the applet installs under the MF::

    3F00 MF
     └─ DF10  PKI DF, DF name "PKI.社会保障" (GBK), FCI 6F 0E 84 0C <name>
         ├─ C001  issuer certificate, transparent, SFI 01, free read
         └─ C002  card certificate, transparent, SFI 02, free read

SELECT and READ BINARY are interindustry: the card OS answers them. The applet answers one
command, while its DF is selected::

    -> 00 88 00 00 10 <challenge 16> 00        INTERNAL AUTHENTICATE
    <- <r || s> 9000                           signature over prefix || challenge
       6700 if Lc is not 16, 6A86 for other P1-P2

with its private key (SM2 with the default signer ID, or ECDSA P-256). Command bytes, SFIs
and the prefix are the simulator's own copy of docs/pki.md (:mod:`firmware_sim.spec.pki`).
Anything else returns None, for the OS and other applets to answer.
"""

from __future__ import annotations

from firmware_sim.apdu import Command, Response, status
from firmware_sim.cardos import Applet, CardOS
from firmware_sim.filesystem import DedicatedFile, TransparentEF
from firmware_sim.spec.pki import CARD_CERT_FID, COMMANDS, ISSUER_CERT_FID, PKI_DF_FID, PkiCommands
from firmware_sim.spec.status import SW
from firmware_sim.tlv import fci
from terminal.crypto.signing import Algorithm, PrivateKey, sign


def auth_message(challenge: bytes, commands: PkiCommands = COMMANDS) -> bytes:
    """What the card signs: ``prefix || challenge``."""
    return commands.auth_prefix + bytes(challenge)


class PkiApplet(Applet):
    """The PKI DF with the issuer and card certificates, and the card's signing key.

    ``issuer_cert`` None leaves the issuer EF out (a card that relies on the terminal's
    trust store). Nothing checks that ``private_key`` belongs to ``card_cert``: a clone is
    exactly a card where it does not. ``commands`` may be any table with the attributes of
    :class:`firmware_sim.spec.pki.PkiCommands`.
    """

    def __init__(
        self,
        private_key: PrivateKey,
        alg: Algorithm,
        card_cert: bytes,
        issuer_cert: bytes | None,
        *,
        commands: PkiCommands = COMMANDS,
    ) -> None:
        self.private_key = private_key
        self.alg = alg
        self.card_cert = bytes(card_cert)
        self.issuer_cert = None if issuer_cert is None else bytes(issuer_cert)
        self.commands = commands
        self.signatures = 0
        """INTERNAL AUTHENTICATE answers given (tests check that no check signs twice)."""

    def install(self, card: CardOS) -> None:
        c = self.commands
        df = card.mf.add(DedicatedFile(PKI_DF_FID, name=c.df_name, fci=fci(c.df_name)))
        if self.issuer_cert is not None:
            df.add(TransparentEF(ISSUER_CERT_FID, self.issuer_cert, sfi=c.issuer_cert_sfi))
        df.add(TransparentEF(CARD_CERT_FID, self.card_cert, sfi=c.card_cert_sfi))
        self.root = df

    def process(self, card: CardOS, cmd: Command) -> Response | None:
        cla, ins, p1, p2 = self.commands.internal_authenticate
        if cmd.cla != cla or cmd.ins != ins or not self.is_selected(card):
            return None
        if (cmd.p1, cmd.p2) != (p1, p2):
            return status(SW.INCORRECT_P1_P2)
        if len(cmd.data) != self.commands.challenge_length:
            return status(SW.WRONG_LENGTH)
        signature = sign(self.alg, self.private_key, auth_message(cmd.data, self.commands))
        self.signatures += 1
        return card.respond(cmd, signature)
