"""Secure modules: where the master keys live and card cryptograms and purchase MACs are
computed.

The card applications declare what they need of a secure module -
:class:`terminal.ssc.secure_module.SecureModule` (SSSE cryptograms) and
:class:`terminal.transit.secure_module.PsamPurchase` (T-Union purchase MACs) - and this
package implements them: a PSAM in a PC/SC slot (:class:`PsamSecureModule`, both
interfaces) and an operator key file (format in :mod:`terminal.secure.keyfile`):
:class:`SoftwareSecureModule` and :class:`SoftwarePurchaseModule`, which runs the
:class:`PurchaseMacEngine` a PSAM runs (:mod:`terminal.secure.purchase`).
"""

from terminal.secure.keyfile import (
    KeySet,
    format_key_file,
    generate_key_set,
    load_key_file,
    parse_key_file,
    write_key_file,
)
from terminal.secure.module import NO_TERMINAL_NUMBER
from terminal.secure.psam import PSAM_AID, PsamSecureModule
from terminal.secure.purchase import PurchaseMacEngine
from terminal.secure.software import SoftwarePurchaseModule, SoftwareSecureModule

__all__ = [
    "NO_TERMINAL_NUMBER",
    "PSAM_AID",
    "KeySet",
    "PsamSecureModule",
    "PurchaseMacEngine",
    "SoftwarePurchaseModule",
    "SoftwareSecureModule",
    "format_key_file",
    "generate_key_set",
    "load_key_file",
    "parse_key_file",
    "write_key_file",
]
