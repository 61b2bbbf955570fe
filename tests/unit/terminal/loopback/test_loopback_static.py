"""Pages as package data (terminal/loopback/static.py): read through importlib.resources,
listed in pyproject.toml so that an installed package has them, typed by suffix, inlined
with their CSP hashes. That the servers answer them as they are: test_screen_server.py and
test_runtime_status_page.py."""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import tomllib
from importlib import resources
from pathlib import Path

import pytest

from terminal.loopback.static import content_type, csp_hash, inline_page, read_files

PAGES = {
    ("terminal.screen", "page"): ("index.html", "screen.css", "screen.js"),
    ("terminal.runtime", "page"): ("status.html", "status.css", "status.js"),
}
PYPROJECT = Path(__file__).resolve().parents[4] / "pyproject.toml"


@pytest.mark.parametrize(
    ("package", "folder", "name"), [(*k, n) for k, v in PAGES.items() for n in v]
)
def test_page_files_are_package_data(package: str, folder: str, name: str) -> None:
    data = (resources.files(package) / folder / name).read_bytes()
    assert data.strip()
    assert read_files(package, folder, [name]) == {name: data}
    # Every one of them is listed for installation (an editable install finds them anyway,
    # a wheel only when pyproject.toml says so).
    globs = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["package-data"]
    top, _, sub = package.partition(".")
    assert any(fnmatch.fnmatch(f"{sub}/{folder}/{name}", g) for g in globs[top]), name


def test_the_status_page_inlines_its_files() -> None:
    files = read_files("terminal.runtime", "page", ["status.html", "status.css", "status.js"])
    page = inline_page(
        files["status.html"],
        ("status.css", files["status.css"]),
        ("status.js", files["status.js"]),
    )
    assert b"<link" not in page.html and b"src=" not in page.html
    assert page.html.count(b"<style>") == page.html.count(b"<script>") == 1


def test_csp_hash_is_the_sha256_of_the_source() -> None:
    digest = base64.b64encode(hashlib.sha256(b"a{}").digest()).decode()
    assert csp_hash(b"a{}") == f"'sha256-{digest}'"


def test_inline_page_needs_both_tags_once() -> None:
    html = b'<link rel="stylesheet" href="a.css"><p>x</p><script src="a.js"></script>'
    page = inline_page(html, ("a.css", b"p{}"), ("a.js", b"1;"))
    assert page.html == b"<style>p{}</style><p>x</p><script>1;</script>"
    assert (page.style_hash, page.script_hash) == (csp_hash(b"p{}"), csp_hash(b"1;"))
    with pytest.raises(ValueError):
        inline_page(b"<p>x</p>", ("a.css", b""), ("a.js", b""))
    with pytest.raises(ValueError):
        inline_page(html + html, ("a.css", b""), ("a.js", b""))


def test_content_types_by_suffix() -> None:
    assert content_type("a.html") == content_type("A.HTML") == "text/html; charset=utf-8"
    assert content_type("a.css") == "text/css; charset=utf-8"
    assert content_type("a.js") == "text/javascript; charset=utf-8"
    assert content_type("a.svg") == "image/svg+xml"
    assert content_type("a.wav") == "audio/wav"
    assert content_type("a") == content_type("a.exe") == "application/octet-stream"
