"""The documents only some terminals use - the rail fare table, a venue's reservations, a
scenic area's passes - in the :class:`DocumentStore` and the :class:`Downloader`: None until
one is applied, verified and versioned like the application list (tampered, rolled back and
malformed ones refused, the previous one kept on disk and in memory), reloaded at start, and
fetched only by a downloader told to."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers.published_documents import FARES, PASSES, RESERVATIONS, TOKEN

from terminal.crypto import signing
from terminal.crypto.signing import Algorithm
from terminal.errors import ConfigError
from terminal.host.clock import FixedClock
from terminal.sync.downloads import (
    DEFAULT_DOCUMENTS,
    DocumentStore,
    Downloader,
    Outcome,
)
from terminal.transit.fares import FaresError
from terminal.venue.passes import PassesError
from terminal.venue.reservations import ReservationsError
from terminal.wire.document import DocumentError, StaleDocumentError, sign_document

ALG = Algorithm.ECDSA_P256
KEY = signing.generate_private_key(ALG)
PUBLIC = signing.public_key_bytes(KEY)
OTHER_KEY = signing.generate_private_key(ALG)

KINDS: dict[str, tuple[dict[str, Any], str, type[DocumentError]]] = {
    "fares": (FARES, "fare_table", FaresError),
    "reservations": (RESERVATIONS, "reservations", ReservationsError),
    "passes": (PASSES, "passes", PassesError),
}


def signed(kind: str, version: int, body: dict[str, Any] | None = None, key: Any = KEY) -> bytes:
    doc = copy.deepcopy(body if body is not None else KINDS[kind][0])
    doc.update(kind=kind, version=version)
    return sign_document(doc, key, ALG)


def store(directory: Path) -> DocumentStore:
    return DocumentStore(directory, PUBLIC, ALG)


def apply(docs: DocumentStore, kind: str) -> Callable[[bytes], Any]:
    return {
        "fares": docs.apply_fares,
        "reservations": docs.apply_reservations,
        "passes": docs.apply_passes,
    }[kind]


def in_force(docs: DocumentStore, kind: str) -> Any:
    return getattr(docs, KINDS[kind][1])


def test_a_terminal_without_them_has_none(tmp_path: Path) -> None:
    docs = store(tmp_path)
    assert docs.fare_table is None and docs.reservations is None and docs.passes is None
    assert docs.current_versions() == {"hotlist": 0, "trustlist": 0, "applist": 0}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_applied_stored_and_reloaded(tmp_path: Path, kind: str) -> None:
    docs = store(tmp_path)
    raw = signed(kind, 3)
    body = apply(docs, kind)(raw)
    assert body["version"] == 3 and body["kind"] == kind
    assert in_force(docs, kind).version == 3
    assert docs.current_versions()[kind] == 3
    assert (tmp_path / f"{kind}.json").read_bytes() == raw
    assert (tmp_path / f"{kind}.json").stat().st_mode & 0o777 == 0o600
    again = store(tmp_path)
    assert in_force(again, kind).version == 3 and again.current_versions()[kind] == 3
    assert not again.problems


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_refusals_keep_the_document_in_force(tmp_path: Path, kind: str) -> None:
    docs = store(tmp_path)
    good = signed(kind, 5)
    apply(docs, kind)(good)
    before = in_force(docs, kind)

    with pytest.raises(StaleDocumentError) as stale:
        apply(docs, kind)(signed(kind, 4))  # rollback
    assert not stale.value.identical and stale.value.current == 5
    with pytest.raises(StaleDocumentError) as same:
        apply(docs, kind)(good)  # the very same one again
    assert same.value.identical
    with pytest.raises(StaleDocumentError) as other:
        body = copy.deepcopy(KINDS[kind][0])
        body[next(iter(body))] = "x-other"
        apply(docs, kind)(signed(kind, 5, body))  # same version, other content
    assert not other.value.identical
    with pytest.raises(DocumentError, match="signed by key"):
        apply(docs, kind)(signed(kind, 6, key=OTHER_KEY))
    tampered = signed(kind, 6).replace(b'"version":6', b'"version":7')
    with pytest.raises(DocumentError, match="does not verify"):
        apply(docs, kind)(tampered)
    with pytest.raises(DocumentError, match="kind"):
        apply(docs, kind)(signed("applist", 6, {"services": []}))
    malformed = {**KINDS[kind][0], "unexpected": 1}
    with pytest.raises(KINDS[kind][2]):
        apply(docs, kind)(signed(kind, 6, malformed))

    assert in_force(docs, kind) is before
    assert docs.current_versions()[kind] == 5
    assert (tmp_path / f"{kind}.json").read_bytes() == good


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_stored_document_edited_on_disk_is_not_used(tmp_path: Path, kind: str) -> None:
    apply(store(tmp_path), kind)(signed(kind, 2))
    path = tmp_path / f"{kind}.json"
    path.write_bytes(path.read_bytes().replace(b'"version":2', b'"version":9'))
    docs = store(tmp_path)
    assert in_force(docs, kind) is None
    assert kind not in docs.current_versions()
    assert f"{kind}.json" in docs.problems
    apply(docs, kind)(signed(kind, 3))  # a good one replaces it
    assert in_force(docs, kind).version == 3 and f"{kind}.json" not in docs.problems


class Office:
    """A back office as a plain ``fetch``: the documents it serves, the paths asked."""

    def __init__(self, served: dict[str, bytes]) -> None:
        self.served = served
        self.asked: list[str] = []

    def fetch(self, path: str) -> bytes:
        self.asked.append(path.split("?")[0])
        if path.split("?")[0] not in self.served:
            raise LookupError(path)
        return self.served[path.split("?")[0]]


def test_the_downloader_fetches_them_only_when_told(tmp_path: Path) -> None:
    office = Office({f"/v1/{kind}": signed(kind, 1) for kind in KINDS})
    docs = store(tmp_path)
    report = Downloader(docs, office.fetch, FixedClock()).run_once()
    assert set(report.results) == set(DEFAULT_DOCUMENTS)
    assert not {"/v1/fares", "/v1/reservations", "/v1/passes"} & set(office.asked)
    assert docs.fare_table is None

    office.asked.clear()
    downloader = Downloader(docs, office.fetch, FixedClock(), documents={"passes", "fares"})
    assert downloader.documents == ("fares", "passes")
    report = downloader.run_once()
    assert office.asked == ["/v1/fares", "/v1/passes"]
    assert {n: r.outcome for n, r in report.results.items()} == {
        "fares": Outcome.APPLIED,
        "passes": Outcome.APPLIED,
    }
    assert docs.fare_table.version == 1 and docs.passes.version == 1 and docs.reservations is None

    report = downloader.run_once()  # the same again: unchanged
    assert {r.outcome for r in report.results.values()} == {Outcome.UNCHANGED}

    office.served["/v1/fares"] = signed("fares", 2, {**FARES, "network": "Bad Network"})
    office.served["/v1/passes"] = signed("passes", 1).replace(b'"area":"', b'"area":"x')
    report = downloader.run_once()
    assert report.results["fares"].outcome is Outcome.REFUSED
    assert report.results["fares"].code == "bad_fares"
    assert report.results["passes"].outcome is Outcome.REFUSED
    assert docs.fare_table.version == 1 and docs.passes.version == 1


def test_every_document_together(tmp_path: Path) -> None:
    office = Office({f"/v1/{kind}": signed(kind, 1) for kind in KINDS})
    everything = (*DEFAULT_DOCUMENTS, *KINDS)
    report = Downloader(
        store(tmp_path), office.fetch, FixedClock(), documents=everything
    ).run_once()
    assert list(report.results) == [
        "hotlist",
        "trustlist",
        "applist",
        "fares",
        "reservations",
        "passes",
    ]
    assert {k: report.results[k].outcome for k in KINDS} == dict.fromkeys(KINDS, Outcome.APPLIED)
    # The slots of the token the body was built with.
    assert [s.id for s in store(tmp_path).reservations.slots_for(TOKEN)] == ["am"]


def test_an_unknown_document_name_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="timetable"):
        Downloader(store(tmp_path), Office({}).fetch, FixedClock(), documents={"timetable"})
