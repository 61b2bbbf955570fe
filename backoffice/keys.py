"""Operator key files of the back office: the publication key and the card-token key.

Formats (TOML, mode 0600, written atomically)::

    # onecard back office publication key: operator secret, never committed
    algorithm = "sm2"
    private_key = "<64 hex>"

    # onecard card-token key: deployment secret, never committed
    token_key = "<64 hex>"

A token key file holding a bare hex line is accepted as well. Key material never appears in
error messages.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import stat
from pathlib import Path

from backoffice.errors import PublicationError
from backoffice.publish import PublicationKey
from terminal.crypto import signing
from terminal.errors import ConfigError, OneCardError
from terminal.host import secretfile
from terminal.host.operatorfile import parse_toml

log = logging.getLogger(__name__)

TOKEN_KEY_LENGTH = 32
_HEX = re.compile(r"[0-9a-fA-F]+")


def write_secret_file(path: str | os.PathLike[str], text: str, *, overwrite: bool = False) -> None:
    """Write ``text`` to ``path`` with mode 0600, atomically
    (:mod:`terminal.host.secretfile`)."""
    try:
        secretfile.write_secret_file(path, text, overwrite=overwrite)
    except ConfigError as exc:
        raise PublicationError(exc.reason) from None


def _read_secret_file(path: str | os.PathLike[str]) -> str:
    path = Path(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PublicationError(
            f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        # A warning, not a refusal: an operator who chose otherwise knows why.
        log.warning("%s is readable by others (mode %03o): chmod 600 it", path, mode & 0o777)
    return text


def _hex_value(value: object, length: int, where: str) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * length or not _HEX.fullmatch(value):
        raise PublicationError(f"{where} must be {2 * length} hex digits")
    return bytes.fromhex(value)


def format_publication_key(key: PublicationKey) -> str:
    scalar = signing.private_key_bytes(key.private_key).hex()
    return (
        "# onecard back office publication key: operator secret, never committed\n"
        f'algorithm = "{key.algorithm.value}"\n'
        f'private_key = "{scalar}"\n'
        f'# public_key = "{key.public_key.hex()}"  key_id = "{key.key_id}"\n'
    )


def write_publication_key(
    key: PublicationKey, path: str | os.PathLike[str], *, overwrite: bool = False
) -> None:
    write_secret_file(path, format_publication_key(key), overwrite=overwrite)


def load_publication_key(path: str | os.PathLike[str]) -> PublicationKey:
    """Read a publication key file (see the module docstring)."""
    text = _read_secret_file(path)
    try:
        data = parse_toml(text, str(path), "publication key file")
    except ConfigError as error:
        raise PublicationError(error.reason) from None
    try:
        algorithm = signing.Algorithm(data.get("algorithm", "sm2"))
    except ValueError:
        raise PublicationError(f"{path}: algorithm must be 'sm2' or 'ecdsa-p256'") from None
    scalar = _hex_value(data.get("private_key"), 32, f"{path}: private_key")
    try:
        return PublicationKey(algorithm, signing.load_private_key(algorithm, scalar))
    except OneCardError:
        raise PublicationError(f"{path}: private_key is not a valid key") from None


def new_token_key() -> bytes:
    """A fresh deployment card-token key (32 bytes)."""
    return secrets.token_bytes(TOKEN_KEY_LENGTH)


def write_token_key(key: bytes, path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
    text = (
        f'# onecard card-token key: deployment secret, never committed\ntoken_key = "{key.hex()}"\n'
    )
    write_secret_file(path, text, overwrite=overwrite)


def load_token_key(path: str | os.PathLike[str]) -> bytes:
    """Read a card-token key file: TOML ``token_key = "<hex>"`` or a bare hex line."""
    text = _read_secret_file(path)
    stripped = text.strip()
    if _HEX.fullmatch(stripped):
        value: object = stripped
    else:
        try:
            value = parse_toml(text, str(path), "token key file").get("token_key")
        except ConfigError as error:
            raise PublicationError(error.reason) from None
    if not isinstance(value, str) or not _HEX.fullmatch(value) or len(value) % 2:
        raise PublicationError(f"{path}: token_key must be hex")
    key = bytes.fromhex(value)
    if len(key) < 16:
        raise PublicationError(f"{path}: token_key must be at least 16 bytes")
    return key
