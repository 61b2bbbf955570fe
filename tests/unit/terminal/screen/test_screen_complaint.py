"""The complaint channel (terminal/screen/complaint.py): which addresses are accepted, and the
QR code's SVG - well-formed, labelled, and decoding back to the address with zxing-cpp."""

from __future__ import annotations

import re
import string
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import zxingcpp
from hypothesis import given, settings
from hypothesis import strategies as st

from terminal.errors import ConfigError
from terminal.screen.complaint import MAX_URL, check_complaint_url, qr_svg

SVG = "{http://www.w3.org/2000/svg}"
RUN = re.compile(r"M(\d+) (\d+)h(\d+)v1h-(\d+)z")
QUIET_ZONE = 4
"""Modules of white around the code, as the standard asks."""


# --- the address ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://12333.example.gov.cn/complaint",
        "http://example.cn",
        "https://example.cn:8443/a/b?site=gate-7&lang=zh#form",
        "http://[2001:db8::1]/complaint",
        "https://example.cn/投诉",
        "https://example.cn/" + "a" * (MAX_URL - len("https://example.cn/")),
    ],
)
def test_http_and_https_addresses_are_accepted(url: str) -> None:
    assert check_complaint_url(url) == url


def test_no_address_is_no_complaint_code() -> None:
    assert check_complaint_url("") == ""


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.cn/complaint",
        "javascript:alert(1)",
        "data:text/html,hi",
        "mailto:complaints@example.cn",
        "//example.cn/complaint",
        "example.cn/complaint",
        "HTTPS//example.cn",
        " https://example.cn",
        "https://example.cn/a b",
        "https://example.cn/\n",
        "https://example.cn/\t",
        "https://example.cn/\u3000",
        "https://example.cn/\x00",
        "https://example.cn/\x7f",
        "https://",
        "http://",
        "https:///complaint",
        "https://:443/complaint",
        "http://[::1/complaint",
        "https://example.cn/" + "a" * (MAX_URL + 1 - len("https://example.cn/")),
    ],
)
def test_other_addresses_are_refused(url: str) -> None:
    with pytest.raises(ConfigError):
        check_complaint_url(url)


# --- the QR code ----------------------------------------------------------------------------


def modules(svg: str) -> np.ndarray:
    """The code's modules (True: dark) rebuilt from the SVG's path runs, checking that the
    runs stay inside the image and never overlap."""
    root = ET.fromstring(svg)
    size = int(root.get("viewBox", "").split()[2])
    assert root.get("viewBox") == f"0 0 {size} {size}"
    path = root.find(f"{SVG}path")
    assert path is not None
    d = path.get("d", "")
    runs = RUN.findall(d)
    assert "".join(f"M{x} {y}h{w}v1h-{back}z" for x, y, w, back in runs) == d
    dark = np.zeros((size, size), dtype=bool)
    for x, y, w, back in ((int(v) for v in run) for run in runs):
        assert w == back > 0
        assert x + w <= size and y < size
        assert not dark[y, x : x + w].any()
        dark[y, x : x + w] = True
    return dark


def decode(dark: np.ndarray, scale: int = 8, border: int = 4) -> list[str]:
    """What zxing-cpp reads from the modules drawn ``scale`` pixels each, with ``border`` more
    white modules around them."""
    image = np.where(np.pad(dark, border), 0, 255).astype(np.uint8)
    image = np.kron(image, np.ones((scale, scale), dtype=np.uint8))
    found = zxingcpp.read_barcodes(image)
    assert all(code.format == zxingcpp.BarcodeFormat.QRCode for code in found)
    return [code.text for code in found]


def test_svg_is_well_formed_and_labelled() -> None:
    label = "投诉网址二维码 / QR code <of> the \"complaint\" & 'address'"
    svg = qr_svg("https://example.cn/complaint", label)
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img"
    assert root.get("aria-label") == label
    assert "&lt;of&gt;" in svg and "&quot;complaint&quot;" in svg and "&amp;" in svg
    assert root.get("shape-rendering") == "crispEdges"
    rect = root.find(f"{SVG}rect")
    assert rect is not None
    assert rect.get("fill") == "#fff"


def test_code_has_the_quiet_zone_and_finder_patterns() -> None:
    dark = modules(qr_svg("https://example.cn/complaint", "code"))
    size = dark.shape[0]
    inner = size - 2 * QUIET_ZONE
    assert (inner - 21) % 4 == 0  # a QR version's size: 21, 25, 29...
    ring = np.ones((size, size), dtype=bool)
    ring[QUIET_ZONE:-QUIET_ZONE, QUIET_ZONE:-QUIET_ZONE] = False
    assert not dark[ring].any()
    q = QUIET_ZONE
    for y, x in ((q, q), (q, size - q - 7), (size - q - 7, q)):
        finder = dark[y : y + 7, x : x + 7]
        assert finder[0].all() and finder[6].all() and finder[:, 0].all() and finder[:, 6].all()
        assert finder[2:5, 2:5].all()
        assert not finder[1, 1:6].any()


def test_the_code_reads_back_as_the_address() -> None:
    url = "https://12333.example.gov.cn/complaint?site=gate-7&lang=zh"
    assert decode(modules(qr_svg(url, "code"))) == [url]


def test_the_quiet_zone_alone_is_enough_to_read_it() -> None:
    url = "https://example.cn/c"
    assert decode(modules(qr_svg(url, "code")), border=0) == [url]


def test_a_damaged_code_is_not_read_as_the_address() -> None:
    url = "https://example.cn/complaint"
    dark = modules(qr_svg(url, "code"))
    dark[QUIET_ZONE : QUIET_ZONE + 7, QUIET_ZONE : QUIET_ZONE + 7] = False  # a finder gone
    assert url not in decode(dark)


URL_CHARS = string.ascii_letters + string.digits + "-._~/?#[]@!$&'()*+,;=%"
URLS = st.builds(
    lambda scheme, host, path: f"{scheme}://{host}.cn/{path}",
    st.sampled_from(["http", "https"]),
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True),
    st.text(URL_CHARS, max_size=200),
)


@settings(max_examples=40, deadline=None)
@given(URLS)
def test_any_accepted_address_reads_back(url: str) -> None:
    assert check_complaint_url(url) == url
    assert decode(modules(qr_svg(url, "code"))) == [url]


def test_the_longest_address_reads_back() -> None:
    url = "https://example.cn/" + "x1/" * 100
    url = url[:MAX_URL]
    assert check_complaint_url(url) == url
    assert decode(modules(qr_svg(url, "code"))) == [url]
