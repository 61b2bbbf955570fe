"""The terminal's side of bench/hotlist_distribution.py, in a process of its own so that
its peak RSS is a terminal's: it imports the terminal library only (no back office, no web
framework). One hotlist download and apply; prints seconds, entries and peak RSS as JSON.

Run by the bench: hotlist_terminal.py {snapshot|json} URL PUBLICATION_KEY_HEX DIR
"""

from __future__ import annotations

import http.client
import json
import sys
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from terminal.host.clock import SystemClock
from terminal.sync.auth import TerminalCredentials
from terminal.sync.client import BackOfficeClient
from terminal.sync.downloads import DocumentStore, Downloader

TERMINAL = "BENCH01"
SECRET = bytes(range(32))


def peak_rss_mb() -> float:
    """This process's peak RSS: ``VmHWM``, which starts afresh at exec (``ru_maxrss`` is
    carried over from the parent that forked us, and the bench's parent is large)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("no VmHWM in /proc/self/status")


def main() -> None:
    mode, url, public_hex, directory = sys.argv[1:5]
    public = bytes.fromhex(public_hex)
    creds = TerminalCredentials(TERMINAL, SECRET, url, public, "sm2", bytes(32))
    store = DocumentStore(directory, public, "sm2")
    clock = SystemClock()
    started = time.perf_counter()
    if mode == "snapshot":
        # Today's terminal code path, unchanged: the downloader on the back office client.
        client = BackOfficeClient(creds, clock, timeout=600)
        result = Downloader(store, client, clock).run_once().results["hotlist"]
        if result.outcome.value != "applied":
            raise SystemExit(f"hotlist not applied: {result}")
    else:
        # Today's JSON path. Today's client refuses answers over 1 MiB, so the body is read
        # here by a plain HTTP client, then applied as the terminal applies a delta.
        parts = urllib.parse.urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
        path = f"/v1/hotlist?since={store.hotlist.version}"
        conn.request("GET", path, headers=creds.headers("GET", path, b"", clock.now()))
        body = conn.getresponse().read()
        store.apply_hotlist_delta(body)
        del body
    seconds = time.perf_counter() - started
    peak = peak_rss_mb()
    out = {"seconds": seconds, "entries": len(store.hotlist), "peak_rss_mb": peak}
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
