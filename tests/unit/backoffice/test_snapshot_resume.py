"""Slow links and restarts, through the real back office (uvicorn) and the terminal's real
client: a snapshot download cut mid-way resumes with Range/If-Range and applies; a snapshot
replaced meanwhile restarts cleanly; a corrupt partial download is refused with the old list
kept; the terminal's ETags survive a restart; terminal keys are kept per process."""

from __future__ import annotations

import contextlib
import socket
import stat
import threading
from pathlib import Path

from terminal.host.clock import SystemClock
from terminal.sync.downloads import (
    ETAGS_FILE,
    HOTLIST_FILE,
    PARTIAL_SNAPSHOT_FILE,
    DocumentStore,
    Downloader,
    Outcome,
)
from tests.unit.backoffice.test_document_distribution import APPLIST, World, keys_of, world

__all__ = ["world"]  # the fixture, shared


class CuttingProxy:
    """A TCP proxy to the back office that cuts its first connection after ``limit`` bytes
    of answer (a mobile link dropping mid-download); later connections pass whole."""

    def __init__(self, upstream: str, limit: int) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.limit: int | None = limit
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            limit, self.limit = self.limit, None
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._pipe, args=(client, server, None), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, limit), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket, limit: int | None) -> None:
        sent = 0
        try:
            while limit is None or sent < limit:
                data = source.recv(65536 if limit is None else min(65536, limit - sent))
                if not data:
                    break
                sink.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self.listener.close()


def _behind(world: World, count: int) -> tuple[DocumentStore, Downloader, CuttingProxy, int]:
    """A terminal at version 3 whose back office moved on ``count`` changes (more than the 5
    kept): its next hotlist is a snapshot, reached through a proxy that cuts it half-way."""
    world.hotlist_add(world.entries(0, 3))
    store, client = world.terminal()
    Downloader(store, client, SystemClock()).run_once()
    client.close()
    world.hotlist_add(world.entries(3, count))
    docs = world.office.documents
    size = len(docs.snapshot(docs.versions().hotlist_floor).body)
    proxy = CuttingProxy(world.url, 400 + size // 2)  # the answer's head, half the snapshot
    store, client = world.terminal(url=proxy.url)
    return store, Downloader(store, client, SystemClock()), proxy, size


def test_a_cut_snapshot_download_resumes_where_it_stopped(world: World) -> None:
    store, downloader, proxy, size = _behind(world, 20_000)
    first = downloader.run_once().results["hotlist"]
    assert first.outcome is Outcome.UNAVAILABLE and store.hotlist.version == 3
    partial = store.directory / PARTIAL_SNAPSHOT_FILE
    held = partial.stat().st_size
    assert 0 < held < size
    assert stat.S_IMODE(partial.stat().st_mode) == 0o600
    # A restart in between: the partial download and its ETag are on disk.
    store = DocumentStore(store.directory, world.key.public_key, "sm2")
    _, client = world.terminal(url=proxy.url)
    resumed = Downloader(store, client, SystemClock()).run_once().results["hotlist"]
    assert resumed.outcome is Outcome.APPLIED
    assert store.hotlist.keys().tolist() == keys_of(world.entries(0, 20_003))
    assert not partial.exists()
    client.close()
    proxy.close()


def test_a_snapshot_replaced_meanwhile_restarts_cleanly(world: World) -> None:
    store, downloader, proxy, _ = _behind(world, 20_000)
    downloader.run_once()
    assert (store.directory / PARTIAL_SNAPSHOT_FILE).exists()
    # The back office moves beyond the snapshot held: a new one, another ETag.
    world.hotlist_add(world.entries(20_003, 10))
    builds = world.office.documents.snapshot_builds
    report = downloader.run_once().results["hotlist"]
    assert world.office.documents.snapshot_builds == builds + 1
    assert report.outcome is Outcome.APPLIED  # If-Range did not match: 200, whole
    assert store.hotlist.keys().tolist() == keys_of(world.entries(0, 20_013))
    assert not (store.directory / PARTIAL_SNAPSHOT_FILE).exists()
    proxy.close()


def test_a_corrupt_partial_download_is_refused_and_the_old_list_kept(world: World) -> None:
    store, downloader, proxy, _ = _behind(world, 20_000)
    downloader.run_once()
    partial = store.directory / PARTIAL_SNAPSHOT_FILE
    data = bytearray(partial.read_bytes())
    data[len(data) // 2] ^= 0x40  # a flipped bit in the payload held on disk
    partial.write_bytes(bytes(data))
    before, before_file = store.hotlist, (store.directory / HOTLIST_FILE).read_bytes()
    result = downloader.run_once().results["hotlist"]
    assert result.outcome is Outcome.REFUSED and result.code == "hotlist_snapshot_error"
    assert store.hotlist is before
    assert (store.directory / HOTLIST_FILE).read_bytes() == before_file
    assert not partial.exists()  # the next round downloads it afresh, and applies it
    assert downloader.run_once().results["hotlist"].outcome is Outcome.APPLIED
    assert store.hotlist.version == 20_003
    proxy.close()


def test_etags_survive_a_restart_so_the_first_round_is_304s(world: World) -> None:
    world.hotlist_add(world.entries(0, 3))
    world.office.publish("trustlist", {"issuers": ["k1"]})
    world.office.publish("applist", APPLIST)
    store, client = world.terminal()
    assert Downloader(store, client, SystemClock()).run_once().ok
    client.close()
    etags = store.directory / ETAGS_FILE
    assert stat.S_IMODE(etags.stat().st_mode) == 0o600
    calls = dict(world.storage.calls)
    # A restart: a new store and downloader over the same directory.
    store, client = world.terminal()
    report = Downloader(store, client, SystemClock()).run_once()
    assert all(r.outcome is Outcome.UNCHANGED for r in report.results.values())
    assert world.storage.calls == calls  # 304s: no document read, none rendered
    client.close()
    # A damaged ETags file only costs one download.
    etags.write_bytes(b"{not json")
    store, client = world.terminal()
    again = Downloader(store, client, SystemClock()).run_once()
    assert again.ok
    assert b'"etags"' in etags.read_bytes()  # written afresh from what came
    client.close()


def test_terminal_keys_are_kept_and_a_revocation_here_is_seen_at_once(tmp_path: Path) -> None:
    from backoffice import publish
    from backoffice.server import BackOffice
    from backoffice.storage import SqliteStorage
    from terminal.sync.auth import TerminalCredentials
    from terminal.sync.client import BackOfficeClient

    class Counting(SqliteStorage):
        lookups = 0

        def terminal_key(self, terminal_id: str):  # type: ignore[no-untyped-def]
            Counting.lookups += 1
            return super().terminal_key(terminal_id)

    storage = Counting(str(tmp_path / "bo.db"))
    storage.enrol("T0001", bytes(range(32)), SystemClock().now())
    key = publish.generate_publication_key()
    office = BackOffice(storage, key, SystemClock(), document_ttl=60, key_ttl=60)
    office.publish("applist", APPLIST)
    server = office.serve()
    creds = TerminalCredentials("T0001", bytes(range(32)), server.url, key.public_key, "sm2",
                                bytes(32))  # fmt: skip
    client = BackOfficeClient(creds, SystemClock())
    try:
        etag = client.get_document("/v1/applist").etag
        for _ in range(5):
            assert client.get_document("/v1/applist", etag).status == 304
        assert Counting.lookups == 1
        storage.revoke("T0001", SystemClock().now())
        status, body = client.get("/v1/applist")
        assert status == 403 and b"revoked" in body
    finally:
        client.close()
        server.shutdown()
        storage.close()
