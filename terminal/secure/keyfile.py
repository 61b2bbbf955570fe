"""The operator key file: SSSE master keys for the software module and for personalising PSAMs.

Format (TOML, docs/card-authentication.md)::

    # onecard key file: operator secret, never committed
    terminal_number = "000000000001"   # 12 digits
    [des3]
    irk = "<32 hex>"
    rkssse = "<32 hex>"
    ukssse = "<32 hex>"
    purchase = "<32 hex>"              # optional: T-Union e-purse purchase master key
    maintenance = "<32 hex>"           # optional: e-purse application maintenance master
    [sm4]
    irk = "<32 hex>"
    rkssse = "<32 hex>"
    ukssse = "<32 hex>"

``purchase`` (:class:`TransitKeyName`) is the e-purse purchase master key the PSAM computes
MAC1 / checks MAC2 with (docs/transit.md); it is optional, and a file without it reads as
before. It is kept out of :class:`terminal.ssc.auth.KeyName` because that enum lists the SSSE
keys a cryptogram may be asked for.

Either algorithm table may be absent (a module without SM4), and a table may leave out keys
(a terminal that only reads needs no ``ukssse``); an empty table is refused as a likely
mistake. Every key is 16 bytes: two-key 3DES or SM4.

Key material never appears in ``repr``/``str`` or in error messages: a bad value is reported
by its place (``[sm4] irk``) and what is wrong with it, never by its content.
"""

from __future__ import annotations

import enum
import logging
import os
import secrets
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from terminal.crypto.symmetric import SymmetricAlgorithm
from terminal.errors import ConfigError
from terminal.host.operatorfile import parse_toml
from terminal.host.secretfile import write_secret_file
from terminal.secure.module import is_terminal_number
from terminal.ssc.auth import KeyName

log = logging.getLogger(__name__)

KEY_LENGTH = 16

TABLES: dict[str, SymmetricAlgorithm] = {
    "des3": SymmetricAlgorithm.DES3,
    "sm4": SymmetricAlgorithm.SM4,
}
"""Table name in the key file -> algorithm. SSF33 has no table: no module implements it."""
TABLE_NAMES = {alg: name for name, alg in TABLES.items()}

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_HEADER = "# onecard key file: operator secret, never committed\n"


class TransitKeyName(enum.Enum):
    """Master keys of the transit e-purse a module may hold besides the SSSE keys."""

    PURCHASE = "purchase"  # diversified per card into its purchase key (DPK)
    MAINTENANCE = "maintenance"
    """Application maintenance master (应用维护主密钥), diversified per card into the key
    whose MAC APPLICATION BLOCK (``84 1E``) carries (docs/transit.md "Blocking a hotlisted
    e-purse")."""


AnyKeyName = KeyName | TransitKeyName
ALL_KEY_NAMES: tuple[AnyKeyName, ...] = (*KeyName, *TransitKeyName)
"""Every key name a key file table may hold, in the order the file lists them."""
_BY_VALUE: dict[str, AnyKeyName] = {name.value: name for name in ALL_KEY_NAMES}

KeyMap = Mapping[tuple[SymmetricAlgorithm, AnyKeyName], bytes]


@dataclass(frozen=True, repr=False)
class KeySet:
    """The master keys of one secure module and its 12-digit terminal number.

    ``keys`` maps ``(algorithm, key name)`` to the 16-byte master key; it is frozen (a
    read-only mapping) on construction. ``repr``/``str`` name the keys present, never their
    values, so a KeySet may appear in logs and tracebacks.
    """

    terminal_number: str
    keys: KeyMap = field(hash=False)  # a mapping is unhashable: hash by terminal number

    def __post_init__(self) -> None:
        if not is_terminal_number(self.terminal_number):
            raise ConfigError("terminal number must be 12 digits")
        frozen: dict[tuple[SymmetricAlgorithm, AnyKeyName], bytes] = {}
        for entry, value in dict(self.keys).items():
            if not (isinstance(entry, tuple) and len(entry) == 2):
                raise ConfigError("keys are indexed by (algorithm, key name)")
            alg: SymmetricAlgorithm | None
            try:
                alg = SymmetricAlgorithm(entry[0])
            except (TypeError, ValueError):
                alg = None
            name = entry[1]
            if alg not in TABLE_NAMES or not isinstance(name, KeyName | TransitKeyName):
                raise ConfigError(f"no key {entry[0]!r}/{name!r} in a key set")
            where = f"[{TABLE_NAMES[alg]}] {name.value}"
            if not isinstance(value, bytes | bytearray):
                raise ConfigError(f"{where}: a key must be bytes")
            if len(value) != KEY_LENGTH:
                raise ConfigError(f"{where}: a key must be {KEY_LENGTH} bytes, got {len(value)}")
            frozen[(alg, name)] = bytes(value)
        object.__setattr__(self, "keys", MappingProxyType(frozen))

    def algorithms(self) -> frozenset[SymmetricAlgorithm]:
        """The algorithms with at least one key."""
        return frozenset(alg for alg, _ in self.keys)

    def key(self, algorithm: SymmetricAlgorithm, name: AnyKeyName) -> bytes | None:
        """The master key, or None when the set lacks it."""
        return self.keys.get((algorithm, name))

    def names(self, algorithm: SymmetricAlgorithm) -> list[KeyName]:
        """The key names present for ``algorithm``, in KeyName order."""
        return [name for name in KeyName if (algorithm, name) in self.keys]

    def all_names(self, algorithm: SymmetricAlgorithm) -> list[AnyKeyName]:
        """Every key name present for ``algorithm``, transit keys included, in file order."""
        return [name for name in ALL_KEY_NAMES if (algorithm, name) in self.keys]

    def __repr__(self) -> str:
        tables = "; ".join(
            f"{TABLE_NAMES[alg]}: {' '.join(n.value for n in self.all_names(alg))}"
            for alg in sorted(self.algorithms())
        )
        return f"KeySet(terminal_number={self.terminal_number!r}, keys=<{tables or 'none'}>)"

    __str__ = __repr__


# --- reading --------------------------------------------------------------------------------


def _parse_key(value: object, where: str) -> bytes:
    # Messages name the place and the problem; the value itself is secret and never echoed.
    if not isinstance(value, str):
        raise ConfigError(f"{where}: a key must be a string of {2 * KEY_LENGTH} hex digits")
    if not all(c in _HEX_DIGITS for c in value):
        raise ConfigError(f"{where}: a key must be hex digits only")
    if len(value) != 2 * KEY_LENGTH:
        raise ConfigError(
            f"{where}: a key must be {2 * KEY_LENGTH} hex digits ({KEY_LENGTH} bytes), "
            f"got {len(value)}"
        )
    return bytes.fromhex(value)


def parse_key_file(text: str, source: str = "<key file>") -> KeySet:
    """The KeySet of key file ``text``; ``source`` names it in errors.

    Raises :class:`ConfigError`, and nothing else, for anything that is not a valid key file:
    TOML syntax, a missing or malformed terminal number, an unknown table or key, a key that
    is not 32 hex digits, an empty table, a file with no keys at all.
    """
    doc = parse_toml(text, source, "key file")
    keys: dict[tuple[SymmetricAlgorithm, AnyKeyName], bytes] = {}
    terminal_number: object = None
    for entry, value in doc.items():
        if entry == "terminal_number":
            terminal_number = value
            continue
        alg = TABLES.get(entry)
        if alg is None:
            allowed = ", ".join(["terminal_number", *(f"[{t}]" for t in TABLES)])
            raise ConfigError(f"{source}: unknown entry {entry!r} (expected {allowed})")
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {entry} must be a table [{entry}]")
        if not value:
            raise ConfigError(f"{source}: table [{entry}] holds no keys")
        for key_name, key_value in value.items():
            name = _BY_VALUE.get(key_name)
            if name is None:
                known = ", ".join(n.value for n in ALL_KEY_NAMES)
                raise ConfigError(
                    f"{source}: unknown key {key_name!r} in [{entry}] (expected {known})"
                )
            keys[(alg, name)] = _parse_key(key_value, f"{source}: [{entry}] {key_name}")
    if terminal_number is None:
        raise ConfigError(f"{source}: terminal_number is missing")
    if not is_terminal_number(terminal_number):
        raise ConfigError(f'{source}: terminal_number must be 12 digits in quotes ("000000000001")')
    if not keys:
        raise ConfigError(f"{source}: the key file holds no keys")
    return KeySet(terminal_number, keys)


def load_key_file(path: str | os.PathLike[str]) -> KeySet:
    """Read and parse the key file at ``path``; every failure is a :class:`ConfigError`.

    A key file others may read is still loaded (refusing would take a terminal out of service
    over a chmod) but logged as a warning.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the key file: {exc.strerror or exc}") from None
    if stat.S_IMODE(mode) & 0o077:
        log.warning(
            "key file %s is readable by others (mode %03o): chmod 600 it",
            path,
            stat.S_IMODE(mode),
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the key file is not UTF-8 text") from None
    return parse_key_file(text, str(path))


# --- writing --------------------------------------------------------------------------------


def generate_key_set(
    terminal_number: str,
    algorithms: Iterable[SymmetricAlgorithm] = (SymmetricAlgorithm.DES3, SymmetricAlgorithm.SM4),
    *,
    purchase: bool = False,
) -> KeySet:
    """A fresh KeySet: every key of every algorithm from ``secrets`` (a CSPRNG).

    ``purchase`` adds the e-purse purchase master key to every table (left out by default so
    a plain SSSE key set stays what it was).

    For tests, simulated PSAMs and a first deployment; production master keys come from the
    issuer's key management.
    """
    keys: dict[tuple[SymmetricAlgorithm, AnyKeyName], bytes] = {}
    names: tuple[AnyKeyName, ...] = ALL_KEY_NAMES if purchase else tuple(KeyName)
    for algorithm in algorithms:
        alg = SymmetricAlgorithm(algorithm)
        if alg not in TABLE_NAMES:
            raise ConfigError(f"no key file table for algorithm {alg.name}")
        for name in names:
            keys[(alg, name)] = secrets.token_bytes(KEY_LENGTH)
    return KeySet(terminal_number, keys)


def format_key_file(keyset: KeySet) -> str:
    """The key file text of ``keyset`` (contains the keys: handle as the secret it is)."""
    lines = [_HEADER.rstrip("\n"), f'terminal_number = "{keyset.terminal_number}"']
    for alg in sorted(keyset.algorithms()):
        lines += ["", f"[{TABLE_NAMES[alg]}]"]
        for name in keyset.all_names(alg):
            value = keyset.keys[(alg, name)]
            lines.append(f'{name.value} = "{value.hex().upper()}"')
    return "\n".join(lines) + "\n"


def write_key_file(keyset: KeySet, path: str | os.PathLike[str], *, overwrite: bool = True) -> None:
    """Write ``keyset`` to ``path`` with mode 0600, atomically.

    The text goes to a temporary file created 0600 in the same directory (so the keys are
    never in a file others can read, not even briefly), is flushed to disk, then renamed over
    ``path`` (a file that was there is replaced whole, and ends up 0600 too). An operator
    command should pass ``overwrite=False``: master keys lost to a typo are not recoverable.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise ConfigError(f"{path}: a key file is already there; not replacing it")
    write_secret_file(path, format_key_file(keyset))
