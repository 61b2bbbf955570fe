"""The back office's own Prometheus metrics, ``GET /metrics`` (docs/fleet.md), with
prometheus-client.

Two kinds, aggregated differently:

* **What a process sees** - uploads and heartbeats it took, and how long they took
  (counters and histograms of :class:`BackOfficeMetrics`). With ``serve --workers N`` each
  worker counts its own, in prometheus-client's multiprocess mode: the parent sets
  ``PROMETHEUS_MULTIPROC_DIR`` (:func:`prepare_multiprocess`) before the workers start,
  each worker writes its values to its own files there, and whichever worker answers a
  scrape sums every worker's files (``MultiProcessCollector``) - so a scrape through the
  load balancer gives the whole host, whichever worker it lands on. A worker that died
  leaves its files: counters keep what it counted (they are totals since the host
  started).
* **What the database says** - the fleet (terminals by state, silent ones, each
  terminal's heartbeat age, journal backlog and document lag) and the TAC verdicts of
  clearing (:class:`DatabaseCollector`), read at scrape time from the one database every
  worker shares: the same answer from any worker, never summed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from backoffice.fleet import count_states, fleet_view

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_METRIC_FILE = re.compile(r"(counter|histogram|summary|gauge_[a-z]+)_\d+\.db")
"""The files prometheus-client's multiprocess mode writes (one per kind and process)."""
CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def multiprocess_dir() -> str | None:
    """The multiprocess directory of this process, if the parent set one."""
    return os.environ.get(MULTIPROC_ENV) or None


def prepare_multiprocess(directory: str | None = None) -> str:
    """Before starting worker processes: give them a fresh, empty directory for their
    metric files (``directory``, else a new temporary one) through the environment they
    inherit. Returns it. Metric files of an earlier run in ``directory`` are removed (only
    prometheus-client's own, by name): their processes are gone, and their counts are not
    this run's."""
    path = directory or tempfile.mkdtemp(prefix="onecard-metrics-")
    os.makedirs(path, mode=0o700, exist_ok=True)
    for name in os.listdir(path):
        if _METRIC_FILE.fullmatch(name):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(path, name))
    os.environ[MULTIPROC_ENV] = path
    return path


@contextlib.contextmanager
def multiprocess_directory(directory: str | None = None) -> Iterator[str]:
    """:func:`prepare_multiprocess` for the time of a ``serve --workers N``; on the way out
    the environment is restored and a temporary directory made here is removed with its
    files - each start makes a new one, so keeping them would leave one per start in /tmp.
    A ``directory`` given is kept (its operator chose it): the next start clears it."""
    previous = os.environ.get(MULTIPROC_ENV)
    path = prepare_multiprocess(directory)
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = previous
        if directory is None:
            shutil.rmtree(path, ignore_errors=True)


def mark_worker_dead(pid: int) -> None:
    """Tell prometheus-client's multiprocess mode that worker ``pid`` has exited, as its
    docs require of whoever supervises the workers: the live gauges' files of that process
    are removed (a dead process has no live value). Counters and histograms stay: they are
    totals since the start, the dead worker's counts included. Nothing without a directory."""
    directory = multiprocess_dir()
    if directory is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, directory)


class BackOfficeMetrics:
    """The counters and histograms one back office process updates. ``registry`` holds
    them for a single process; in multiprocess mode their values go to the shared files
    (prometheus-client decides that when it is imported, from the environment)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.ingest_entries = Counter(
            "onecard_backoffice_ingest_entries",
            "Journal entries stored (new ones; repeats not counted).",
            registry=self.registry,
        )
        self.ingest_batches = Counter(
            "onecard_backoffice_ingest_batches",
            "Upload batches answered, by outcome (stored, refused).",
            ["outcome"],
            registry=self.registry,
        )
        self.ingest_seconds = Histogram(
            "onecard_backoffice_ingest_seconds",
            "Time to check and store one upload batch (signature checked before).",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.heartbeats = Counter(
            "onecard_backoffice_heartbeats",
            "Heartbeats received, by outcome (stored, refused).",
            ["outcome"],
            registry=self.registry,
        )
        self.heartbeat_seconds = Histogram(
            "onecard_backoffice_heartbeat_seconds",
            "Time to check and store one heartbeat.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    @contextlib.contextmanager
    def timed(self, histogram: Histogram, outcomes: Counter) -> Iterator[None]:
        """Observe the time of the block in ``histogram`` and count its outcome (``stored``
        or, when it raises, ``refused``)."""
        start = time.perf_counter()
        try:
            yield
        except BaseException:
            outcomes.labels("refused").inc()
            raise
        finally:
            histogram.observe(time.perf_counter() - start)
        outcomes.labels("stored").inc()


def _gauge(name: str, text: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, text, labels=labels)


class DatabaseCollector(Collector):
    """The fleet and the TAC verdicts, read from ``storage`` at each scrape (module doc).
    ``clock()`` is the time silence is measured against; ``silent_after`` the threshold."""

    def __init__(self, storage: Any, clock: Callable[[], float], silent_after: float) -> None:
        self.storage = storage
        self.clock = clock
        self.silent_after = silent_after

    def describe(self) -> list[Metric]:
        # Nothing to describe ahead: a scrape asks the database.
        return []

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        states = fleet_view(
            self.storage.fleet(), self.storage.published_versions(), now, self.silent_after
        )
        by_state = _gauge("onecard_backoffice_terminals", "Enrolled terminals by state.", ["state"])
        for state, count in count_states(states).items():
            by_state.add_metric([state], count)
        yield by_state
        silent = _gauge(
            "onecard_backoffice_terminals_silent",
            "Terminals without a heartbeat for longer than the silence threshold.",
        )
        silent.add_metric([], sum(1 for s in states if s.silent))
        yield silent
        age = _gauge(
            "onecard_backoffice_terminal_heartbeat_age_seconds",
            "Seconds since the terminal's latest heartbeat (since enrolment if none yet).",
            ["terminal"],
        )
        backlog = _gauge(
            "onecard_backoffice_terminal_journal_backlog",
            "Journal entries the terminal holds that the back office has not acknowledged, "
            "as its latest heartbeat said.",
            ["terminal"],
        )
        lag = _gauge(
            "onecard_backoffice_terminal_document_lag",
            "Published version minus the version the terminal holds, per document.",
            ["terminal", "document"],
        )
        for state in states:
            if state.state == "revoked":
                continue
            age.add_metric([state.terminal_id], state.silent_for or 0.0)
            if state.journal_backlog is not None:
                backlog.add_metric([state.terminal_id], state.journal_backlog)
            for document, behind in state.document_lag.items():
                lag.add_metric([state.terminal_id, document], behind)
        yield age
        yield backlog
        yield lag
        verdicts = _gauge(
            "onecard_backoffice_tac_checks",
            "T-Union purchases whose TAC clearing checked, by verdict.",
            ["verdict"],
        )
        counts = self.storage.tac_verdict_counts()
        for verdict, count in sorted(counts.items()):
            verdicts.add_metric([verdict], count)
        yield verdicts
        mismatches = _gauge(
            "onecard_backoffice_tac_mismatches",
            "T-Union purchases whose TAC does not verify under the issuer master key.",
        )
        mismatches.add_metric([], counts.get("mismatch", 0))
        yield mismatches


def render(metrics: BackOfficeMetrics, database: DatabaseCollector) -> bytes:
    """The text exposition of one scrape: this process's metrics (every worker's, summed,
    in multiprocess mode) and the database's."""
    directory = multiprocess_dir()
    registry = CollectorRegistry(auto_describe=False)
    if directory is not None:
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry, path=directory)
        text = generate_latest(registry)
    else:
        text = generate_latest(metrics.registry)
    return text + generate_latest(_Only(database))


class _Only(CollectorRegistry):
    """A registry of one collector, for one exposition."""

    def __init__(self, collector: Collector) -> None:
        super().__init__(auto_describe=False)
        self.register(collector)
