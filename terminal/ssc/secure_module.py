"""The secure module the social security application needs: card cryptograms.

The SSC sessions (:mod:`terminal.ssc.authenticity`, :mod:`terminal.ssc.reading`) declare
here what they ask of a secure module, as Keyple's card extensions declare the SAM they
drive: the application owns the interface, :mod:`terminal.secure` implements it (a PSAM in
a PC/SC slot, a software module over an operator key file) and imports this module, never
the other way round.

A secure module holds the master keys of the SSSE (``irk``, ``rkssse``, ``ukssse``, one set
per algorithm) and computes one thing with them, the **cryptogram** of
docs/card-authentication.md: derive the card key (two diversification levels: the region
factor of :func:`terminal.ssc.cardspec.region_factor`, then ATR historical bytes T6..TD), the
session key from the process factor, and return the leftmost 8 bytes of the data enciphered
under the session key. Master keys never leave it.

Errors are :class:`terminal.errors.SecureModuleError` and its subclasses for what the module
lacks (a key, an algorithm, the module itself), :class:`terminal.errors.CryptoError` for
inputs no module could use, and the reader errors of a PSAM's connection unchanged.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from terminal.crypto.symmetric import SymmetricAlgorithm
from terminal.ssc.auth import KeyName


@runtime_checkable
class SecureModule(Protocol):
    """A holder of SSSE master keys that computes card cryptograms."""

    name: str
    """``"software"`` or ``"psam:<reader>"``: for logs and the journal, never a secret."""
    terminal_number: str
    """12 digits (the PSAM's EF16, or the key file's); 12 zeros if unknown."""

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
