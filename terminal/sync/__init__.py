"""Sync with the back office (docs/sync.md): the terminal's credentials file, its one back
office client, the background uploader of the journal and sender of terminal events, and the
verified downloads of published documents. What travels is defined in :mod:`terminal.wire`."""

from terminal.sync.auth import TerminalCredentials, load_credentials
from terminal.sync.client import BackOfficeClient
from terminal.sync.sender import backoff_delays
from terminal.sync.uploader import Uploader, UploadResult

__all__ = [
    "BackOfficeClient",
    "TerminalCredentials",
    "UploadResult",
    "Uploader",
    "backoff_delays",
    "load_credentials",
]
