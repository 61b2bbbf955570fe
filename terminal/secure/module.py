"""What every secure module shares: the input checks and the terminal number rules.

The interfaces the secure modules implement are declared by the card applications that need
them - :class:`terminal.ssc.secure_module.SecureModule` (SSSE cryptograms) and
:class:`terminal.transit.secure_module.PsamPurchase` (T-Union purchase MACs) - as Keyple's
card extensions declare the SAM they drive; this package imports those declarations, the
applications never import this package.

Two implementations pass one test suite (tests/unit/terminal/secure/test_secure_module.py):
:class:`terminal.secure.software.SoftwareSecureModule` (an operator key file) and
:class:`terminal.secure.psam.PsamSecureModule` (a PSAM in a PC/SC slot). This module holds
what both check the same way, so that they refuse the same inputs with the same error.
"""

from __future__ import annotations

from typing import TypeGuard

from terminal.crypto.symmetric import SymmetricAlgorithm
from terminal.errors import CryptoError
from terminal.ssc.auth import CRYPTOGRAM_LENGTH, PROCESS_FACTOR_LENGTH, KeyName
from terminal.ssc.cardspec import diversification_data

NO_TERMINAL_NUMBER = "000000000000"
"""The terminal number when the module has none (LD/T 33: 12 zeros without a PSAM)."""

TERMINAL_NUMBER_DIGITS = 12
SUPPORTED_ALGORITHMS = frozenset({SymmetricAlgorithm.DES3, SymmetricAlgorithm.SM4})
"""What any secure module can hold: SSF33 is a non-public cipher, never implemented."""


def is_terminal_number(value: object) -> TypeGuard[str]:
    """True for a string of exactly 12 ASCII digits."""
    return (
        isinstance(value, str)
        and len(value) == TERMINAL_NUMBER_DIGITS
        and value.isascii()
        and value.isdigit()
    )


def check_algorithm(algorithm: SymmetricAlgorithm | int) -> SymmetricAlgorithm:
    """``algorithm`` as the enum; an unknown flag is a :class:`CryptoError`.

    SSF33 passes: it is a known algorithm no module holds, which the modules report as
    :class:`terminal.errors.AlgorithmMissingError` like any other algorithm they lack.
    """
    try:
        return SymmetricAlgorithm(algorithm)
    except ValueError:
        raise CryptoError(f"unknown symmetric algorithm {algorithm!r}") from None


def check_key_name(key: KeyName | str) -> KeyName:
    """``key`` as the enum (``"irk"`` is accepted); anything else is a :class:`CryptoError`."""
    try:
        return KeyName(key)
    except ValueError:
        raise CryptoError(f"unknown key name {key!r}") from None


def check_cryptogram_inputs(
    region6: str, historical13: bytes, process_factor: bytes, data: bytes
) -> tuple[bytes, bytes]:
    """Validate what :meth:`terminal.ssc.secure_module.SecureModule.cryptogram` receives,
    the same way for every module (so a PSAM and the software module refuse the same inputs
    with the same error), and return the diversification data D1, D2."""
    d1, d2 = diversification_data(region6, historical13)
    for what, value, size in (
        ("process factor", process_factor, PROCESS_FACTOR_LENGTH),
        ("cryptogram input", data, CRYPTOGRAM_LENGTH),
    ):
        if not isinstance(value, bytes | bytearray | memoryview):
            raise CryptoError(f"{what} must be bytes")
        if len(value) != size:
            raise CryptoError(f"{what} must be {size} bytes, got {len(value)}")
    return d1, d2
