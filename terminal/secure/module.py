"""The secure module interface: what the terminal asks of a PSAM or a software key file.

A secure module holds the master keys of the SSSE (``irk``, ``rkssse``, ``ukssse``, one set
per algorithm) and computes one thing with them, the **cryptogram** of
docs/card-authentication.md: derive the card key (two diversification levels: the region
factor of :func:`terminal.ssc.cardspec.region_factor`, then ATR historical bytes T6..TD), the
session key from the process factor, and return the leftmost 8 bytes of the data enciphered
under the session key. Master keys never leave it.

Two implementations pass one test suite (tests/unit/test_secure_module.py):
:class:`terminal.secure.software.SoftwareSecureModule` (an operator key file) and
:class:`terminal.secure.psam.PsamSecureModule` (a PSAM in a PC/SC slot).

Errors are :class:`terminal.errors.SecureModuleError` and its subclasses for what the module
lacks (a key, an algorithm, the module itself), :class:`terminal.errors.CryptoError` for
inputs no module could use, and the reader errors of a PSAM's connection unchanged.
"""

from __future__ import annotations

from typing import Protocol, TypeGuard, runtime_checkable

from terminal.crypto.symmetric import SymmetricAlgorithm
from terminal.errors import CryptoError
from terminal.ssc.auth import CRYPTOGRAM_LENGTH, PROCESS_FACTOR_LENGTH, KeyName
from terminal.ssc.cardspec import diversification_data

NO_TERMINAL_NUMBER = "000000000000"
"""The terminal number when the module has none (LD/T 33: 12 zeros without a PSAM)."""

TERMINAL_NUMBER_DIGITS = 12
SUPPORTED_ALGORITHMS = frozenset({SymmetricAlgorithm.DES3, SymmetricAlgorithm.SM4})
"""What any secure module can hold: SSF33 is a non-public cipher, never implemented."""


@runtime_checkable
class SecureModule(Protocol):
    """A holder of SSSE master keys that computes card cryptograms."""

    name: str
    """``"software"`` or ``"psam:<reader>"``: for logs and the journal, never a secret."""
    terminal_number: str
    """12 digits (the PSAM's EF16, or the key file's); ``NO_TERMINAL_NUMBER`` if unknown."""

    def algorithms(self) -> frozenset[SymmetricAlgorithm]:
        """The algorithms the module holds master keys for."""
        ...

    def cryptogram(
        self,
        key: KeyName,
        algorithm: SymmetricAlgorithm,
        region6: str,
        historical13: bytes,
        process_factor: bytes,
        data: bytes,
    ) -> bytes:
        """The 8-byte cryptogram of ``data`` under the session key of the card key of ``key``.

        Raises :class:`terminal.errors.AlgorithmMissingError` when the module has no keys for
        ``algorithm``, :class:`terminal.errors.KeyMissingError` when it lacks ``key``.
        """
        ...

    def close(self) -> None:
        """Release the module (a PSAM's connection). Idempotent."""
        ...


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
    """Validate what :meth:`SecureModule.cryptogram` receives, the same way for every module
    (so a PSAM and the software module refuse the same inputs with the same error), and
    return the diversification data D1, D2."""
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
