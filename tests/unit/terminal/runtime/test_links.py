"""Links (up/down, since, reconnects) and workers on /health and /metrics."""

from __future__ import annotations

from terminal.host.clock import FixedClock
from terminal.runtime.links import Links
from terminal.runtime.statuspage import RuntimeStatus


def test_down_then_up_counts_one_reconnection_and_moves_since() -> None:
    clock = FixedClock()
    links = Links(clock)
    links.report("psam", True, "open")
    start = clock.now()
    clock.advance(5)
    links.report("psam", True)  # no change: since stays
    assert links.get("psam").since == start  # type: ignore[union-attr]
    links.report("psam", False, "PC/SC service went away")
    clock.advance(3)
    links.reporter("psam")(True, "reconnected")
    [shown] = links.snapshot()
    assert shown == {
        "name": "psam",
        "state": "up",
        "since": clock.now(),
        "reconnects": 1,
        "reason": "reconnected",
    }


def test_health_and_metrics_show_links_and_workers() -> None:
    clock = FixedClock()
    status = RuntimeStatus("validator", "BUS-0001")
    status.links = Links(clock)
    status.links.report("pcsc", True)
    status.links.report("psam", False, "no PSAM")
    status.workers = lambda: [
        {
            "name": "pcsc-watcher",
            "state": "running",
            "restarts": 2,
            "last_error": "ReaderError: card 5001234567891234 said no",
            "last_error_at": 1.5,
        }
    ]
    health = status.snapshot()
    assert [link["state"] for link in health["links"]] == ["up", "down"]
    [worker] = health["workers"]
    assert worker["restarts"] == 2 and "5001234567891234" not in worker["last_error"]
    metrics = status.metrics()
    assert 'onecard_link_up{link="pcsc"} 1' in metrics
    assert 'onecard_link_up{link="psam"} 0' in metrics
    assert 'onecard_link_reconnects_total{link="psam"} 0' in metrics
    assert 'onecard_worker_state{worker="pcsc-watcher",state="running"} 1' in metrics
    assert 'onecard_worker_restarts_total{worker="pcsc-watcher"} 2' in metrics
    assert "onecard_worker_last_error_timestamp_seconds{" in metrics
    assert "5001234567891234" not in metrics


def test_a_failing_worker_report_does_not_fail_the_page() -> None:
    status = RuntimeStatus("gate", "GATE-0001")

    def broken() -> list:
        raise RuntimeError("supervisor gone")

    status.workers = broken
    health = status.snapshot()
    assert health["workers"] == [] and "workers" in health["status"]
