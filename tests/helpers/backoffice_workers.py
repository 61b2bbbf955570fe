"""``onecard backoffice serve --workers N`` as a real process group on a fresh PostgreSQL
schema, for the tests that kill its workers: started, its JSON start line read, stopped with
SIGTERM (SIGKILL to the group if it hangs), the schema dropped."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from helpers.backoffice_storage import postgres_url


@dataclass
class Workers:
    """A running ``serve --workers``: its process, port and start line."""

    process: subprocess.Popen[bytes]
    port: int
    started: dict[str, Any]


@contextlib.contextmanager
def fresh_schema() -> Iterator[tuple[str, str, str]]:
    """``(base url, schema, url with the schema)`` of a new schema, dropped at the end."""
    base = postgres_url()
    schema = f"bo_test_{uuid.uuid4().hex[:12]}"
    url = f"{base}&schema={schema}" if "?" in base else f"{base}?schema={schema}"
    try:
        yield base, schema, url
    finally:
        import psycopg
        from psycopg import sql

        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@contextlib.contextmanager
def serve_workers(
    url: str, key_file: Path, workers: int = 2, env: dict[str, str] | None = None
) -> Iterator[Workers]:
    """``serve --workers`` on ``url``, in a session of its own (so that a hang can be
    ended with its workers); the block gets it once it has printed where it serves."""
    process = subprocess.Popen(
        [sys.executable, "-c", "from onecard.cli import main; main()", "backoffice", "serve",
         "--storage", url, "--publication-key", str(key_file), "--port", "0",
         "--workers", str(workers)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path.cwd()), **(env or {})},
        start_new_session=True,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    try:
        lines: list[str] = []
        while not lines or lines[-1].strip() != "}":
            line = process.stdout.readline().decode()
            if not line:
                pytest.fail(f"serve did not start: {process.stderr.read().decode()[-2000:]}")
            lines.append(line)
        started = json.loads("".join(lines))
        yield Workers(process, int(started["serving"].rsplit(":", 1)[1]), started)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        process.stdout.close()
        process.stderr.close()
