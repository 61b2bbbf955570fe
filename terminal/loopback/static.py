"""Static pages from package data: files read once through :mod:`importlib.resources`, so
an installed package serves what the repository does (``[tool.setuptools.package-data]``).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import PurePosixPath

from terminal.loopback.answers import NO_STORE, Answer, Request

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".wav": "audio/wav",
}
ASSET_CACHE = "max-age=3600"
"""``Cache-Control`` of a file that changes only with the software (styles, scripts)."""


def content_type(name: str) -> str:
    """The ``Content-Type`` of a file by its suffix (``application/octet-stream`` for one
    not listed)."""
    return CONTENT_TYPES.get(PurePosixPath(name).suffix.lower(), "application/octet-stream")


def read_files(package: str, folder: str, names: Iterable[str]) -> dict[str, bytes]:
    """The bytes of each of ``names`` in ``folder`` of ``package``'s data."""
    base = resources.files(package) / folder
    return {name: (base / name).read_bytes() for name in names}


@dataclass(frozen=True)
class StaticFile:
    """One file as an endpoint: ``GET`` answers ``body`` as ``content_type``."""

    body: bytes
    content_type: str
    cache: str = NO_STORE

    def __call__(self, request: Request) -> Answer:
        return Answer(200, self.body, self.content_type, self.cache)


def csp_hash(source: bytes) -> str:
    """The CSP source expression (``'sha256-...'``) that lets exactly ``source`` run."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(source).digest()).decode() + "'"


@dataclass(frozen=True)
class InlinedPage:
    """An HTML page with its stylesheet and script inlined, and the CSP hashes that let
    exactly those run."""

    html: bytes
    style_hash: str
    script_hash: str


def inline_page(
    html: bytes, stylesheet: tuple[str, bytes], script: tuple[str, bytes]
) -> InlinedPage:
    """``html`` with ``<link rel="stylesheet" href="NAME">`` and ``<script
    src="NAME"></script>`` replaced by the files' text, so that the page is one
    self-contained answer that a hash-pinned CSP allows (and the file still opens in a
    browser as it is). ``stylesheet`` and ``script`` are (name, bytes); a page without
    those exact tags is a :class:`ValueError` (a broken package, found at start-up)."""
    style_name, style = stylesheet
    script_name, code = script
    link = f'<link rel="stylesheet" href="{style_name}">'.encode()
    tag = f'<script src="{script_name}"></script>'.encode()
    for needle in (link, tag):
        if html.count(needle) != 1:
            raise ValueError(f"the page must contain {needle.decode()!r} once")
    page = html.replace(link, b"<style>" + style + b"</style>")
    page = page.replace(tag, b"<script>" + code + b"</script>")
    return InlinedPage(page, csp_hash(style), csp_hash(code))
