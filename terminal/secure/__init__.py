"""Secure modules: where the SSSE master keys live and card cryptograms are computed.

:class:`SecureModule` is the interface (:mod:`terminal.secure.module`); a PSAM in a PC/SC slot
(:class:`PsamSecureModule`) and an operator key file (:class:`SoftwareSecureModule`,
format in :mod:`terminal.secure.keyfile`) implement it and pass one test suite.
"""

from terminal.secure.keyfile import (
    KeySet,
    format_key_file,
    generate_key_set,
    load_key_file,
    parse_key_file,
    write_key_file,
)
from terminal.secure.module import NO_TERMINAL_NUMBER, SecureModule
from terminal.secure.psam import PSAM_AID, PsamSecureModule
from terminal.secure.software import SoftwareSecureModule

__all__ = [
    "NO_TERMINAL_NUMBER",
    "PSAM_AID",
    "KeySet",
    "PsamSecureModule",
    "SecureModule",
    "SoftwareSecureModule",
    "format_key_file",
    "generate_key_set",
    "load_key_file",
    "parse_key_file",
    "write_key_file",
]
