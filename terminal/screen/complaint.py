"""The complaint channel on the holder screen (article 20): a QR code of the complaint
web address, as a small SVG the page shows beside the phone number."""

from __future__ import annotations

from urllib.parse import urlsplit
from xml.sax.saxutils import escape

import qrcode
import qrcode.constants

from terminal.errors import ConfigError

MAX_URL = 300
"""Longer addresses make codes too dense for a phone across a counter."""


def check_complaint_url(url: str) -> str:
    """``url`` when it is an http(s) address a phone can open; ConfigError otherwise."""
    if not url:
        return url
    if len(url) > MAX_URL:
        raise ConfigError(f"longer than {MAX_URL} characters")
    if not url.startswith(("https://", "http://")) or any(
        c.isspace() or not c.isprintable() for c in url
    ):
        raise ConfigError(f"must be an http(s) address, not {url!r}")
    try:
        host = urlsplit(url).hostname
    except ValueError:  # a broken [IPv6] host
        host = None
    if not host:
        raise ConfigError(f"names no host: {url!r}")
    return url


def qr_svg(text: str, label: str) -> str:
    """An SVG image of a QR code of ``text`` (error correction M, the standard 4-module quiet
    zone), one path per row run so a kiosk draws it at any size without blur. ``label`` is
    the image's accessible name."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4)
    code.add_data(text)
    code.make(fit=True)
    matrix = code.get_matrix()
    size = len(matrix)
    runs: list[str] = []
    for y, row in enumerate(matrix):
        x = 0
        while x < size:
            if row[x]:
                start = x
                while x < size and row[x]:
                    x += 1
                runs.append(f"M{start} {y}h{x - start}v1h-{x - start}z")
            else:
                x += 1
    name = escape(label, {'"': "&quot;"})
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" '
        f'shape-rendering="crispEdges" role="img" aria-label="{name}">'
        f'<rect width="{size}" height="{size}" fill="#fff"/>'
        f'<path fill="#000" d="{"".join(runs)}"/></svg>'
    )
