"""Writing an operator secret (a key file, credentials) so it is never readable by others.

The file is written by :func:`terminal.host.atomicfile.write_atomically` with mode 0600: at no
moment does a partial or world-readable secret exist.
"""

from __future__ import annotations

import os
from pathlib import Path

from terminal.errors import ConfigError
from terminal.host.atomicfile import write_atomically

FILE_MODE = 0o600


def write_secret_file(path: str | os.PathLike[str], text: str, *, overwrite: bool = True) -> None:
    """Write ``text`` to ``path`` with mode 0600, atomically; :class:`ConfigError` on failure,
    or when ``path`` exists and ``overwrite`` is False."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise ConfigError(f"{path}: already exists; not replacing it")
    try:
        write_atomically(path, text.encode("utf-8"), mode=FILE_MODE)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write: {exc.strerror or exc}") from None
