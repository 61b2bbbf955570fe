"""The counter API's token file: the credential the hospital system sends as
``Authorization: Bearer <token>`` (docs/runtime.md, "Hospital hand-off").

The file holds one line, the token. It is the operator's: mode 0600, made at the first start
when missing (``secrets.token_urlsafe(32)``: 256 random bits), and refused when anyone else
may read or write it - a token other local users can read is no credential at all, and the
API it guards hands out holder records. Error messages and log lines name the file, never
its content.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

from terminal.errors import ConfigError
from terminal.host.operatorfile import decode_operator_text, read_operator_file
from terminal.host.secretfile import write_secret_file
from terminal.loopback.credential import BearerToken

log = logging.getLogger(__name__)

WHAT = "counter API token file"
MAX_BYTES = 1024


def load_token(path: str | os.PathLike[str]) -> BearerToken:
    """The token in the file at ``path``, made first (mode 0600) when there is none.
    :class:`ConfigError` naming the file when it cannot be made or read, when others may
    read or write it, or when it holds no token (see
    :data:`terminal.loopback.credential.TOKEN`)."""
    file = Path(path)
    if not file.exists():
        _make(file)
    try:
        info = file.stat()
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read the {WHAT}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{file}: the {WHAT} must be a regular file")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"{file}: the {WHAT} may be read or written by others (mode {mode:03o}); "
            f"chmod 600 it, and make a new token if others could have read it"
        )
    text = decode_operator_text(read_operator_file(file, WHAT, MAX_BYTES), str(file), WHAT)
    try:
        return BearerToken(text.strip())
    except ValueError as exc:
        raise ConfigError(f"{file}: the {WHAT} holds no token: {exc}") from None


def _make(file: Path) -> None:
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{file}: cannot make the {WHAT}: {exc.strerror or exc}") from None
    write_secret_file(file, secrets.token_urlsafe(32) + "\n", overwrite=False)
    log.warning(
        "counter API: made a new token in %s (mode 0600); give it to the hospital system "
        "(Authorization: Bearer)",
        file,
    )
