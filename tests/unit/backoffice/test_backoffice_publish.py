"""Signed documents, canonical JSON, hotlist netting and the operator's key files."""

from __future__ import annotations

import os
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backoffice import keys, publish
from backoffice.errors import PublicationError
from backoffice.publish import HotlistChange, HotlistSnapshot
from terminal.crypto import signing
from terminal.crypto.sm2 import sm3
from terminal.privacy.cardtoken import card_token
from terminal.wire.canonical import canonical_json
from terminal.wire.document import DocumentError, verify_document


@pytest.fixture(scope="module", params=[signing.Algorithm.SM2, signing.Algorithm.ECDSA_P256])
def key(request) -> publish.PublicationKey:
    return publish.generate_publication_key(request.param)


def test_key_id_is_first_8_bytes_of_sm3_for_every_algorithm(key):
    # The terminal names publication keys the same way (terminal.wire.document.key_id).
    from terminal.wire.document import key_id

    assert key.key_id == sm3(key.public_key)[:8].hex() == key_id(key.public_key)


def verifies(doc: dict, key: publish.PublicationKey) -> bool:
    """Whether a terminal accepts ``doc`` (the wire's verify_document, the one it runs)."""
    try:
        verify_document(canonical_json(doc), key.public_key, key.algorithm, doc.get("kind"))
    except DocumentError:
        return False
    return True


def test_signed_document_verifies_and_covers_everything(key):
    doc = publish.sign_document({"kind": "applist", "version": 3, "items": ["a"]}, key)
    assert doc["signature"]["algorithm"] == key.algorithm.value
    assert doc["signature"]["key_id"] == key.key_id
    # The signature is over the canonical JSON without "signature", as documented.
    body = {k: v for k, v in doc.items() if k != "signature"}
    value = bytes.fromhex(doc["signature"]["value"])
    assert signing.verify(key.algorithm, key.public_key, canonical_json(body), value)
    assert verifies(doc, key)
    assert not verifies({**doc, "version": 4}, key)
    assert not verifies({**doc, "signature": "x"}, key)
    bad_value = {**doc["signature"], "value": "zz"}
    assert not verifies({**doc, "signature": bad_value}, key)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), "\ud800"])
def test_a_body_without_canonical_json_is_never_signed(key, value):
    # The back office's encoder used to write NaN; now nothing is signed that no terminal
    # could read.
    with pytest.raises(PublicationError):
        publish.sign_document({"kind": "applist", "version": 1, "x": value}, key)


def test_prepare_document_sets_kind_and_version():
    doc = publish.prepare_document("trustlist", {"issuers": [], "version": 99}, 4)
    assert doc == {"issuers": [], "kind": "trustlist", "version": 4}
    with pytest.raises(PublicationError):
        publish.prepare_document("trustlist", {"kind": "applist"}, 1)
    with pytest.raises(PublicationError):
        publish.prepare_document("trustlist", [1], 1)
    with pytest.raises(PublicationError):
        publish.prepare_document("hotlist-delta", {}, 1)


def test_hotlist_entries_from_card_and_token():
    token_key = bytes(range(32))
    assert (
        publish.hotlist_entry_for_card(token_key, "A12345678")
        == card_token(token_key, "A12345678")[:8].hex()
    )
    assert publish.hotlist_entry_for_token("AB" * 16) == "ab" * 8
    assert publish.hotlist_entry_for_token("cd" * 8) == "cd" * 8
    for bad in ("", "ab" * 9, "zz" * 8):
        with pytest.raises(PublicationError):
            publish.hotlist_entry_for_token(bad)


def test_hotlist_entry_of_a_tunion_card_is_what_a_validator_looks_up():
    from terminal.privacy.cardtoken import tunion_card_token

    token_key = bytes(range(32))
    serial = "51000000000000000601"
    assert (
        publish.hotlist_entry_for_tunion(token_key, serial)
        == tunion_card_token(token_key, bytes.fromhex(serial))[:8].hex()
    )
    # Never the entry of a card number that happens to read the same.
    assert publish.hotlist_entry_for_tunion(token_key, serial) != publish.hotlist_entry_for_card(
        token_key, serial
    )
    for bad in ("", "51" * 9, "zz" * 10):
        with pytest.raises(PublicationError):
            publish.hotlist_entry_for_tunion(token_key, bad)


def _model_delta(changes, since):
    """Replay from empty: the set at ``since`` and at the end, then diff."""
    state: set[str] = set()
    at_since = set()
    for change in changes:
        (state.add if change.added else state.discard)(change.entry)
        if change.version == since:
            at_since = set(state)
    return sorted(state - at_since), sorted(at_since - state)


@settings(max_examples=300)
@given(st.lists(st.sampled_from(["a" * 16, "b" * 16, "c" * 16]), max_size=30), st.data())
def test_net_changes_equals_the_set_difference(toggles, data):
    # Build a valid change history: each change toggles its entry (no-ops make no version).
    state: set[str] = set()
    changes = []
    for version, entry in enumerate(toggles, start=1):
        added = entry not in state
        (state.add if added else state.discard)(entry)
        changes.append(HotlistChange(version, entry, added))
    since = data.draw(st.integers(0, len(changes)))
    added, removed = publish.net_changes([c for c in changes if c.version > since])
    assert (added, removed) == _model_delta(changes, since)


def test_hotlist_document_delta_or_full():
    changes = (HotlistChange(3, "a" * 16, True), HotlistChange(4, "b" * 16, False))
    snap = HotlistSnapshot(4, 2, changes, None)
    assert publish.hotlist_document(2, snap) == {
        "kind": "hotlist-delta",
        "version": 4,
        "base": 2,
        "added": ["a" * 16],
        "removed": ["b" * 16],
    }
    full = HotlistSnapshot(4, 2, None, ("c" * 16, "a" * 16))
    doc = publish.hotlist_document(1, full)  # older than the kept history
    assert doc["base"] == 0 and doc["added"] == ["a" * 16, "c" * 16] and doc["removed"] == []
    assert publish.can_delta(2, 4, 2) and publish.can_delta(4, 4, 2)
    assert not publish.can_delta(0, 4, 0)
    assert not publish.can_delta(1, 4, 2)
    assert not publish.can_delta(5, 4, 0)


def test_key_files_round_trip_with_mode_0600(tmp_path, key):
    path = tmp_path / "publication.key"
    keys.write_publication_key(key, path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    loaded = keys.load_publication_key(path)
    assert loaded.public_key == key.public_key and loaded.algorithm is key.algorithm
    with pytest.raises(PublicationError):
        keys.write_publication_key(key, path)  # no silent overwrite
    token_path = tmp_path / "token.key"
    token_key = keys.new_token_key()
    keys.write_token_key(token_key, token_path)
    assert keys.load_token_key(token_path) == token_key
    token_path.write_text(token_key.hex() + "\n")
    assert keys.load_token_key(token_path) == token_key
    token_path.write_text("token_key = 'abcd'\n")
    with pytest.raises(PublicationError):
        keys.load_token_key(token_path)
    (tmp_path / "bad.key").write_text('private_key = "00"\n')
    with pytest.raises(PublicationError):
        keys.load_publication_key(tmp_path / "bad.key")
    assert repr(key) == f"PublicationKey({key.algorithm.value}, key_id={key.key_id})"


@pytest.mark.parametrize(
    "text",
    [
        "token_key = " + "[" * 2000 + "]" * 2000,  # nesting the TOML parser recurses on
        "token_key = " + "9" * 5000,  # more digits than the interpreter converts
        "private_key = '\ud800'",  # a lone surrogate
        "not = toml = at all",
    ],
)
def test_key_files_refuse_what_the_toml_parser_fails_on(tmp_path, text):
    """Operator files go through the one strict loader: a typed error naming the file."""
    path = tmp_path / "key.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    path.chmod(0o600)
    for load in (keys.load_token_key, keys.load_publication_key):
        with pytest.raises(PublicationError, match=r"key\.toml"):
            load(path)
