"""Verified download and apply of published documents: tampered, unsigned, rolled-back and
malformed documents are refused and the previous one stays in force, on disk and in memory."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from terminal.crypto import signing
from terminal.crypto.signing import Algorithm
from terminal.errors import ConfigError, OneCardError
from terminal.host.clock import FixedClock
from terminal.hotlist import HotList, HotlistError
from terminal.policy import ApplicationListError
from terminal.sync.downloads import (
    APPLIST_FILE,
    HOTLIST_FILE,
    TRUSTLIST_FILE,
    DocumentStore,
    Downloader,
    Outcome,
)
from terminal.wire.canonical import canonical_json
from terminal.wire.document import (
    DocumentError,
    StaleDocumentError,
    sign_document,
)

ALG = Algorithm.SM2


@cache
def _key(name: str) -> signing.PrivateKey:
    return signing.generate_private_key(ALG)


PUBLICATION = _key("publication")
PUB = signing.public_key_bytes(PUBLICATION)


def signed(body: dict[str, Any], key: signing.PrivateKey = PUBLICATION) -> bytes:
    return sign_document(body, key, ALG)


def hx(key: int) -> str:
    return f"{key:016x}"


def delta(version: int, base: int, added: Sequence[int] = (), removed: Sequence[int] = ()) -> bytes:
    return signed(
        {
            "kind": "hotlist-delta",
            "version": version,
            "base": base,
            "added": [hx(k) for k in added],
            "removed": [hx(k) for k in removed],
        }
    )


def applist(version: int, code: str = "museum-entry") -> bytes:
    return signed(
        {
            "kind": "applist",
            "version": version,
            "services": [
                {"code": code, "name": "Museum", "scope": "chongqing", "valid_from": "2025-01-01"}
            ],
        }
    )


def trustlist(version: int, issuers: Sequence[str] = ("k1",)) -> bytes:
    return signed({"kind": "trustlist", "version": version, "issuers": list(issuers)})


def tampered(raw: bytes, **changes: Any) -> bytes:
    obj = json.loads(raw)
    obj.update(changes)
    return canonical_json(obj)


def unsigned(raw: bytes) -> bytes:
    obj = json.loads(raw)
    del obj["signature"]
    return canonical_json(obj)


@pytest.fixture
def store(tmp_path: Path) -> DocumentStore:
    return DocumentStore(tmp_path, PUB, ALG)


def snapshot(store: DocumentStore) -> dict[str, Any]:
    files = {p.name: p.read_bytes() for p in store.directory.iterdir()}
    return {
        "files": files,
        "versions": store.current_versions(),
        "hotlist": store.hotlist.keys().tolist(),
        "applist": store.application_list,
        "trustlist": store.trust_list,
    }


# --- the store ------------------------------------------------------------------------------


def test_fresh_store_has_nothing(store: DocumentStore) -> None:
    assert store.current_versions() == {"hotlist": 0, "trustlist": 0, "applist": 0}
    assert len(store.hotlist) == 0
    assert store.application_list is None and store.trust_list is None
    assert store.problems == {}


def test_hotlist_full_then_deltas(store: DocumentStore) -> None:
    assert store.apply_hotlist_delta(delta(5, 0, [1, 2, 3])) == 5
    assert store.apply_hotlist_delta(delta(6, 5, [2**64 - 1], [2])) == 6
    assert store.hotlist.keys().tolist() == [1, 3, 2**64 - 1]
    assert store.current_versions()["hotlist"] == 6
    assert HotList.load(store.directory / HOTLIST_FILE).keys().tolist() == [1, 3, 2**64 - 1]


def test_store_reopens_with_what_it_applied(store: DocumentStore) -> None:
    store.apply_hotlist_delta(delta(2, 0, [7]))
    store.apply_application_list(applist(3))
    store.apply_trust_list(trustlist(4))
    again = DocumentStore(store.directory, PUB, ALG)
    assert again.current_versions() == {"hotlist": 2, "trustlist": 4, "applist": 3}
    assert again.hotlist.contains_key(7)
    assert again.application_list is not None and "museum-entry" in again.application_list
    assert again.problems == {}


def _with_hotlist(store: DocumentStore) -> DocumentStore:
    store.apply_hotlist_delta(delta(5, 0, [1, 2, 3]))
    return store


@pytest.mark.parametrize(
    ("make", "error", "reason"),
    [
        (lambda: tampered(delta(6, 5, [9]), added=[hx(10)]), DocumentError, "does not verify"),
        (lambda: tampered(delta(6, 5, [9]), removed=[hx(1)]), DocumentError, "does not verify"),
        (lambda: tampered(delta(6, 5, [9]), version=7), DocumentError, "does not verify"),
        (lambda: unsigned(delta(6, 5, [9])), DocumentError, "not signed"),
        (lambda: delta(5, 0, [9]), StaleDocumentError, "not newer"),
        (lambda: delta(4, 0, [9]), StaleDocumentError, "not newer"),
        (lambda: delta(7, 4, [9]), HotlistError, "built on version 4"),
        (lambda: delta(6, 0, [9], [1]), HotlistError, "cannot remove"),
        (lambda: delta(6, 5, [9], [9]), HotlistError, "both adds and removes"),
        (lambda: applist(6), DocumentError, "kind 'applist'"),
        (
            lambda: signed({"kind": "hotlist-delta", "version": 6, "base": 5, "added": ["1"]}),
            DocumentError,
            "16 hex digits",
        ),
        (
            lambda: signed(
                {
                    "kind": "hotlist-delta",
                    "version": 6,
                    "base": 5,
                    "added": ["zz" * 8],
                    "removed": [],
                }
            ),
            DocumentError,
            "non-hex",
        ),
        (
            lambda: signed(
                {
                    "kind": "hotlist-delta",
                    "version": 6,
                    "base": 5,
                    "added": [" " + "0" * 15],
                    "removed": [],
                }
            ),
            DocumentError,
            "non-hex",
        ),
        (
            lambda: signed(
                {"kind": "hotlist-delta", "version": 6, "base": -1, "added": [], "removed": []}
            ),
            DocumentError,
            "base must be",
        ),
        (
            lambda: signed(
                {
                    "kind": "hotlist-delta",
                    "version": 6,
                    "base": 5,
                    "added": [],
                    "removed": [],
                    "x": 1,
                }
            ),
            DocumentError,
            "unknown keys",
        ),
        (
            lambda: sign_document(
                {"kind": "hotlist-delta", "version": 6, "base": 5, "added": [], "removed": []},
                _key("other"),
                ALG,
            ),
            DocumentError,
            "signed by key",
        ),
        (lambda: b"<html>502 Bad Gateway</html>", DocumentError, "not JSON"),
    ],
)
def test_bad_hotlist_delta_is_refused_and_previous_kept(
    store: DocumentStore,
    make: Callable[[], bytes],
    error: type[OneCardError],
    reason: str,
) -> None:
    _with_hotlist(store)
    before = snapshot(store)
    with pytest.raises(error, match=reason):
        store.apply_hotlist_delta(make())
    assert snapshot(store) == before


def test_failed_save_keeps_previous_hotlist(
    store: DocumentStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _with_hotlist(store)
    before = snapshot(store)

    def full_disk(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("terminal.hotlist.os.replace", full_disk)
    with pytest.raises(HotlistError, match="No space left"):
        store.apply_hotlist_delta(delta(6, 5, [9]))
    assert snapshot(store) == before


@pytest.mark.parametrize(
    ("apply_name", "make", "kind"),
    [
        ("apply_application_list", applist, "applist"),
        ("apply_trust_list", trustlist, "trustlist"),
    ],
)
def test_signed_list_refusals_keep_previous(
    store: DocumentStore, apply_name: str, make: Callable[[int], bytes], kind: str
) -> None:
    apply: Callable[[bytes], dict[str, Any]] = getattr(store, apply_name)
    body = apply(make(3))
    assert body["version"] == 3 and "signature" not in body
    before = snapshot(store)
    with pytest.raises(DocumentError, match="does not verify"):
        apply(tampered(make(4), version=5))
    with pytest.raises(DocumentError, match="not signed"):
        apply(unsigned(make(4)))
    with pytest.raises(StaleDocumentError, match="not newer") as rollback:
        apply(make(2))
    assert not rollback.value.identical
    with pytest.raises(StaleDocumentError) as again:
        apply(make(3))
    assert again.value.identical
    other_kind = trustlist(9) if kind == "applist" else applist(9)
    with pytest.raises(DocumentError, match="expected"):
        apply(other_kind)
    with pytest.raises(DocumentError, match="signed by key"):
        apply(sign_document(json.loads(unsigned(make(9))), _key("other"), ALG))
    assert snapshot(store) == before
    assert apply(make(4))["version"] == 4
    assert store.current_versions()[kind] == 4


def test_same_version_with_other_content_is_not_identical(store: DocumentStore) -> None:
    store.apply_application_list(applist(3))
    with pytest.raises(StaleDocumentError) as err:
        store.apply_application_list(applist(3, code="library-entry"))
    assert not err.value.identical


def test_malformed_application_list_is_refused(store: DocumentStore) -> None:
    store.apply_application_list(applist(3))
    before = snapshot(store)
    bad = signed(
        {
            "kind": "applist",
            "version": 4,
            "services": [{"code": "x", "name": "X", "scope": "mars", "valid_from": "2025-01-01"}],
        }
    )
    with pytest.raises(ApplicationListError, match="scope"):
        store.apply_application_list(bad)
    assert snapshot(store) == before


def test_trust_list_parser_is_consulted(tmp_path: Path) -> None:
    def parser(body: Any) -> None:
        if not body.get("issuers"):
            raise ConfigError("trust list names no issuer")

    store = DocumentStore(tmp_path, PUB, ALG, trust_list_parser=parser)
    store.apply_trust_list(trustlist(1))
    with pytest.raises(DocumentError, match="names no issuer"):
        store.apply_trust_list(trustlist(2, issuers=[]))
    assert store.current_versions()["trustlist"] == 1


# --- what is on disk at start-up ------------------------------------------------------------


def test_corrupt_stored_hotlist_is_not_used_and_left_alone(tmp_path: Path) -> None:
    DocumentStore(tmp_path, PUB, ALG).apply_hotlist_delta(delta(5, 0, [1]))
    path = tmp_path / HOTLIST_FILE
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    store = DocumentStore(tmp_path, PUB, ALG)
    assert store.current_versions()["hotlist"] == 0  # next download asks for a full list
    assert "checksum" in store.problems[HOTLIST_FILE]
    assert path.read_bytes() == bytes(data)
    store.apply_hotlist_delta(delta(6, 0, [1, 2]))
    assert store.problems == {}
    assert HotList.load(path).version == 6


@pytest.mark.parametrize("name", [TRUSTLIST_FILE, APPLIST_FILE])
def test_edited_stored_document_is_not_used(tmp_path: Path, name: str) -> None:
    first = DocumentStore(tmp_path, PUB, ALG)
    first.apply_trust_list(trustlist(3))
    first.apply_application_list(applist(3))
    path = tmp_path / name
    path.write_bytes(tampered(path.read_bytes(), version=99))
    store = DocumentStore(tmp_path, PUB, ALG)
    kind = "trustlist" if name == TRUSTLIST_FILE else "applist"
    assert store.current_versions()[kind] == 0
    assert "does not verify" in store.problems[name]


def test_bad_configuration_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        DocumentStore(tmp_path, b"\x04" + bytes(64), ALG)
    with pytest.raises(ConfigError):
        DocumentStore(tmp_path, PUB, "rsa")
    with pytest.raises(ConfigError):
        DocumentStore(tmp_path / "absent", PUB, ALG)


# --- the downloader -------------------------------------------------------------------------


class FakeBackOffice:
    """Serves whatever documents the test puts in ``docs``, and records the paths asked."""

    def __init__(self) -> None:
        self.docs: dict[str, bytes | Exception] = {}
        self.asked: list[str] = []

    def fetch(self, path: str) -> bytes:
        self.asked.append(path)
        answer = self.docs[path]
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_downloader_applies_all_three(store: DocumentStore) -> None:
    office, clock = FakeBackOffice(), FixedClock(1_800_000_000.0)
    office.docs = {
        "/v1/hotlist?since=0": delta(1, 0, [5]),
        "/v1/trustlist": trustlist(1),
        "/v1/applist": applist(1),
    }
    report = Downloader(store, office.fetch, clock).run_once()
    assert report.ok and report.time == 1_800_000_000.0
    assert {n: r.outcome for n, r in report.results.items()} == dict.fromkeys(
        ("hotlist", "trustlist", "applist"), Outcome.APPLIED
    )
    assert store.current_versions() == {"hotlist": 1, "trustlist": 1, "applist": 1}
    assert office.asked == ["/v1/hotlist?since=0", "/v1/trustlist", "/v1/applist"]


def test_downloader_asks_since_current_and_reports_unchanged(store: DocumentStore) -> None:
    store.apply_hotlist_delta(delta(4, 0, [5]))
    store.apply_trust_list(trustlist(2))
    store.apply_application_list(applist(2))
    office, clock = FakeBackOffice(), FixedClock()
    office.docs = {
        "/v1/hotlist?since=4": delta(4, 4),  # nothing new
        "/v1/trustlist": trustlist(2),
        "/v1/applist": applist(2),
    }
    downloader = Downloader(store, office.fetch, clock)
    report = downloader.run_once()
    assert report.ok
    assert {r.outcome for r in report.results.values()} == {Outcome.UNCHANGED}
    clock.advance(90)
    assert downloader.staleness("hotlist") == 90
    assert downloader.staleness("nothing") is None


def test_downloader_refuses_tampered_unsigned_and_rolled_back(store: DocumentStore) -> None:
    store.apply_hotlist_delta(delta(4, 0, [5]))
    store.apply_trust_list(trustlist(2))
    store.apply_application_list(applist(2))
    before = snapshot(store)
    office = FakeBackOffice()
    downloader = Downloader(store, office.fetch, FixedClock())
    rounds = [
        {
            "/v1/hotlist?since=4": tampered(delta(5, 4, [6]), added=[hx(7)]),
            "/v1/trustlist": unsigned(trustlist(3)),
            "/v1/applist": applist(1),
        },
        {
            "/v1/hotlist?since=4": delta(3, 0, []),
            "/v1/trustlist": trustlist(1),
            "/v1/applist": tampered(applist(3), version=4),
        },
        {
            "/v1/hotlist?since=4": unsigned(delta(5, 4, [6])),
            "/v1/trustlist": tampered(trustlist(3), issuers=["attacker"]),
            "/v1/applist": unsigned(applist(3)),
        },
    ]
    for docs in rounds:
        office.docs = docs
        report = downloader.run_once()
        assert not report.ok
        for result in report.results.values():
            assert result.outcome is Outcome.REFUSED
            assert result.reason and result.code
        assert snapshot(store) == before
    assert downloader.last_success == {}


def test_downloader_goes_on_when_one_fetch_fails(store: DocumentStore) -> None:
    office = FakeBackOffice()
    office.docs = {
        "/v1/hotlist?since=0": ConnectionResetError(104, "reset"),
        "/v1/trustlist": ConfigError("back office answered 503"),
        "/v1/applist": applist(1),
    }
    report = Downloader(store, office.fetch, FixedClock()).run_once()
    hot, trust, app = (report.results[n] for n in ("hotlist", "trustlist", "applist"))
    assert (hot.outcome, hot.code, hot.reason) == (
        Outcome.UNAVAILABLE,
        "fetch_failed",
        "ConnectionResetError",
    )
    assert (trust.outcome, trust.reason) == (Outcome.UNAVAILABLE, "back office answered 503")
    assert app.outcome is Outcome.APPLIED and app.version == 1
