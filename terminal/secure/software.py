"""The software secure modules: master keys from an operator key file, computed in process.

For terminals without a PSAM slot (and for tests). :class:`SoftwareSecureModule` computes
exactly the cryptograms a PSAM computes, through :func:`terminal.ssc.auth.card_cryptogram`;
:class:`SoftwarePurchaseModule` the purchase MACs, through the
:class:`terminal.secure.purchase.PurchaseMacEngine` a PSAM runs. No APDU is involved. The
keys live in this process's memory, which is the trade-off an operator accepts by choosing a
key file over a PSAM (docs/card-authentication.md).
"""

from __future__ import annotations

import os

from terminal.crypto.symmetric import SymmetricAlgorithm
from terminal.errors import AlgorithmMissingError, KeyMissingError, SecureModuleError
from terminal.secure.keyfile import KeySet, TransitKeyName, load_key_file
from terminal.secure.module import (
    SUPPORTED_ALGORITHMS,
    check_algorithm,
    check_cryptogram_inputs,
    check_key_name,
)
from terminal.secure.purchase import PurchaseMacEngine
from terminal.ssc.auth import KeyName, card_cryptogram
from terminal.transit.secure_module import Mac1Answer, Mac1Request, Mac2Verdict


class SoftwareSecureModule:
    """A :class:`terminal.ssc.secure_module.SecureModule` over a :class:`KeySet`."""

    def __init__(self, keyset: KeySet, name: str = "software") -> None:
        self.name = name
        self.terminal_number = keyset.terminal_number
        self._keyset: KeySet | None = keyset

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> SoftwareSecureModule:
        """The module of the key file at ``path`` (:class:`ConfigError` if it is unusable)."""
        return cls(load_key_file(path))

    def __repr__(self) -> str:
        state = "closed" if self._keyset is None else repr(self._keyset)
        return f"SoftwareSecureModule(name={self.name!r}, {state})"

    def _keys(self) -> KeySet:
        if self._keyset is None:
            raise SecureModuleError(f"secure module {self.name} is closed")
        return self._keyset

    def algorithms(self) -> frozenset[SymmetricAlgorithm]:
        return self._keys().algorithms() & SUPPORTED_ALGORITHMS

    def cryptogram(
        self,
        key: KeyName,
        algorithm: SymmetricAlgorithm,
        region6: str,
        historical13: bytes,
        process_factor: bytes,
        data: bytes,
    ) -> bytes:
        key, alg = check_key_name(key), check_algorithm(algorithm)
        check_cryptogram_inputs(region6, historical13, process_factor, data)
        keyset = self._keys()
        if alg not in keyset.algorithms():
            raise AlgorithmMissingError(f"secure module {self.name} holds no {alg.name} keys")
        master = keyset.key(alg, key)
        if master is None:
            raise KeyMissingError(
                f"secure module {self.name} holds no {alg.name} {key.value} master key"
            )
        return card_cryptogram(
            alg, master, region6, bytes(historical13), bytes(process_factor), bytes(data)
        )

    def close(self) -> None:
        # Drop the reference so a closed module cannot be used by mistake; the bytes objects
        # themselves cannot be wiped in Python.
        self._keyset = None


class SoftwarePurchaseModule:
    """A :class:`terminal.transit.secure_module.PsamPurchase` from purchase master keys in
    RAM (tests, bench baselines): ``keyset`` holds the ``purchase`` keys.
    """

    def __init__(self, keyset: KeySet, serial: int = 0) -> None:
        # A key file path or a plain dict here is a caller's mistake to name at once, not
        # an AttributeError from deep inside the engine.
        if not isinstance(keyset, KeySet):
            raise TypeError("a SoftwarePurchaseModule needs a KeySet")
        masters = {
            alg: key
            for alg in keyset.algorithms()
            if (key := keyset.key(alg, TransitKeyName.PURCHASE)) is not None
        }
        self.terminal_number = keyset.terminal_number
        self._engine = PurchaseMacEngine(masters, bytes.fromhex(keyset.terminal_number), serial)

    def __repr__(self) -> str:
        return f"SoftwarePurchaseModule(terminal_number={self.terminal_number!r})"

    def purchase_mac1(self, request: Mac1Request) -> Mac1Answer:
        return self._engine.mac1(request)

    def verify_mac2(self, mac2: bytes, terminal_serial: int | None = None) -> Mac2Verdict:
        return self._engine.verify_mac2(mac2, terminal_serial)
