"""Document distribution through the real components: the back office on its
Starlette/uvicorn stack over SQLite, the terminal's BackOfficeClient, Downloader and
DocumentStore. ETag/304 for every document, rendering once per version, the hotlist
snapshot for a terminal that fell behind, corrupt and truncated snapshots refused with the
previous list kept, an older back office without ETags or snapshots."""

from __future__ import annotations

import dataclasses
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.hostile import DEADLINE, EXAMPLES
from hypothesis import given, settings
from hypothesis import strategies as st

from backoffice import publish
from backoffice.documents import Rendered, etag_matches, parse_byte_range
from backoffice.errors import RangeNotSatisfiableError
from backoffice.server import BackOffice
from backoffice.storage import SqliteStorage
from terminal.crypto import signing
from terminal.host.clock import SystemClock
from terminal.hotlist import HotList
from terminal.hotlist_snapshot import SNAPSHOT_CONTENT_TYPE
from terminal.sync.auth import TerminalCredentials
from terminal.sync.client import BackOfficeClient
from terminal.sync.downloads import ETAGS_FILE, HOTLIST_FILE, DocumentStore, Downloader, Outcome
from terminal.wire.canonical import canonical_json

TERMINAL = "T0001"
SECRET = bytes(range(32))
APPLIST = {
    "services": [
        {"code": "museum-entry", "name": "Museum", "scope": "chongqing", "valid_from": "2025-01-01"}
    ]
}


class CountingStorage(SqliteStorage):
    """SQLite storage that counts what document polls ask of it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def document_text(self, kind: str) -> str | None:
        self._count("document_text")
        return super().document_text(kind)

    def hotlist_snapshot(self, since: int) -> Any:
        self._count("hotlist_snapshot")
        return super().hotlist_snapshot(since)

    def hotlist_scan(self, consume: Any, batch: int = 65536) -> int:
        self._count("hotlist_scan")
        return super().hotlist_scan(consume, batch)


@dataclasses.dataclass
class World:
    office: BackOffice
    storage: CountingStorage
    url: str
    key: publish.PublicationKey
    tmp: Path

    def entries(self, start: int, count: int) -> list[str]:
        return [f"{(k * 0x9E3779B97F4A7C15) % (1 << 64):016x}" for k in range(start, start + count)]

    def hotlist_add(self, entries: list[str]) -> None:
        for entry in entries:
            self.storage.hotlist_change(entry, True)

    def credentials(self, url: str | None = None) -> TerminalCredentials:
        return TerminalCredentials(
            TERMINAL, SECRET, url or self.url, self.key.public_key, "sm2", bytes(32)
        )

    def terminal(self, name: str = "docs", url: str | None = None) -> tuple[DocumentStore, Any]:
        directory = self.tmp / name
        directory.mkdir(exist_ok=True)
        store = DocumentStore(directory, self.key.public_key, "sm2")
        client = BackOfficeClient(self.credentials(url), SystemClock())
        return store, client


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    storage = CountingStorage(str(tmp_path / "bo.db"), hotlist_history=5)
    storage.enrol(TERMINAL, SECRET, SystemClock().now())
    key = publish.generate_publication_key()
    office = BackOffice(storage, key, SystemClock())
    server = office.serve()
    try:
        yield World(office, storage, server.url, key, tmp_path)
    finally:
        server.shutdown()
        storage.close()


def keys_of(entries: list[str]) -> list[int]:
    return sorted(int(e, 16) for e in entries)


def test_every_document_is_answered_304_once_the_terminal_has_it(world: World) -> None:
    world.hotlist_add(world.entries(0, 3))
    world.office.publish("trustlist", {"issuers": ["k1"]})
    world.office.publish("applist", APPLIST)
    store, client = world.terminal()
    downloader = Downloader(store, client, SystemClock())
    first = downloader.run_once()
    assert {n: r.outcome for n, r in first.results.items()} == {
        "hotlist": Outcome.APPLIED,
        "trustlist": Outcome.APPLIED,
        "applist": Outcome.APPLIED,
    }
    calls = dict(world.storage.calls)
    second = downloader.run_once()
    assert all(r.outcome is Outcome.UNCHANGED for r in second.results.values())
    # Nothing read but the version check: no document, no delta.
    assert world.storage.calls == calls
    # And on the wire it is a 304 with the same ETag, no body.
    for path in ("/v1/hotlist?since=3", "/v1/trustlist", "/v1/applist"):
        answer = client.get_document(path)
        assert answer.status == 200 and answer.etag
        again = client.get_document(path, answer.etag)
        assert (again.status, again.body, again.etag) == (304, b"", answer.etag)
    client.close()


def test_a_new_version_gets_through_the_etag(world: World) -> None:
    world.office.publish("trustlist", {"issuers": ["k1"]})
    world.hotlist_add(world.entries(0, 2))
    store, client = world.terminal()
    downloader = Downloader(store, client, SystemClock())
    downloader.run_once()
    world.office.publish("trustlist", {"issuers": ["k1", "k2"]})
    world.hotlist_add(world.entries(2, 1))
    report = downloader.run_once()
    assert report.results["trustlist"].outcome is Outcome.APPLIED
    assert store.trust_list is not None and store.trust_list["issuers"] == ["k1", "k2"]
    assert report.results["hotlist"].outcome is Outcome.APPLIED
    assert store.hotlist.version == 3
    client.close()


def test_documents_are_rendered_once_per_version(world: World) -> None:
    world.office.publish("applist", APPLIST)
    world.hotlist_add(world.entries(0, 4))
    for _ in range(20):
        status, _ = (r := world.office.handle("GET", "/v1/applist", {}, b"")).status, r
    # The pure handler refuses unsigned requests; polls go through the documents cache:
    assert status == 401
    docs = world.office.documents
    versions = docs.versions()
    for _ in range(20):
        assert docs.stored("applist", versions.documents["applist"]) is not None
        assert docs.hotlist(2, snapshot_ok=False).version == 4
    assert world.storage.calls.get("document_text") == 1
    assert world.storage.calls.get("hotlist_snapshot") == 1


def test_a_terminal_that_fell_behind_gets_one_snapshot_then_the_delta(world: World) -> None:
    store, client = world.terminal()
    downloader = Downloader(store, client, SystemClock())
    world.hotlist_add(world.entries(0, 3))
    assert downloader.run_once().results["hotlist"].outcome is Outcome.APPLIED
    # Far more changes than the 5 kept: no delta reaches back to version 3.
    added = world.entries(3, 40)
    world.hotlist_add(added)
    for entry in world.entries(0, 2):
        world.storage.hotlist_change(entry, False)
    report = downloader.run_once()
    assert report.results["hotlist"].outcome is Outcome.APPLIED
    expected = keys_of(world.entries(2, 41))
    assert store.hotlist.version == 45
    assert store.hotlist.keys().tolist() == expected
    # A fresh terminal (version 0) got the first snapshot; the one held then (version 3)
    # is older than the kept deltas now, so one new one was built.
    assert world.storage.calls["hotlist_scan"] == 2
    # On disk, the terminal's own format, loadable after a restart.
    reloaded = HotList.load(store.directory / HOTLIST_FILE)
    assert (reloaded.version, reloaded.keys().tolist()) == (45, expected)
    assert downloader.run_once().results["hotlist"].outcome is Outcome.UNCHANGED
    # A second terminal that fell behind is served the snapshot already built.
    other_store, other = world.terminal("other")
    Downloader(other_store, other, SystemClock()).run_once()
    assert other_store.hotlist.keys().tolist() == expected
    assert world.storage.calls["hotlist_scan"] == 2
    client.close()
    other.close()


def _tamper(world: World, change: Any) -> None:
    docs = world.office.documents
    snapshot = docs.snapshot(docs.versions().hotlist_floor)
    docs._snapshot = Rendered(
        change(snapshot.body), snapshot.etag, SNAPSHOT_CONTENT_TYPE, snapshot.version
    )


@pytest.mark.parametrize(
    "change",
    [
        lambda body: body[: len(body) - 7],  # truncated payload
        lambda body: body[:40],  # truncated header
        lambda body: body[:-30] + bytes([body[-30] ^ 1]) + body[-29:],  # a flipped bit
        lambda body: body + b"junk",  # padded
        lambda body: b"XX" + body[2:],  # not a snapshot
    ],
    ids=["truncated", "truncated-header", "bit-flip", "padded", "bad-magic"],
)
def test_a_corrupt_snapshot_is_refused_and_the_previous_list_kept(world: World, change) -> None:
    store, client = world.terminal()
    downloader = Downloader(store, client, SystemClock())
    world.hotlist_add(world.entries(0, 3))
    downloader.run_once()
    before_file = (store.directory / HOTLIST_FILE).read_bytes()
    before = store.hotlist
    world.hotlist_add(world.entries(3, 20))
    _tamper(world, change)
    result = downloader.run_once().results["hotlist"]
    assert result.outcome is Outcome.REFUSED
    assert result.code == "hotlist_snapshot_error"
    assert store.hotlist is before
    assert (store.directory / HOTLIST_FILE).read_bytes() == before_file
    # No temporary file left, nor a partial download (refused: the next one starts afresh).
    assert sorted(p.name for p in store.directory.iterdir()) == [ETAGS_FILE, HOTLIST_FILE]
    client.close()


def test_an_old_terminal_without_snapshots_gets_the_json_full_list(world: World) -> None:
    world.hotlist_add(world.entries(0, 12))
    store, client = world.terminal()
    # A plain fetch: what a terminal of before sends (no Accept, no If-None-Match).
    report = Downloader(store, client.fetch, SystemClock()).run_once()
    assert report.results["hotlist"].outcome is Outcome.APPLIED
    assert store.hotlist.keys().tolist() == keys_of(world.entries(0, 12))
    assert "hotlist_scan" not in world.storage.calls
    client.close()


class OldBackOffice:
    """A back office of before: signed JSON documents, no ETag, ``Accept`` ignored."""

    def __init__(self, documents: dict[str, bytes]) -> None:
        self.seen: list[dict[str, str]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                outer.seen.append({k.lower(): v for k, v in self.headers.items()})
                body = documents[self.path.split("?")[0]]
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_the_terminal_falls_back_with_an_older_back_office(world: World) -> None:
    key = world.key
    docs = {
        "/v1/hotlist": canonical_json(
            publish.sign_document(
                {
                    "kind": "hotlist-delta",
                    "version": 7,
                    "base": 0,
                    "added": ["00000000000000ff"],
                    "removed": [],
                },
                key,
            )
        ),
        "/v1/trustlist": canonical_json(
            publish.sign_document({"kind": "trustlist", "version": 2, "issuers": []}, key)
        ),
        "/v1/applist": canonical_json(
            publish.sign_document({"kind": "applist", "version": 3, **APPLIST}, key)
        ),
    }
    old = OldBackOffice(docs)
    try:
        store, client = world.terminal(url=old.url)
        downloader = Downloader(store, client, SystemClock())
        first = downloader.run_once()
        assert all(r.outcome is Outcome.APPLIED for r in first.results.values())
        assert store.hotlist.keys().tolist() == [255]
        second = downloader.run_once()
        assert all(r.outcome is Outcome.UNCHANGED for r in second.results.values())
        assert all("if-none-match" not in h for h in old.seen)
        client.close()
    finally:
        old.stop()


def test_etag_matching() -> None:
    assert etag_matches('"a"', '"a"')
    assert etag_matches('W/"a", "b"', '"a"')
    assert etag_matches("*", '"a"')
    assert not etag_matches('"b"', '"a"')
    assert not etag_matches(None, '"a"')
    assert not etag_matches("", '"a"')


def test_the_publication_key_signs_the_snapshot_header(world: World) -> None:
    world.hotlist_add(world.entries(0, 2))
    docs = world.office.documents
    body = docs.snapshot(0).body
    # The header is a signed document of the publication key.
    length = int.from_bytes(body[8:12], "little")
    from terminal.wire.document import verify_document

    header = verify_document(
        body[12 : 12 + length], world.key.public_key, "sm2", "hotlist-snapshot"
    )
    assert header["entries"] == 2 and header["version"] == 2
    assert signing.Algorithm.SM2.value == "sm2"


# --- what the document cache asks of storage, on both databases ---------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def any_storage(request, tmp_path) -> Iterator[Any]:
    from tests.unit.backoffice.test_backoffice_storage import storage as storage_fixture

    yield from storage_fixture.__wrapped__(request, tmp_path)


def test_versions_and_scan_on_both_databases(any_storage) -> None:
    from backoffice.documents import DocumentCache

    key = publish.generate_publication_key()
    assert any_storage.document_versions().hotlist == 0
    entries = sorted(f"{(k * 0x9E3779B97F4A7C15) % (1 << 64):016x}" for k in range(1, 30))
    for entry in entries:
        any_storage.hotlist_change(entry, True)
    any_storage.hotlist_change(entries[0], False)
    any_storage.publish_document("trustlist", lambda v: {"kind": "trustlist", "version": v})
    versions = any_storage.document_versions()
    assert (versions.hotlist, versions.hotlist_floor) == (30, 25)
    assert versions.documents == {"trustlist": 1}
    seen: list[list[str]] = []
    assert any_storage.hotlist_scan(seen.append, batch=7) == 30
    assert [len(b) for b in seen] == [7, 7, 7, 7]
    assert [e for b in seen for e in b] == entries[1:]
    # The cache builds a snapshot from that scan that a terminal reads back whole.
    built = DocumentCache(any_storage, key).snapshot(versions.hotlist_floor)
    assert built.version == 30 and built.content_type == SNAPSHOT_CONTENT_TYPE


def test_the_version_check_is_reused_for_its_ttl(tmp_path: Path) -> None:
    from backoffice.documents import DocumentCache

    storage = CountingStorage(str(tmp_path / "bo.db"))
    key = publish.generate_publication_key()
    now = [0.0]
    cache = DocumentCache(storage, key, ttl=1.0, monotonic=lambda: now[0])
    calls: list[int] = []
    real = storage.document_versions

    def counted() -> Any:
        calls.append(1)
        return real()

    storage.document_versions = counted  # type: ignore[method-assign]
    storage.hotlist_change("00000000000000aa", True)
    assert cache.versions().hotlist == 1
    storage.hotlist_change("00000000000000bb", True)
    now[0] = 0.5
    assert cache.versions().hotlist == 1 and len(calls) == 1  # within the TTL: reused
    now[0] = 1.0
    assert cache.versions().hotlist == 2 and len(calls) == 2
    cache.invalidate()  # this process published: asked again at once
    assert cache.versions().hotlist == 2 and len(calls) == 3
    storage.close()


_RANGE_TEXT = st.one_of(
    st.text(max_size=40),
    st.builds(
        lambda unit, first, last, sep: f"{unit}={first}{sep}{last}",
        st.sampled_from(["bytes", "BYTES", " bytes ", "items", ""]),
        st.sampled_from(["", "0", "7", "-1", "99999999999999999999", "٣", " 12 "]),
        st.sampled_from(["", "0", "9", "1000", "-5", "99999999999999999999"]),
        st.sampled_from(["-", "--", ",", "-0,1-", ""]),
    ),
)


@settings(max_examples=EXAMPLES, deadline=DEADLINE)
@given(header=st.one_of(st.none(), _RANGE_TEXT), size=st.integers(min_value=1, max_value=1 << 40))
def test_any_range_header_is_a_range_within_the_body_none_or_a_416(
    header: str | None, size: int
) -> None:
    """A ``Range`` header is outside text: it gives a range inside the body, None (the
    whole body is sent) or the family's 416 - never another exception."""
    try:
        got = parse_byte_range(header, size)
    except RangeNotSatisfiableError as error:
        assert error.size == size
        return
    if got is not None:
        first, last = got
        assert 0 <= first <= last < size
