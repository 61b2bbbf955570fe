"""Document distribution at city scale: the signed hotlist snapshot and ETag/304 polls
(backoffice/documents.py, terminal/hotlist_snapshot.py) against today's path - the JSON
full list, and documents re-read and re-serialised at every poll - in the same run.

Run: .venv/bin/python bench/hotlist_distribution.py [--sizes 1000000,10000000]
     [--baseline-sizes 1000000] [--runs 3] [--poll-seconds 5] [--clients 32]

1. Hotlist of N entries (random 64-bit keys in a SQLite back office). A terminal process
   (bench/hotlist_terminal.py: the terminal library only, so its peak RSS ``VmHWM`` is
   a terminal's) downloads the list and applies it:
   * today: ``GET /v1/hotlist?since=V`` answered with the JSON full list (``base`` 0) by
     today's handler, applied by ``DocumentStore.apply_hotlist_delta``;
   * ours: the same request from ``Downloader`` on ``BackOfficeClient``, answered with the
     signed binary snapshot (then the delta after it, a 304), applied streaming.
   Both for a terminal starting empty and for one that fell behind (a list of N entries in
   force at an old version). The JSON baseline at 10 million needs over a gigabyte on the
   terminal and minutes on a 2-core machine: it runs at ``--baseline-sizes`` only.
2. Document polls: ``--clients`` kept-alive connections (requests signed once, so the
   clients' own cost stays small) poll the application list, the trust list and the
   hotlist in turn for ``--poll-seconds``, against today's handler (every poll reads the
   database and re-serialises) and ours (200 from memory; and 304 with the ETag known).
   The server runs in a process of its own.

Every figure is the median of ``--runs`` runs; ratios are today against ours (hotlist) and
ours against today (polls).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backoffice import keys, publish
from backoffice.answers import Response
from backoffice.errors import BadRequestError, NotFoundError
from backoffice.limits import ServeLimits
from backoffice.server import BackOffice, parse_since
from backoffice.storage import SqliteStorage, open_storage
from terminal.host.clock import SystemClock
from terminal.hotlist import HotList
from terminal.sync.auth import TerminalCredentials
from terminal.wire.canonical import canonical_json

TERMINAL = "BENCH01"
SECRET = bytes(range(32))
APPLIST = {
    "services": [
        {"code": f"svc-{i}", "name": f"Service {i}", "scope": "chongqing",
         "valid_from": "2025-01-01"}
        for i in range(40)
    ]
}  # fmt: skip
TRUSTLIST = {"issuers": [{"id": f"issuer-{i}", "key": "04" + "ab" * 64} for i in range(20)]}


class TodayBackOffice(BackOffice):
    """Today's document endpoints, as they were before ETags: every poll reads the
    database and renders its answer again (the hotlist's SM2 signature was cached by the
    canonical JSON of the document, which is itself made at every poll)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Today, every request looked the terminal's key up in the database.
        super().__init__(*args, **{**kwargs, "key_ttl": 0.0})
        self._signed_today: dict[bytes, dict[str, Any]] = {}

    def admit_cached(self, *args: Any) -> None:
        return None  # today, everything was answered on a worker thread

    def respond_cached(self, *args: Any) -> None:
        return None

    def _hotlist(self, query: str, headers: Any) -> Response:
        since = parse_since(query)
        snapshot = self.storage.hotlist_snapshot(since)
        document = publish.hotlist_document(since, snapshot)
        key = canonical_json(document)
        signed = self._signed_today.get(key)
        if signed is None:
            signed = publish.sign_document(document, self.publication_key)
            self._signed_today[key] = signed
        return Response(200, signed)

    def full_list_bytes(self) -> bytes:
        """The bytes this handler sends a terminal at version 0 (the JSON full list)."""
        return self._hotlist("since=0", {}).payload()

    def _stored_document(self, kind: str, query: str, headers: Any) -> Response:
        if query:
            raise BadRequestError("this endpoint takes no query")
        document = self.storage.document_text(kind)
        if document is None:
            raise NotFoundError(f"no {kind} published yet")
        return Response(200, {}, raw=document.encode("utf-8", "surrogatepass"))


# --- the back office's data -------------------------------------------------------------------


def random_keys(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, (1 << 64) - 1, size=n + n // 1000 + 16, dtype=np.uint64)
    return np.unique(drawn)[:n]


def make_back_office(directory: Path, n: int, history: int = 10_000) -> tuple[str, str]:
    """A SQLite back office holding ``n`` hotlist entries at version ``n + 2 * history``
    (a terminal at an old version is behind the kept deltas), a trust list and an
    application list; returns the database path and the publication key file."""
    db = str(directory / "bo.db")
    storage = SqliteStorage(db, hotlist_history=history)
    storage.enrol(TERMINAL, SECRET, time.time())
    key = publish.generate_publication_key()
    key_file = str(directory / "publication.key")
    keys.write_publication_key(key, key_file)
    office = BackOffice(storage, key, SystemClock())
    office.publish("trustlist", TRUSTLIST)
    office.publish("applist", APPLIST)
    storage.close()
    version = n + 2 * history
    # A bulk load for the bench: the operator's CLI adds entries one version each.
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA synchronous=OFF")
        conn.executemany(
            "INSERT INTO hotlist_current (entry, version) VALUES (?, ?)",
            ((f"{int(k):016x}", 1) for k in random_keys(n, 11)),
        )
        conn.execute("UPDATE meta SET value = ? WHERE name = 'hotlist_version'", (version,))
        conn.execute("UPDATE meta SET value = ? WHERE name = 'hotlist_floor'", (version - history,))
    return db, key_file


def credentials(url: str, key_file: str) -> TerminalCredentials:
    key = keys.load_publication_key(key_file)
    return TerminalCredentials(TERMINAL, SECRET, url, key.public_key, "sm2", bytes(32))


def run_terminal(mode: str, url: str, key_file: str, old_keys: np.ndarray | None) -> dict:
    """One download and apply by bench/hotlist_terminal.py in a process of its own."""
    public = keys.load_publication_key(key_file).public_key.hex()
    with tempfile.TemporaryDirectory() as tmp:
        if old_keys is not None:
            HotList(1, old_keys).save(Path(tmp) / "hotlist.bin")
        script = str(Path(__file__).with_name("hotlist_terminal.py"))
        out = subprocess.run(
            [sys.executable, script, mode, url, public, tmp],
            check=True,
            capture_output=True,
            text=True,
        )
    return json.loads(out.stdout)


# --- part 1: the hotlist ------------------------------------------------------------------------


def _row(path: str, n: int, start: str, got: list[dict], size: int | None, build: float | None):
    return {
        "path": path,
        "entries": n,
        "terminal": start,
        "download_bytes": size,
        "server_build_s": build,
        "download_apply_s": statistics.median(g["seconds"] for g in got),
        "peak_rss_mb": statistics.median(g["peak_rss_mb"] for g in got),
        "applied_entries": got[0]["entries"],
    }


def hotlist_part(n: int, baseline: bool, runs: int) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        db, key_file = make_back_office(Path(tmp), n)
        sys.stderr.write(f"  loaded {n:,} entries in {time.perf_counter() - started:.0f}s\n")
        storage = SqliteStorage(db)
        key = keys.load_publication_key(key_file)
        ours = BackOffice(storage, key, SystemClock(), document_ttl=1.0)
        started = time.perf_counter()
        snapshot = ours.documents.snapshot(ours.documents.versions().hotlist_floor)
        build = time.perf_counter() - started
        limits = ServeLimits(send_timeout=600)
        old = random_keys(n, 99)
        server = ours.serve(limits=limits)
        try:
            for start, old_keys in (("empty", None), ("behind", old)):
                got = [
                    run_terminal("snapshot", server.url, key_file, old_keys) for _ in range(runs)
                ]
                rows.append(_row("ours: snapshot", n, start, got, len(snapshot.body), build))
        finally:
            server.shutdown()
        if baseline:
            today = TodayBackOffice(storage, key, SystemClock())
            started = time.perf_counter()
            size = len(today.full_list_bytes())
            render = time.perf_counter() - started
            server = today.serve(limits=limits)
            try:
                for start, old_keys in (("empty", None), ("behind", old)):
                    got = [
                        run_terminal("json", server.url, key_file, old_keys) for _ in range(runs)
                    ]
                    rows.append(_row("today: JSON full list", n, start, got, size, render))
            finally:
                server.shutdown()
        storage.close()
    for row in rows:
        if row["applied_entries"] != n:
            raise SystemExit(f"{row['path']}: applied {row['applied_entries']} of {n} entries")
    return rows


# --- part 2: polls ------------------------------------------------------------------------------

PG_URL_ENV = "ONECARD_TEST_PG_URL"
POLL_PATHS = ("/v1/applist", "/v1/trustlist", "/v1/hotlist?since={version}")


def serve_process(kind: str, storage_url: str, key_file: str, queue: Any, stop: Any) -> None:
    storage = open_storage(storage_url)
    key = keys.load_publication_key(key_file)
    cls = TodayBackOffice if kind == "today" else BackOffice
    # The `serve` defaults: a version check reused for a second, a terminal's key for five.
    defaults = ServeLimits()
    office = cls(
        storage, key, SystemClock(), document_ttl=defaults.document_ttl, key_ttl=defaults.key_ttl
    )
    server = office.serve(limits=ServeLimits(max_connections=1024))
    queue.put(server.url)
    stop.wait()
    server.shutdown()
    storage.close()


async def _poller(host: str, port: int, requests: list[bytes], until: float, out: dict) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    i = 0
    try:
        while time.perf_counter() < until:
            writer.write(requests[i % len(requests)])
            i += 1
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if length:
                await reader.readexactly(length)
            if status in (200, 304):
                out["ok"] += 1
                out[status] = out.get(status, 0) + 1
            else:
                out["errors"] += 1
    finally:
        writer.close()


def poll_requests(url: str, key_file: str, paths: list[str], etags: dict[str, str]) -> list[bytes]:
    creds = credentials(url, key_file)
    host = urllib.parse.urlsplit(url).netloc
    out = []
    for path in paths:
        # Signed once: a GET's signature holds for 300 s and the back office keeps no nonce.
        headers = creds.headers("GET", path, b"", time.time())
        if path in etags:
            headers["If-None-Match"] = etags[path]
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        out.append(("\r\n".join(lines) + "\r\n\r\n").encode())
    return out


def fetch_etags(url: str, key_file: str, paths: list[str]) -> dict[str, str]:
    from terminal.sync.client import BackOfficeClient

    client = BackOfficeClient(credentials(url, key_file), SystemClock())
    etags = {p: client.get_document(p).etag or "" for p in paths}
    client.close()
    return etags


def poll_once(kind: str, db: str, key_file: str, paths: list[str], args: Any, etag: bool):
    """One poll run against a back office of ``kind`` over storage ``db`` (a URL)."""
    ctx = multiprocessing.get_context("spawn")
    queue, stop = ctx.Queue(), ctx.Event()
    proc = ctx.Process(target=serve_process, args=(kind, db, key_file, queue, stop))
    proc.start()
    try:
        url = queue.get(timeout=60)
        etags = fetch_etags(url, key_file, paths) if etag else {}
        requests = poll_requests(url, key_file, paths, etags)
        parts = urllib.parse.urlsplit(url)
        out: dict[Any, int] = {"ok": 0, "errors": 0}

        async def main() -> None:
            until = time.perf_counter() + args.poll_seconds
            host, port = parts.hostname or "", parts.port or 0
            await asyncio.gather(
                *(_poller(host, port, requests, until, out) for _ in range(args.clients))
            )

        asyncio.run(main())
        polls = out["ok"] / args.poll_seconds
        return {"polls_s": polls, "errors": out["errors"], "304": out.get(304, 0)}
    finally:
        stop.set()
        proc.join(30)


def make_poll_office(storage_url: str, key_file: str) -> int:
    """Documents and a 2,000-entry hotlist for the poll part; returns the hotlist version."""
    storage = open_storage(storage_url, hotlist_history=1000)
    storage.enrol(TERMINAL, SECRET, time.time())
    key = publish.generate_publication_key()
    keys.write_publication_key(key, key_file)
    office = BackOffice(storage, key, SystemClock())
    office.publish("trustlist", TRUSTLIST)
    office.publish("applist", APPLIST)
    for k in random_keys(2000, 5):
        storage.hotlist_change(f"{int(k):016x}", True)
    version = storage.document_versions().hotlist
    storage.close()
    return version


def polls_part(args: Any) -> list[dict[str, Any]]:
    rows = []
    engines = [("SQLite", None)]
    if os.environ.get(PG_URL_ENV):
        engines.append(("PostgreSQL", os.environ[PG_URL_ENV]))
    for engine, pg_url in engines:
        with tempfile.TemporaryDirectory() as tmp:
            schema = f"bench_polls_{uuid.uuid4().hex[:10]}"
            url = str(Path(tmp) / "bo.db") if pg_url is None else f"{pg_url}&schema={schema}"
            key_file = str(Path(tmp) / "publication.key")
            try:
                version = make_poll_office(url, key_file)
                paths = [p.format(version=version) for p in POLL_PATHS]
                for label, kind, etag in (
                    ("today: re-read + re-serialise", "today", False),
                    ("ours: 200 from memory", "ours", False),
                    ("ours: 304 (ETag known)", "ours", True),
                ):
                    got = [
                        poll_once(kind, url, key_file, paths, args, etag) for _ in range(args.runs)
                    ]
                    rows.append(
                        {
                            "engine": engine,
                            "path": label,
                            "polls_s": statistics.median(g["polls_s"] for g in got),
                            "errors": sum(g["errors"] for g in got),
                            "answered_304": sum(g["304"] for g in got),
                        }
                    )
            finally:
                if pg_url is not None:
                    _drop_schema(pg_url, schema)
    return rows


def _drop_schema(url: str, schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


# --- output -------------------------------------------------------------------------------------

_COLUMNS = "{:24} {:>11} {:>8} {:>11} {:>9} {:>10} {:>11}\n"


def print_tables(hot: list[dict[str, Any]], polls: list[dict[str, Any]]) -> None:
    out = sys.stdout
    out.write("\nHotlist download + apply (terminal in its own process; medians)\n")
    heads = ("path", "entries", "terminal", "download", "render s", "dl+apply s", "peak RSS MB")
    out.write(_COLUMNS.format(*heads))
    for r in hot:
        size = f"{r['download_bytes'] / 1e6:.1f} MB"
        build = f"{r['server_build_s']:.1f}"
        cells = (r["path"], f"{r['entries']:,}", r["terminal"], size, build,
                 f"{r['download_apply_s']:.2f}", f"{r['peak_rss_mb']:.0f}")  # fmt: skip
        out.write(_COLUMNS.format(*cells))
    out.write("\nRatios, today / ours (same size, same start):\n")
    for r in hot:
        if not r["path"].startswith("today"):
            continue
        ours = next(
            o
            for o in hot
            if o["path"].startswith("ours")
            and (o["entries"], o["terminal"]) == (r["entries"], r["terminal"])
        )
        size = r["download_bytes"] / ours["download_bytes"]
        speed = r["download_apply_s"] / ours["download_apply_s"]
        rss = r["peak_rss_mb"] / ours["peak_rss_mb"]
        out.write(
            f"  {r['entries']:>11,} {r['terminal']:>7}: size x{size:.1f}, "
            f"download+apply time x{speed:.1f}, peak RSS x{rss:.1f}\n"
        )
    out.write("\nDocument polls (applist, trustlist, hotlist in turn; server in its own process)\n")
    for r in polls:
        base = next(b["polls_s"] for b in polls if b["engine"] == r["engine"])
        out.write(
            f"  {r['engine']:10} {r['path']:32} {r['polls_s']:>9,.0f} polls/s  "
            f"x{r['polls_s'] / base:4.1f}  errors {r['errors']}  304s {r['answered_304']}\n"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--baseline-sizes", default="1000000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--poll-seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()
    sizes = {int(s) for s in args.sizes.split(",") if s}
    baseline = {int(s) for s in args.baseline_sizes.split(",") if s}
    hot: list[dict[str, Any]] = []
    for n in sorted(sizes | baseline):
        sys.stderr.write(f"hotlist of {n:,} entries...\n")
        hot += hotlist_part(n, n in baseline, args.runs)
    sys.stderr.write("document polls...\n")
    print_tables(hot, polls_part(args))


if __name__ == "__main__":
    main()
