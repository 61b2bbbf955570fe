"""The serving stack's pieces that need no socket: the ASGI adapter's helpers, the fixed
threads, the worker configuration that crosses to worker processes, and the refusal of
several workers on SQLite."""

from __future__ import annotations

import argparse
import asyncio
import pickle
import threading
from typing import Any

import pytest

from backoffice import keys
from backoffice.asgi import BlockingCalls, request_target
from backoffice.cli import add_commands
from backoffice.errors import ServeConfigError
from backoffice.http_protocol import _announces_body
from backoffice.limits import ServeLimits
from backoffice.publish import generate_publication_key
from backoffice.stack import BackOfficeConfig
from backoffice.workers import WorkerApplication, WorkerSettings, run_workers
from terminal.errors import ConfigError


def test_request_target_is_what_the_terminal_signed():
    scope = {"path": "/v1/hotlist", "raw_path": b"/v1/hotlist", "query_string": b"since=3"}
    assert request_target(scope) == "/v1/hotlist?since=3"
    assert request_target({**scope, "query_string": b""}) == "/v1/hotlist"
    # Percent-escapes stay as sent: the signature covers the bytes on the wire.
    odd = {"path": "/v1/a b", "raw_path": b"/v1/a%20b", "query_string": b""}
    assert request_target(odd) == "/v1/a%20b"


@pytest.mark.parametrize(
    "headers, body",
    [
        ([], False),
        ([(b"content-length", b"0")], False),
        ([(b"content-length", b"12")], True),
        ([(b"transfer-encoding", b"chunked")], True),
    ],
)
def test_which_heads_announce_a_body(headers, body):
    assert _announces_body(headers) is body


def _in_own_loop(coroutine: Any) -> Any:
    """Run ``coroutine`` to its end on a loop of a thread of its own: the suite's browser
    tests keep an event loop running in the main thread, where ``asyncio.run`` is refused."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = asyncio.run(coroutine)
        except BaseException as error:  # re-raised in the test's thread
            outcome["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _named(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix)]


def test_blocking_calls_run_on_a_fixed_set_of_threads():
    prefix = "test-fixed-calls"
    calls = BlockingCalls(3, name=prefix)
    calls.start()
    try:
        assert len(_named(prefix)) == 3

        async def many() -> list[str]:
            return await asyncio.gather(
                *(calls.run(lambda: threading.current_thread().name) for _ in range(50))
            )

        names = _in_own_loop(many())
        assert set(names) <= {t.name for t in _named(prefix)} and len(_named(prefix)) == 3

        def boom() -> None:
            raise KeyError("x")

        with pytest.raises(KeyError):
            _in_own_loop(calls.run(boom))
    finally:
        calls.stop()
    assert _named(prefix) == []


def test_worker_configuration_crosses_to_a_worker_process():
    settings = WorkerSettings("postgresql:///x", "/k", ServeLimits(max_connections=9))
    config = BackOfficeConfig(WorkerApplication(settings), settings.limits, None, workers=2)
    config.connection_guard()  # made in this process: not sent along
    copy = pickle.loads(pickle.dumps(config))
    assert copy.app.settings == settings and copy.workers == 2
    assert copy._guard is None and copy.connection_guard().limits.max_connections == 9


def test_several_workers_on_sqlite_are_refused(tmp_path):
    settings = WorkerSettings(str(tmp_path / "bo.sqlite"), "/k")
    with pytest.raises(ServeConfigError) as refused:
        run_workers(settings, 2, sock=None)  # type: ignore[arg-type]
    assert isinstance(refused.value, ConfigError) and "PostgreSQL" in refused.value.reason
    key = tmp_path / "publication.key"
    keys.write_publication_key(generate_publication_key(), key)
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    args = parser.parse_args(
        ["backoffice", "serve", "--storage", str(tmp_path / "bo.sqlite"),
         "--publication-key", str(key), "--workers", "3"]
    )  # fmt: skip
    with pytest.raises(ServeConfigError, match="--workers 3 needs PostgreSQL"):
        args.func(args)
    assert not (tmp_path / "bo.sqlite").exists()  # refused before anything was opened
