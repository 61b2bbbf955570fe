"""``/metrics`` of ``onecard backoffice serve --workers 2`` on PostgreSQL: the counters of
every worker are summed whichever worker answers the scrape (prometheus-client's
multiprocess mode) - proved by killing the worker that took the first uploads, so that the
scrape is necessarily answered by another process that must read the dead one's counts;
and the database's gauges (silent terminals) are the same from any worker."""

from __future__ import annotations

import http.client
import json
import os
import signal
import time
from pathlib import Path

import pytest
from helpers.backoffice_workers import fresh_schema, serve_workers
from prometheus_client.parser import text_string_to_metric_families
from test_backoffice_workers import TERMINAL, Terminal, fleet  # noqa: F401 (the fixture)

from backoffice import keys
from backoffice.publish import generate_publication_key
from backoffice.testing import make_entries
from terminal.wire.journal import ZERO_HASH

pytestmark = pytest.mark.integration

BATCH = 50


def scrape(port: int) -> tuple[int, dict[tuple[str, tuple], float]]:
    """The worker pid that answered, and the samples of its exposition."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        text = response.read().decode()
        assert response.status == 200, text
        worker = int(response.getheader("X-Onecard-Worker", "0"))
    finally:
        conn.close()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    return worker, samples


def test_counts_of_a_killed_worker_stay_in_every_scrape(fleet) -> None:  # noqa: F811
    storage, secret, port, server = fleet
    entries = make_entries(TERMINAL, 4 * BATCH, prev_hash=ZERO_HASH)
    bodies = [
        json.dumps({"terminal_id": TERMINAL, "entries": entries[i : i + BATCH]}).encode()
        for i in range(0, len(entries), BATCH)
    ]
    terminal = Terminal(port, secret)
    terminal.upload(bodies[0])
    terminal.upload(bodies[1])
    first = terminal.serving_pid
    assert first and terminal.answered_by == [first, first]  # one kept-alive connection
    os.kill(first, signal.SIGKILL)
    terminal.upload(bodies[2])  # a new connection: another worker, or the dead one's successor
    terminal.upload(bodies[3])
    assert terminal.serving_pid != first
    assert storage.acked_up_to(TERMINAL) == 4 * BATCH

    worker, samples = scrape(port)
    assert worker != first
    # Every entry counted once, the dead worker's 100 included.
    assert samples[("onecard_backoffice_ingest_entries_total", ())] == 4 * BATCH
    assert samples[("onecard_backoffice_ingest_batches_total", (("outcome", "stored"),))] == 4
    assert samples[("onecard_backoffice_ingest_seconds_count", ())] == 4
    # The database's gauge: one terminal, enrolled just now, no heartbeat yet - not silent.
    assert samples[("onecard_backoffice_terminals", (("state", "new"),))] == 1
    assert samples[("onecard_backoffice_terminals_silent", ())] == 0
    assert server.poll() is None


def test_dead_workers_are_marked_and_the_temporary_directory_removed(tmp_path) -> None:
    """Without --metrics-dir: the directory is made under TMPDIR, a worker killed is marked
    dead (its live gauges' files go), and the directory is gone once serve has stopped."""
    key_file = tmp_path / "publication.key"
    keys.write_publication_key(generate_publication_key(), key_file)
    temp = tmp_path / "tmp"
    temp.mkdir()
    with (
        fresh_schema() as (_, _, url),
        serve_workers(url, key_file, env={"TMPDIR": str(temp)}) as served,
    ):
        directory = Path(served.started["metrics_dir"])
        assert directory.parent == temp and directory.is_dir()

        worker, _ = scrape(served.port)
        assert worker
        live = directory / f"gauge_livesum_{worker}.db"  # what a live gauge would leave
        live.write_bytes(b"")
        os.kill(worker, signal.SIGKILL)
        # The supervisor notices on its next check (every half second): a generous bound
        # that only guards against a hang, not a measure of speed.
        deadline = time.monotonic() + 60
        while live.exists():
            assert time.monotonic() < deadline, "the dead worker was never marked dead"
            time.sleep(0.1)
        assert scrape(served.port)[0] != worker  # its successor serves
    assert served.process.returncode == 0
    assert list(temp.iterdir()) == []  # the metrics directory went with the workers
