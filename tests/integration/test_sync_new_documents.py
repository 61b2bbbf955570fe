"""The rail fare table, a venue's reservations and a scenic area's passes from the real back
office (SQLite and PostgreSQL) to a terminal's :class:`Downloader` over HTTP: fetched only
when asked for, applied, answered 304 once held; a document altered in the back office's
storage is refused and a rolled-back one too, the previous one staying in force - on disk,
in memory, and after a restart."""

from __future__ import annotations

import copy
import datetime as dt
import os
from pathlib import Path
from typing import Any

import pytest
from helpers.backoffice_storage import KINDS, storage_for
from helpers.published_documents import CARD_TOKEN, FARES, PASSES, RESERVATIONS, TOKEN

from backoffice.publish import generate_publication_key
from backoffice.server import BackOffice
from terminal.host.clock import SystemClock
from terminal.sync.auth import TerminalCredentials
from terminal.sync.client import BackOfficeClient
from terminal.sync.downloads import DEFAULT_DOCUMENTS, DocumentStore, Downloader, Outcome

pytestmark = pytest.mark.integration

TERMINAL = "T-DOCS"
DOCUMENTS = {"fares": FARES, "reservations": RESERVATIONS, "passes": PASSES}
CST = dt.timezone(dt.timedelta(hours=8))


def put_behind_its_back(storage: Any, kind: str, text: str, version: int) -> None:
    """Write ``text`` as the stored document of ``kind``, as an intruder or a bad restore
    could: not through the back office's publishing."""
    with storage._tx() as cur:
        cur.execute(
            storage._q("UPDATE documents SET document = ?, version = ? WHERE kind = ?"),
            (text, version, kind),
        )


def outcomes(report: Any) -> dict[str, Outcome]:
    return {name: result.outcome for name, result in report.results.items()}


@pytest.mark.parametrize("storage_kind", KINDS)
def test_new_documents_from_a_running_back_office(storage_kind: str, tmp_path: Path) -> None:
    key, secret, clock = generate_publication_key(), os.urandom(32), SystemClock()
    with storage_for(storage_kind, tmp_path) as storage:
        storage.enrol(TERMINAL, secret, clock.now())
        office = BackOffice(storage, key, clock)
        for kind, body in DOCUMENTS.items():
            office.publish(kind, body)
        version_1 = {kind: storage.document_text(kind) for kind in DOCUMENTS}
        with office.serve() as server:
            credentials = TerminalCredentials(
                TERMINAL, secret, server.url, key.public_key, key.algorithm.value, bytes(32)
            )
            client = BackOfficeClient(credentials, clock)
            directory = tmp_path / "documents"
            directory.mkdir()
            store = DocumentStore(directory, key.public_key, key.algorithm)
            try:
                # A terminal that does not take them asks for none.
                plain = Downloader(store, client, clock).run_once()
                assert set(plain.results) == set(DEFAULT_DOCUMENTS)
                assert store.fare_table is None and store.reservations is None

                downloader = Downloader(
                    store, client, clock, documents=(*DEFAULT_DOCUMENTS, *DOCUMENTS)
                )
                first = downloader.run_once()
                assert {k: first.results[k].outcome for k in DOCUMENTS} == dict.fromkeys(
                    DOCUMENTS, Outcome.APPLIED
                )
                assert store.fare_table.quote("0101", "0105", 30, "student").total_fen == 150
                when = dt.datetime(2026, 12, 6, 8, 50, tzinfo=CST)
                assert store.reservations.slot_now(TOKEN, when, 15).id == "am"
                assert store.passes.pass_for(CARD_TOKEN).valid_on(dt.date(2026, 12, 6))
                assert {k: store.current_versions()[k] for k in DOCUMENTS} == dict.fromkeys(
                    DOCUMENTS, 1
                )

                again = downloader.run_once()  # 304s
                assert {k: again.results[k].outcome for k in DOCUMENTS} == dict.fromkeys(
                    DOCUMENTS, Outcome.UNCHANGED
                )

                # Version 2 of each, then kept as the good one.
                newer_fares = copy.deepcopy(FARES)
                newer_fares["categories"]["student"] = 40
                office.publish("fares", newer_fares)
                office.publish("reservations", RESERVATIONS)
                office.publish("passes", PASSES)
                newer = downloader.run_once()
                assert {k: newer.results[k].outcome for k in DOCUMENTS} == dict.fromkeys(
                    DOCUMENTS, Outcome.APPLIED
                )
                assert store.fare_table.quote("0101", "0105", 30, "student").total_fen == 120
                good = {k: (directory / f"{k}.json").read_bytes() for k in DOCUMENTS}

                # Altered in storage: the signature no longer holds.
                for kind in DOCUMENTS:
                    text = storage.document_text(kind)
                    put_behind_its_back(
                        storage, kind, text.replace('"version":2', '"version":3'), 3
                    )
                tampered = downloader.run_once()
                for kind in DOCUMENTS:
                    assert tampered.results[kind].outcome is Outcome.REFUSED, tampered.results
                    assert tampered.results[kind].code == "bad_document"
                    assert (directory / f"{kind}.json").read_bytes() == good[kind]
                    assert store.current_versions()[kind] == 2
                assert store.fare_table.quote("0101", "0105", 30, "student").total_fen == 120

                # Rolled back: an authentic version 1 served again.
                for kind in DOCUMENTS:
                    put_behind_its_back(storage, kind, version_1[kind], 4)
                rolled = downloader.run_once()
                for kind in DOCUMENTS:
                    assert rolled.results[kind].outcome is Outcome.REFUSED
                    assert rolled.results[kind].code == "stale_document"
                    assert store.current_versions()[kind] == 2

                # After a restart: version 2 of each, from the disk.
                restarted = DocumentStore(directory, key.public_key, key.algorithm)
                assert {k: restarted.current_versions()[k] for k in DOCUMENTS} == dict.fromkeys(
                    DOCUMENTS, 2
                )
                assert restarted.fare_table.categories["student"] == 40
                assert restarted.passes.pass_for(CARD_TOKEN).kind == "annual"
            finally:
                client.close()
