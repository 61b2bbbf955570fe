"""An e-code world directory (``onecard code world``, :mod:`firmware_sim.ecode_issuing`):
which trust list a terminal loads, which root key signs it, and the deployment's card-token
key, as its ``manifest.json`` names them.

The manifest is an operator file like any other: read by the one strict JSON reader
(:mod:`terminal.host.operatorfile`) and checked field by field, so a missing or mistyped
entry is a :class:`~terminal.errors.ConfigError` naming the file - never a ``KeyError``
from deep in a command.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from terminal.crypto.signing import Algorithm
from terminal.errors import ConfigError
from terminal.host.operatorfile import load_operator_json, read_operator_file

MANIFEST = "manifest.json"
_MAX_KEY_FILE = 4096


@dataclass(frozen=True)
class EcodeWorld:
    """The files of an e-code world that a verifier needs."""

    trust_list: Path
    root_public_key: Path
    algorithm: Algorithm
    token_key: Path | None = None


def _path(value: object, where: str, source: str) -> Path:
    if not isinstance(value, str) or not value or "\0" in value:
        raise ConfigError(f"{source}: {where} must be a file path")
    return Path(value)


def load_world(directory: str | os.PathLike[str]) -> EcodeWorld:
    """The world whose manifest is ``directory/manifest.json``; :class:`ConfigError` for a
    file that is missing, not strict JSON, or lacks an entry."""
    path = Path(directory) / MANIFEST
    source = str(path)
    doc = load_operator_json(path, "e-code world manifest")
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: an e-code world manifest is a JSON object")
    root = doc.get("root")
    if not isinstance(root, dict):
        raise ConfigError(f"{source}: root must be an object naming the root key files")
    algorithm = doc.get("algorithm")
    if not isinstance(algorithm, str) or algorithm not in {a.value for a in Algorithm}:
        raise ConfigError(f"{source}: algorithm must be one of {[a.value for a in Algorithm]}")
    token_key = doc.get("token_key")
    return EcodeWorld(
        trust_list=_path(doc.get("trust_list"), "trust_list", source),
        root_public_key=_path(root.get("public_key"), "root.public_key", source),
        algorithm=Algorithm(algorithm),
        token_key=None if token_key is None else _path(token_key, "token_key", source),
    )


def read_hex_key_file(path: str | os.PathLike[str], what: str) -> bytes:
    """The bytes of a key file holding one hex line (a root public key ``04||X||Y``, a
    card-token key); :class:`ConfigError` naming the file and ``what`` otherwise."""
    raw = read_operator_file(path, what, _MAX_KEY_FILE)
    try:
        return bytes.fromhex(raw.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise ConfigError(f"{os.fspath(path)}: the {what} is not one line of hex") from None
