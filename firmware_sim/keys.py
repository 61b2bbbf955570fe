"""Master keys as a simulated PSAM holds them: plain bytes by (algorithm flag, key name).

:class:`MasterKeys` is the PSAM's own key store. The issuing side (``cli.py``,
``issuing.py``) builds it from the operator key file; :meth:`MasterKeys.coerce` also takes
any object shaped like the terminal's key set (a ``terminal_number`` and a ``keys`` mapping
``(algorithm, name) -> bytes`` whose names carry ``.value``), so the simulator reads a key
set without importing the terminal's key-file code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from firmware_sim.spec.psam import MAINTENANCE_KEY_NAME, PURCHASE_KEY_NAME, SSC_KEY_NAMES
from firmware_sim.spec.ssc import Algorithm

KEY_NAMES = frozenset({*SSC_KEY_NAMES.values(), PURCHASE_KEY_NAME, MAINTENANCE_KEY_NAME})
KEY_LENGTH = 16


@dataclass(frozen=True, repr=False)
class MasterKeys:
    """The 12-digit terminal number and the 16-byte master keys, by (algorithm, name).

    Algorithms are the card algorithm flags (1 3DES, 3 SM4); names ``irk``, ``rkssse``,
    ``ukssse``, ``purchase`` and ``maintenance`` (the e-purse application maintenance
    master, MAMK). ``repr`` names the keys, never their values.
    """

    terminal_number: str
    keys: Mapping[tuple[int, str], bytes] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        number = self.terminal_number
        if len(number) != 12 or not number.isascii() or not number.isdigit():
            raise ValueError("a terminal number is 12 digits")
        frozen: dict[tuple[int, str], bytes] = {}
        for (algorithm, name), key in dict(self.keys).items():
            if algorithm not in (Algorithm.DES3, Algorithm.SM4) or name not in KEY_NAMES:
                raise ValueError(f"no master key {algorithm!r}/{name!r} in a PSAM")
            if len(key) != KEY_LENGTH:
                raise ValueError(f"master key {name} is {KEY_LENGTH} bytes, not {len(key)}")
            frozen[(int(algorithm), name)] = bytes(key)
        object.__setattr__(self, "keys", MappingProxyType(frozen))

    def __repr__(self) -> str:
        names = ", ".join(f"{a}/{n}" for a, n in sorted(self.keys))
        return f"MasterKeys({self.terminal_number}, <{names}>)"

    @classmethod
    def coerce(cls, keys: object) -> MasterKeys:
        """``keys`` itself, or a key set of the terminal's shape read into MasterKeys."""
        if isinstance(keys, MasterKeys):
            return keys
        try:
            number = str(keys.terminal_number)  # type: ignore[attr-defined]
            items = keys.keys.items()  # type: ignore[attr-defined]
        except AttributeError:
            raise TypeError("master keys need a terminal_number and a keys mapping") from None
        table = {(int(alg), str(getattr(name, "value", name))): key for (alg, name), key in items}
        return cls(number, table)

    @property
    def terminal_number_bytes(self) -> bytes:
        """The terminal number as 6 BCD bytes (EF16)."""
        return bytes.fromhex(self.terminal_number)

    def algorithms(self) -> frozenset[int]:
        """The algorithms with at least one key."""
        return frozenset(alg for alg, _ in self.keys)

    def key(self, algorithm: int, name: str) -> bytes | None:
        """The master key, or None when absent."""
        return self.keys.get((int(algorithm), name))

    def purchase_master(self, algorithm: int) -> bytes | None:
        """The e-purse purchase master key of ``algorithm``, or None."""
        return self.key(algorithm, PURCHASE_KEY_NAME)

    def maintenance_master(self, algorithm: int) -> bytes | None:
        """The e-purse application maintenance master (MAMK) of ``algorithm``, or None."""
        return self.key(algorithm, MAINTENANCE_KEY_NAME)

    def has_purchase_keys(self) -> bool:
        return any(name == PURCHASE_KEY_NAME for _, name in self.keys)
