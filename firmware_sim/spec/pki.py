"""The PKI application of third-generation cards: this project's choice (docs/pki.md §4).

The real card's asymmetric command set is not public (unconfirmed), so these are the bytes
docs/pki.md fixes. The simulator keeps its own copy: a change on one side only shows up as
a failing test.
"""

from __future__ import annotations

from dataclasses import dataclass

PKI_DF_NAME = bytes.fromhex("504B492EC9E7BBE1B1A3D5CF")
"""DF name ``PKI.社会保障`` in GBK (12 bytes)."""
PKI_DF_FID = 0xDF10
ISSUER_CERT_FID = 0xC001
CARD_CERT_FID = 0xC002


@dataclass(frozen=True)
class PkiCommands:
    """The PKI command bytes (attribute names shared with the terminal's table, so a test
    can hand either to the applet)."""

    df_name: bytes = PKI_DF_NAME
    internal_authenticate: tuple[int, int, int, int] = (0x00, 0x88, 0x00, 0x00)
    issuer_cert_sfi: int = 0x01
    card_cert_sfi: int = 0x02
    challenge_length: int = 16
    auth_prefix: bytes = b"onecard/card-auth/v1"


COMMANDS = PkiCommands()
