"""The issuer master keys the back office checks TACs with, and the operators it clears for
(docs/clearing.md) - two operator files, read by the strict operator-file reader
(:mod:`terminal.host.operatorfile`).

The issuer key file (TOML, mode 0600, never committed)::

    # onecard issuer master keys: secret
    [des3]
    purchase = "<32 hex>"
    tac = "<32 hex>"          # optional: the issuer's separate TAC master (MTK)
    [sm4]
    purchase = "<32 hex>"

Either table may be absent; an unknown table or key, a value that is not 32 hex digits, or
a file without any key is a :class:`ConfigError` naming the place, never the value.

How a card derives its TAC key is not confirmed (docs/clearing.md "TAC key schemes"), so
the file says it per algorithm: with a ``tac`` master, the card's TAC key is diversified
from it (a separate DTK); without, from the purchase key DPK (the project's convention).

The operators file (TOML) says which terminals each operator runs::

    [operators.cq-bus-1]
    terminals = ["T0001", "T0002"]
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from terminal.crypto.symmetric import SymmetricAlgorithm
from terminal.errors import ConfigError
from terminal.host.operatorfile import load_operator_toml
from terminal.host.secretfile import write_secret_file
from terminal.wire.journal import TERMINAL_ID

log = logging.getLogger(__name__)

TABLES = {"des3": SymmetricAlgorithm.DES3, "sm4": SymmetricAlgorithm.SM4}
KEY_NAME = "purchase"
TAC_KEY_NAME = "tac"
_KEY_HEX = re.compile(r"[0-9A-Fa-f]{32}")
OPERATOR_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")


@dataclass(frozen=True)
class IssuerKeys:
    """Purchase master keys by algorithm and, where the issuer's cards hold a separate TAC
    key, the TAC masters (MTK) by algorithm. Never printed: ``repr`` names the algorithms
    only."""

    masters: Mapping[SymmetricAlgorithm, bytes] = field(repr=False)
    tac_masters: Mapping[SymmetricAlgorithm, bytes] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "masters", MappingProxyType(dict(self.masters)))
        object.__setattr__(self, "tac_masters", MappingProxyType(dict(self.tac_masters)))
        stray = sorted(alg.name for alg in set(self.tac_masters) - set(self.masters))
        if stray:
            raise ConfigError(f"a TAC master without a purchase master for {stray[0]}")

    def __repr__(self) -> str:
        names = sorted(alg.name for alg in self.masters)
        if not self.tac_masters:
            return f"IssuerKeys({names})"
        return f"IssuerKeys({names}, tac={sorted(alg.name for alg in self.tac_masters)})"


def parse_issuer_keys(table: Mapping[str, object], source: str) -> IssuerKeys:
    """The keys of a parsed issuer key file; :class:`ConfigError` naming ``source``."""
    masters: dict[SymmetricAlgorithm, bytes] = {}
    tac_masters: dict[SymmetricAlgorithm, bytes] = {}
    for name, entry in table.items():
        if name not in TABLES:
            raise ConfigError(f"{source}: unknown table [{name}] (expected des3, sm4)")
        if not isinstance(entry, dict):
            raise ConfigError(f"{source}: {name} must be a table")
        unknown = sorted(set(entry) - {KEY_NAME, TAC_KEY_NAME})
        if unknown:
            raise ConfigError(f"{source}: unknown key {unknown[0]!r} in [{name}]")
        value = entry.get(KEY_NAME)
        if value is None:
            raise ConfigError(f"{source}: [{name}] has no {KEY_NAME} key")
        if not isinstance(value, str) or not _KEY_HEX.fullmatch(value):
            raise ConfigError(f"{source}: [{name}] {KEY_NAME} must be 32 hex digits")
        masters[TABLES[name]] = bytes.fromhex(value)
        tac = entry.get(TAC_KEY_NAME)
        if tac is not None:
            if not isinstance(tac, str) or not _KEY_HEX.fullmatch(tac):
                raise ConfigError(f"{source}: [{name}] {TAC_KEY_NAME} must be 32 hex digits")
            tac_masters[TABLES[name]] = bytes.fromhex(tac)
    if not masters:
        raise ConfigError(f"{source}: the issuer key file holds no key")
    return IssuerKeys(masters, tac_masters)


def load_issuer_keys(path: str | os.PathLike[str]) -> IssuerKeys:
    """Read the issuer key file at ``path``. A file others may read is loaded but logged:
    refusing would stop clearing over a chmod."""
    table = load_operator_toml(path, "issuer key file")
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mode = 0
    if mode & 0o077:
        log.warning("issuer key file %s is readable by others (mode %03o)", path, mode)
    return parse_issuer_keys(table, os.fspath(path))


def format_issuer_keys(keys: IssuerKeys) -> str:
    """The issuer key file text of ``keys`` (secret: handle as such)."""
    lines = ["# onecard issuer master keys: secret, mode 0600, never committed"]
    for name, alg in TABLES.items():
        if alg in keys.masters:
            lines += [f"[{name}]", f'{KEY_NAME} = "{keys.masters[alg].hex().upper()}"']
            if alg in keys.tac_masters:
                lines.append(f'{TAC_KEY_NAME} = "{keys.tac_masters[alg].hex().upper()}"')
    return "\n".join(lines) + "\n"


def write_issuer_keys(keys: IssuerKeys, path: str | os.PathLike[str]) -> None:
    """Write ``keys`` to ``path``, mode 0600, atomically."""
    write_secret_file(path, format_issuer_keys(keys))


def load_operators(path: str | os.PathLike[str]) -> dict[str, str]:
    """The operators file at ``path`` as terminal id -> operator id; :class:`ConfigError`
    for a bad id, a terminal of two operators, or anything but ``[operators.ID] terminals``."""
    source = os.fspath(path)
    table = load_operator_toml(path, "operators file")
    if set(table) != {"operators"} or not isinstance(table["operators"], dict):
        raise ConfigError(f"{source}: expected only [operators.<id>] tables")
    owner: dict[str, str] = {}
    for operator, entry in table["operators"].items():
        if not OPERATOR_ID.fullmatch(operator):
            raise ConfigError(
                f"{source}: operator id {operator[:40]!r} is not [A-Za-z0-9_-]{{1,32}}"
            )
        if not isinstance(entry, dict) or set(entry) != {"terminals"}:
            raise ConfigError(f"{source}: [operators.{operator}] takes terminals = [...] only")
        terminals = entry["terminals"]
        if not isinstance(terminals, list):
            raise ConfigError(f"{source}: [operators.{operator}] terminals must be a list")
        for terminal in terminals:
            if not isinstance(terminal, str) or not TERMINAL_ID.fullmatch(terminal):
                raise ConfigError(f"{source}: [operators.{operator}] holds a bad terminal id")
            if terminal in owner:
                raise ConfigError(f"{source}: terminal {terminal} belongs to two operators")
            owner[terminal] = operator
    return owner
