"""Operator files - credentials, key files, trust stores, e-code worlds, ``terminal.toml`` -
read into plain values, or a :class:`~terminal.errors.ConfigError` that names the file.

JSON goes through the one strict reader of the house
(:func:`terminal.wire.canonical.parse_json`: no ``NaN`` or ``1e400``, no integer of 4,301
digits, no lone surrogate, no key twice, at most 64 levels), so an operator file is read
exactly as a document from the back office is. TOML goes through ``tomllib``, with every
way it can fail mapped into the error family: its syntax errors, the interpreter's limit on
integer digits, and the ``RecursionError`` of deeply nested arrays, which ``tomllib`` does
not bound itself. Files are read up to a size bound: an operator file is small, and the
bound keeps a wrong path (a device, a log) from filling memory.

Messages name the file and what is wrong, never a value: an operator file may hold a secret.
"""

from __future__ import annotations

import os
import tomllib
from typing import Any

from terminal.errors import ConfigError
from terminal.wire.canonical import JsonError, parse_json_text

MAX_FILE_BYTES = 1 << 20
"""Largest operator file read: the largest real one (a trust store of a few hundred
certificates) is tens of kilobytes."""


def read_operator_file(
    path: str | os.PathLike[str], what: str, max_bytes: int = MAX_FILE_BYTES
) -> bytes:
    """The bytes of the ``what`` file at ``path`` (e.g. "trust store"), at most
    ``max_bytes`` of them; :class:`ConfigError` naming the file otherwise."""
    source = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(max_bytes + 1)
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read the {what}: {exc.strerror or exc}") from None
    if len(raw) > max_bytes:
        raise ConfigError(f"{source}: the {what} is larger than {max_bytes} bytes")
    return raw


def parse_operator_json(raw: str | bytes, source: str, what: str) -> Any:
    """The JSON value of ``raw`` (text or UTF-8 bytes) under the strict reader's rules;
    :class:`ConfigError` naming ``source`` otherwise."""
    try:
        return parse_json_text(raw)
    except JsonError as exc:
        raise ConfigError(f"{source}: the {what} is not strict JSON: {exc.reason}") from None


def load_operator_json(
    path: str | os.PathLike[str], what: str, max_bytes: int = MAX_FILE_BYTES
) -> Any:
    """Read and parse the JSON ``what`` file at ``path`` (see :func:`parse_operator_json`)."""
    return parse_operator_json(read_operator_file(path, what, max_bytes), os.fspath(path), what)


def parse_toml(text: str, source: str, what: str) -> dict[str, Any]:
    """The table of TOML ``text``; :class:`ConfigError` naming ``source`` for anything the
    parser refuses or fails on."""
    if not isinstance(text, str):
        raise ConfigError(f"{source}: the {what} is not text")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate: no file holds one, and a value holding one fails far away.
        raise ConfigError(f"{source}: the {what} is not UTF-8 text") from None
    try:
        return tomllib.loads(text)
    except ValueError as exc:  # TOMLDecodeError, and the interpreter's limit on digits
        raise ConfigError(f"{source}: not a TOML {what}: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{source}: the {what} nests arrays or tables too deeply") from None


def decode_operator_text(raw: bytes, source: str, what: str) -> str:
    """``raw`` as UTF-8 text; :class:`ConfigError` naming ``source`` otherwise."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: the {what} is not UTF-8 text") from None


def load_operator_toml(
    path: str | os.PathLike[str], what: str, max_bytes: int = MAX_FILE_BYTES
) -> dict[str, Any]:
    """Read and parse the TOML ``what`` file at ``path`` (see :func:`parse_toml`)."""
    source = os.fspath(path)
    text = decode_operator_text(read_operator_file(path, what, max_bytes), source, what)
    return parse_toml(text, source, what)
