"""Back office storages for tests: SQLite in a temporary directory, or PostgreSQL in a fresh
schema of the database ``ONECARD_TEST_PG_URL`` names (required in CI)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from backoffice.storage import PostgresStorage, open_storage

PG_URL_ENV = "ONECARD_TEST_PG_URL"
KINDS = ["sqlite", "postgresql"]


def postgres_url() -> str:
    url = os.environ.get(PG_URL_ENV)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"{PG_URL_ENV} is not set: the PostgreSQL back office tests need it in CI")
        pytest.skip(f"{PG_URL_ENV} not set")
    return url


@contextlib.contextmanager
def storage_for(kind: str, directory: Path, **options: object) -> Iterator:
    """A fresh storage of ``kind``; PostgreSQL schemas are dropped afterwards."""
    if kind == "sqlite":
        store = open_storage(directory / "bo.sqlite", **options)
        try:
            yield store
        finally:
            store.close()
        return
    url = postgres_url()
    schema = f"bo_test_{uuid.uuid4().hex[:12]}"
    store = PostgresStorage(url, schema=schema, **options)
    try:
        yield store
    finally:
        store.close()
        import psycopg
        from psycopg import sql

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
