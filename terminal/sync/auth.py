"""The terminal's credentials file (docs/sync.md, "Terminal credentials file"): what it
needs to talk to its back office. Requests are signed with them by
:func:`terminal.wire.requests.request_headers`.

The credentials file (TOML, mode 0600) holds the terminal's 32-byte secret and the
deployment's card-token key. Neither ever appears in ``repr``/``str``, logs or error
messages: a bad value is reported by its name and what is wrong with it.
"""

from __future__ import annotations

import logging
import os
import stat
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from terminal.crypto.signing import Algorithm
from terminal.errors import ConfigError, JournalEntryError
from terminal.host.operatorfile import decode_operator_text, parse_toml, read_operator_file
from terminal.wire.journal import check_terminal_id
from terminal.wire.requests import request_headers

log = logging.getLogger(__name__)

SECRET_LENGTH = 32
TOKEN_KEY_LENGTH = 32
_HEX = frozenset("0123456789abcdefABCDEF")
_KNOWN = frozenset(
    {
        "terminal_id",
        "secret",
        "backoffice_url",
        "publication_key",
        "publication_algorithm",
        "token_key",
        "ca_file",
    }
)
_ALGORITHMS = frozenset(a.value for a in Algorithm)


# --- the credentials file -----------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class TerminalCredentials:
    """What a terminal needs to talk to its back office (docs/sync.md, credentials file).

    ``repr``/``str`` show the terminal, the URL and the CA file, never ``secret`` or
    ``token_key``, so credentials may appear in logs and tracebacks.
    """

    terminal_id: str
    secret: bytes
    backoffice_url: str
    publication_key: bytes
    publication_algorithm: str
    token_key: bytes
    ca_file: Path | None = None

    def __repr__(self) -> str:
        return (
            f"TerminalCredentials(terminal_id={self.terminal_id!r}, "
            f"backoffice_url={self.backoffice_url!r}, "
            f"publication_algorithm={self.publication_algorithm!r}, "
            f"ca_file={str(self.ca_file) if self.ca_file else None!r}, "
            "secret=<hidden>, token_key=<hidden>)"
        )

    __str__ = __repr__

    def headers(self, method: str, path_with_query: str, body: bytes, now: float) -> dict[str, str]:
        """Authentication headers of a request from this terminal."""
        return request_headers(self.terminal_id, self.secret, method, path_with_query, body, now)


def _hex_value(doc: dict[str, object], name: str, length: int | None, source: str) -> bytes:
    # Name the field and the problem, never the value: it may be a secret.
    value = doc.get(name)
    if value is None:
        raise ConfigError(f"{source}: {name} is missing")
    if not isinstance(value, str) or not value or not all(c in _HEX for c in value):
        raise ConfigError(f"{source}: {name} must be a string of hex digits")
    if len(value) % 2:
        raise ConfigError(f"{source}: {name} has an odd number of hex digits")
    raw = bytes.fromhex(value)
    if length is not None and len(raw) != length:
        raise ConfigError(
            f"{source}: {name} must be {2 * length} hex digits ({length} bytes), got {len(value)}"
        )
    return raw


def parse_credentials(
    text: str, source: str = "<credentials>", base_dir: Path | None = None
) -> TerminalCredentials:
    """The credentials in TOML ``text``; ``source`` names the file in errors and
    ``base_dir`` resolves a relative ``ca_file``. Every failure is a :class:`ConfigError`."""
    doc = parse_toml(text, source, "credentials file")
    unknown = doc.keys() - _KNOWN
    if unknown:
        raise ConfigError(f"{source}: unknown entries {', '.join(sorted(unknown))}")
    terminal_id = doc.get("terminal_id")
    try:
        check_terminal_id(terminal_id)  # type: ignore[arg-type]
    except JournalEntryError:
        raise ConfigError(f"{source}: terminal_id must be 1-32 of A-Z a-z 0-9 _ -") from None
    url = doc.get("backoffice_url")
    if not isinstance(url, str):
        raise ConfigError(f"{source}: backoffice_url is missing")
    try:
        parts = urllib.parse.urlsplit(url)
        # .port reads (and range-checks) the port: the client reads it later, too late to
        # name the file.
        usable = parts.scheme in ("http", "https") and bool(parts.hostname)
        usable = usable and (parts.port is None or parts.port > 0)
    except ValueError:  # "http://[::1", "http://host:99999"
        usable = False
    if not usable:
        raise ConfigError(f"{source}: backoffice_url must be an http:// or https:// URL")
    if parts.query or parts.fragment:
        raise ConfigError(f"{source}: backoffice_url must not have a query or fragment")
    algorithm = doc.get("publication_algorithm", "sm2")
    # isinstance first: "in" hashes the value, and a TOML array is unhashable.
    if not isinstance(algorithm, str) or algorithm not in _ALGORITHMS:
        raise ConfigError(
            f"{source}: publication_algorithm must be one of {', '.join(sorted(_ALGORITHMS))}"
        )
    publication_key = _hex_value(doc, "publication_key", None, source)
    if len(publication_key) != 65 or publication_key[0] != 4:
        raise ConfigError(f"{source}: publication_key must be an uncompressed point 04||X||Y")
    ca_file: Path | None = None
    if "ca_file" in doc:
        raw_ca = doc["ca_file"]
        if not isinstance(raw_ca, str) or not raw_ca or "\0" in raw_ca:
            raise ConfigError(f"{source}: ca_file must be a path")
        ca_file = Path(raw_ca)
        if not ca_file.is_absolute() and base_dir is not None:
            ca_file = base_dir / ca_file
    return TerminalCredentials(
        terminal_id=str(terminal_id),
        secret=_hex_value(doc, "secret", SECRET_LENGTH, source),
        backoffice_url=url.rstrip("/"),
        publication_key=publication_key,
        publication_algorithm=str(algorithm),
        token_key=_hex_value(doc, "token_key", TOKEN_KEY_LENGTH, source),
        ca_file=ca_file,
    )


def load_credentials(path: str | os.PathLike[str]) -> TerminalCredentials:
    """Read the terminal's credentials file; every failure is a :class:`ConfigError`.

    A file others may read is loaded (refusing would take the terminal out of service over
    a chmod) but logged as a warning: it holds the terminal's secret.
    """
    path = Path(path)
    raw = read_operator_file(path, "credentials file")
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the credentials: {exc.strerror or exc}") from None
    if mode & 0o077:
        log.warning(
            "credentials file %s is readable by others (mode %03o): chmod 600 it", path, mode
        )
    text = decode_operator_text(raw, str(path), "credentials file")
    return parse_credentials(text, str(path), path.parent)
