"""Writing an operator secret (a key file, credentials) so it is never readable by others.

The file is created 0600 by ``mkstemp`` in the target directory, written, fsynced and
renamed over the target: at no moment does a partial or world-readable secret exist.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from terminal.errors import ConfigError

FILE_MODE = 0o600


def write_secret_file(path: str | os.PathLike[str], text: str, *, overwrite: bool = True) -> None:
    """Write ``text`` to ``path`` with mode 0600, atomically; :class:`ConfigError` on failure,
    or when ``path`` exists and ``overwrite`` is False."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise ConfigError(f"{path}: already exists; not replacing it")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=".onecard-", dir=path.parent)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp_name, FILE_MODE)
        os.replace(tmp_name, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise ConfigError(f"{path}: cannot write: {exc.strerror or exc}") from None
