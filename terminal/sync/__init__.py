"""Sync with the back office (docs/sync.md): request signing, the terminal's credentials
file, and the background uploader of the journal."""

from terminal.sync.auth import TerminalCredentials, load_credentials, sign_request
from terminal.sync.uploader import Uploader, UploadResult, backoff_delays

__all__ = [
    "TerminalCredentials",
    "UploadResult",
    "Uploader",
    "backoff_delays",
    "load_credentials",
    "sign_request",
]
