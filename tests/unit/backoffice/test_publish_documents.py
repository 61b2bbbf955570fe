"""Publishing the rail fare table, a venue's reservations and a scenic area's passes: the
terminal's parser checks a body before it is signed, ``publish-fares`` /
``publish-reservations`` / ``publish-passes`` store a signed document, identity and card
numbers become tokens and reach neither the storage nor the output nor the log, and the
routes serve the stored document with an ETag and 304."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from helpers.published_documents import (
    CARD,
    FARES,
    IDENTITY,
    PASSES,
    RESERVATIONS,
    SLOTS,
    TOKEN_KEY,
)

from backoffice import keys, publish
from backoffice.errors import NotFoundError, PublicationError
from backoffice.server import BackOffice
from backoffice.storage import SqliteStorage, open_storage
from onecard.cli import main
from terminal.host.clock import SystemClock
from terminal.privacy.cardtoken import card_token
from terminal.sync.auth import TerminalCredentials
from terminal.sync.client import BackOfficeClient
from terminal.transit.fares import parse_fare_table
from terminal.venue.passes import parse_passes
from terminal.venue.reservations import identity_token, parse_reservations
from terminal.wire.canonical import canonical_json
from terminal.wire.document import verify_document

TERMINAL = "T0001"
SECRET = bytes(range(32))
BODIES = {"fares": FARES, "reservations": RESERVATIONS, "passes": PASSES}
PARSERS = {"fares": parse_fare_table, "reservations": parse_reservations, "passes": parse_passes}


@pytest.fixture
def office(tmp_path: Path) -> Iterator[tuple[BackOffice, SqliteStorage, publish.PublicationKey]]:
    storage = open_storage(tmp_path / "bo.sqlite")
    storage.enrol(TERMINAL, SECRET, SystemClock().now())
    key = publish.generate_publication_key()
    yield BackOffice(storage, key, SystemClock()), storage, key
    storage.close()


@pytest.mark.parametrize("kind", sorted(BODIES))
def test_publish_signs_and_stores_and_the_route_serves_it_with_304(office: Any, kind: str) -> None:
    backoffice, storage, key = office
    first = backoffice.publish(kind, BODIES[kind])
    second = backoffice.publish(kind, {**BODIES[kind], "kind": kind, "version": 99})
    assert (first["version"], second["version"]) == (1, 2)  # the back office numbers them
    stored = storage.document_text(kind).encode()
    body = verify_document(stored, key.public_key, key.algorithm, kind)
    assert PARSERS[kind](body).version == 2

    server = backoffice.serve()
    client = BackOfficeClient(
        TerminalCredentials(TERMINAL, SECRET, server.url, key.public_key, "sm2", bytes(32)),
        SystemClock(),
    )
    try:
        answer = client.get_document(f"/v1/{kind}")
        assert answer.status == 200 and answer.body == stored and answer.etag
        again = client.get_document(f"/v1/{kind}", answer.etag)
        assert (again.status, again.body, again.etag) == (304, b"", answer.etag)
        backoffice.publish(kind, BODIES[kind])
        newer = client.get_document(f"/v1/{kind}", answer.etag)
        assert newer.status == 200 and newer.etag != answer.etag
    finally:
        client.close()
        server.shutdown()


def test_an_unpublished_document_is_404(office: Any) -> None:
    backoffice, _, _ = office
    assert backoffice.documents.stored_etag("fares") is None
    for kind in BODIES:
        with pytest.raises(NotFoundError):
            backoffice._routes[f"/v1/{kind}"].document("", {})


@pytest.mark.parametrize(
    ("kind", "change"),
    [
        ("fares", {"pricing": "zones"}),
        ("fares", {"distances": [["0101", "0999", 3]]}),
        ("reservations", {"holders": [["not hex at all!!", ["am"]]]}),
        ("reservations", {"slots": []}),
        ("passes", {"passes": [["00" * 8, "annual", "2026-12-31", "2026-01-01", 1]]}),
        ("passes", {"extra": 1}),
    ],
)
def test_a_body_the_terminal_would_refuse_is_not_published(
    office: Any, kind: str, change: dict[str, Any]
) -> None:
    backoffice, storage, _ = office
    with pytest.raises(PublicationError, match=f"{kind} refused"):
        backoffice.publish(kind, {**copy.deepcopy(BODIES[kind]), **change})
    assert storage.document_text(kind) is None


def test_reservations_body_from_csv() -> None:
    csv_text = (
        "identity_number,slot_id\n"
        f"{IDENTITY.lower()},am\n"
        "110105194912310029,pm\n"
        "110105194912310029,am\n"
        "\n"
        "# a comment\n"
    )
    body = publish.reservations_body("museum-1", SLOTS, csv_text, TOKEN_KEY)
    alice = identity_token(TOKEN_KEY, IDENTITY).hex()
    bob = identity_token(TOKEN_KEY, "110105194912310029").hex()
    assert body["holders"] == sorted([[alice, ["am"]], [bob, ["pm", "am"]]])
    assert IDENTITY not in json.dumps(body) and IDENTITY.lower() not in json.dumps(body)
    reservations = parse_reservations(body)
    assert [s.id for s in reservations.slots_for(bytes.fromhex(bob))] == ["am", "pm"]


@pytest.mark.parametrize(
    ("csv_text", "reason"),
    [
        (f"{IDENTITY},noon\n", "line 1: slot 'noon' unknown"),
        (f"{IDENTITY},am,extra\n", "line 1: 2 columns"),
        (f"{IDENTITY},am\n{IDENTITY},am\n", "line 2: the same holder and slot"),
        (f"{IDENTITY},am\n1234,am\n", "line 2: not an identity number"),
    ],
)
def test_reservations_csv_errors_name_the_line_not_the_number(csv_text: str, reason: str) -> None:
    with pytest.raises(PublicationError) as caught:
        publish.reservations_body("museum-1", SLOTS, csv_text, TOKEN_KEY)
    assert reason in caught.value.reason
    assert IDENTITY not in caught.value.reason and "1234" not in caught.value.reason


def test_passes_body_from_csv() -> None:
    csv_text = (
        "card_number,kind,valid_from,valid_to,entries_per_day\n"
        f"{CARD},annual,2026-01-01,2026-12-31,2\n"
    )
    body = publish.passes_body("jinfo-mountain", csv_text, TOKEN_KEY)
    token = card_token(TOKEN_KEY, CARD)[:8]
    assert body == {
        "area": "jinfo-mountain",
        "passes": [[token.hex(), "annual", "2026-01-01", "2026-12-31", 2]],
    }
    assert parse_passes(body).pass_for(token).entries_per_day == 2
    with pytest.raises(PublicationError, match="line 2: a second pass") as caught:
        publish.passes_body("a", f"{CARD},annual,2026-01-01,2026-12-31,2\n" * 2, TOKEN_KEY)
    assert CARD not in caught.value.reason
    with pytest.raises(PublicationError, match="line 1: valid_to"):
        publish.passes_body("a", f"{CARD},annual,2026-01-01,2026-13-31,2\n", TOKEN_KEY)


# --- the CLI ----------------------------------------------------------------------------------


@pytest.fixture
def operator(tmp_path: Path) -> dict[str, Path]:
    key = publish.generate_publication_key()
    paths = {
        "storage": tmp_path / "bo.sqlite",
        "publication_key": tmp_path / "publication.key",
        "token_key": tmp_path / "token.key",
    }
    keys.write_publication_key(key, paths["publication_key"])
    keys.write_token_key(TOKEN_KEY, paths["token_key"])
    return paths


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(args) == 0
    return json.loads(capsys.readouterr().out)


def test_publish_fares_cli(operator: dict[str, Path], tmp_path: Path, capsys: Any) -> None:
    body = tmp_path / "fares.json"
    body.write_text(json.dumps(FARES))
    common = [
        "--storage",
        str(operator["storage"]),
        "--publication-key",
        str(operator["publication_key"]),
    ]
    out = _run(["backoffice", "publish-fares", str(body), *common], capsys)
    assert (out["published"], out["version"]) == ("fares", 1)
    body.write_text(json.dumps({**FARES, "bands": [[6, 200]]}))
    assert main(["backoffice", "publish-fares", str(body), *common]) != 0
    assert "bands" in capsys.readouterr().err
    with closing(open_storage(operator["storage"])) as storage:
        assert json.loads(storage.document_text("fares"))["version"] == 1


def test_publish_reservations_and_passes_cli_keep_numbers_out(
    operator: dict[str, Path], tmp_path: Path, capsys: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    common = [
        "--storage",
        str(operator["storage"]),
        "--publication-key",
        str(operator["publication_key"]),
        "--token-key",
        str(operator["token_key"]),
    ]
    reservations_csv = tmp_path / "reservations.csv"
    reservations_csv.write_text(f"identity_number,slot_id\n{IDENTITY},am\n{IDENTITY},pm\n")
    slots = tmp_path / "slots.json"
    slots.write_text(json.dumps(SLOTS[:1]))
    out = _run(
        [
            "backoffice",
            "publish-reservations",
            str(reservations_csv),
            "--venue",
            "museum-1",
            "--slots",
            str(slots),
            "--slot",
            ",".join(SLOTS[1].values()),
            *common,
        ],
        capsys,
    )
    assert (out["published"], out["version"], out["holders"], out["slots"]) == (
        "reservations",
        1,
        1,
        2,
    )
    passes_csv = tmp_path / "passes.csv"
    passes_csv.write_text(f"{CARD},annual,2026-01-01,2026-12-31,2\n")
    out = _run(
        ["backoffice", "publish-passes", str(passes_csv), "--area", "jinfo-mountain", *common],
        capsys,
    )
    assert (out["published"], out["version"], out["passes"]) == ("passes", 1, 1)

    with closing(open_storage(operator["storage"])) as storage:
        everything = canonical_json(
            {kind: storage.document_text(kind) for kind in ("reservations", "passes")}
        ).decode()
        key = keys.load_publication_key(operator["publication_key"])
        body = verify_document(
            storage.document_text("reservations").encode(),
            key.public_key,
            key.algorithm,
            "reservations",
        )
    token = identity_token(TOKEN_KEY, IDENTITY)
    assert [s.id for s in parse_reservations(body).slots_for(token)] == ["am", "pm"]
    for number in (IDENTITY, IDENTITY.lower(), CARD):
        assert number not in everything
        assert number not in json.dumps(out)
        assert number not in caplog.text


def test_publish_reservations_needs_slots(
    operator: dict[str, Path], tmp_path: Path, capsys: Any
) -> None:
    reservations_csv = tmp_path / "r.csv"
    reservations_csv.write_text(f"{IDENTITY},am\n")
    args = [
        "backoffice",
        "publish-reservations",
        str(reservations_csv),
        "--venue",
        "museum-1",
        "--storage",
        str(operator["storage"]),
        "--publication-key",
        str(operator["publication_key"]),
        "--token-key",
        str(operator["token_key"]),
    ]
    assert main(args) != 0
    assert "slots" in capsys.readouterr().err
    assert main([*args, "--slot", "am,2026-12-06T09:00:00+08:00"]) != 0
    assert IDENTITY not in capsys.readouterr().err
