"""CodeVerifier: every verdict, the order of the rules, and never an exception."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_sim.ecode_issuing import (
    issue_code,
    issue_ecode_world,
    issuer_entry,
    make_issuer_key,
    make_trust_list,
    read_private_key,
    read_public_key,
)
from terminal.crypto.signing import Algorithm, generate_private_key, public_key_bytes
from terminal.ecode import base45
from terminal.ecode.payload import PREFIX, code_text, parse_code
from terminal.ecode.replay import ReplayCache
from terminal.ecode.trustlist import IssuerStatus, parse_trust_list
from terminal.ecode.verify import CodeVerdict, CodeVerifier
from terminal.errors import ConfigError
from terminal.host.clock import FixedClock
from terminal.privacy.cardtoken import card_token
from terminal.ssc.cardnumber import check_character

NOW = 1_795_000_000
CARD = "D2143569X"
TOKEN_KEY = b"k" * 32
T = dt.datetime.fromtimestamp(NOW, dt.UTC)


class World:
    def __init__(self, alg: Algorithm) -> None:
        self.alg = alg
        root = generate_private_key(alg)
        self.key, self.key_id = make_issuer_key(alg)
        self.revoked, self.revoked_id = make_issuer_key(alg)
        self.expired, self.expired_id = make_issuer_key(alg)
        self.unknown, self.unknown_id = make_issuer_key(alg)
        self.other_alg = next(a for a in Algorithm if a is not alg)
        self.mixed, self.mixed_id = make_issuer_key(self.other_alg)
        day = dt.timedelta(days=1)
        entries = [
            issuer_entry(self.key, alg, T - day, T + day),
            issuer_entry(self.revoked, alg, T - day, T + day, IssuerStatus.REVOKED),
            issuer_entry(self.expired, alg, T - 2 * day, T - day),
            issuer_entry(self.mixed, self.other_alg, T - day, T + day),
        ]
        data = make_trust_list(root, alg, entries, version=5, issued_at=T)
        self.trust_list = parse_trust_list(data, public_key_bytes(root), alg)

    def code(self, key=None, key_id=None, card: object = CARD, **kw: object) -> str:
        return issue_code(
            key or self.key,
            key_id or self.key_id,
            kw.pop("alg", self.alg),  # type: ignore[arg-type]
            "500101",
            card,  # type: ignore[arg-type]
            "3",
            kw.pop("issued_at", NOW),  # type: ignore[arg-type]
            **kw,  # type: ignore[arg-type]
        )


@pytest.fixture(scope="module", params=list(Algorithm), ids=lambda a: a.value)
def world(request: pytest.FixtureRequest) -> World:
    return World(request.param)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


def _verifier(world: World, clock: FixedClock, **kw: object) -> CodeVerifier:
    return CodeVerifier(world.trust_list, ReplayCache.in_memory(clock), clock, **kw)  # type: ignore[arg-type]


def test_valid_then_replayed(world: World, clock: FixedClock) -> None:
    v = _verifier(world, clock)
    text = world.code()
    first = v.verify(text)
    assert first.verdict is CodeVerdict.VALID, first.reason
    assert first.accepted
    assert first.payload is not None and first.payload.card_number == CARD
    assert v.verify(text).verdict is CodeVerdict.REPLAYED
    assert v.verify(text.encode()).verdict is CodeVerdict.REPLAYED  # scanner bytes
    assert v.verify(world.code()).verdict is CodeVerdict.VALID  # a new code of the card


def test_token_code(world: World, clock: FixedClock) -> None:
    token = card_token(TOKEN_KEY, CARD)
    assert _verifier(world, clock).verify(world.code(card=token)).verdict is CodeVerdict.VALID


def test_time_window(world: World, clock: FixedClock) -> None:
    v = _verifier(world, clock, skew_seconds=30)
    assert v.verify(world.code(issued_at=NOW + 30)).verdict is CodeVerdict.VALID
    assert v.verify(world.code(issued_at=NOW + 31)).verdict is CodeVerdict.NOT_YET_VALID
    assert v.verify(world.code(issued_at=NOW - 90, validity=60)).verdict is CodeVerdict.VALID
    assert v.verify(world.code(issued_at=NOW - 91, validity=60)).verdict is CodeVerdict.EXPIRED
    text = world.code(validity=120)
    clock.advance(150)
    assert v.verify(text).verdict is CodeVerdict.VALID
    text = world.code()
    clock.advance(91)
    assert v.verify(text).verdict is CodeVerdict.EXPIRED


def test_issuers(world: World, clock: FixedClock) -> None:
    v = _verifier(world, clock)
    r = v.verify(world.code(world.unknown, world.unknown_id))
    assert r.verdict is CodeVerdict.UNKNOWN_ISSUER
    assert "version 5" in r.reason
    r = v.verify(world.code(world.revoked, world.revoked_id))
    assert (r.verdict, r.reason) == (CodeVerdict.ISSUER_REVOKED, "issuer key is revoked")
    r = v.verify(world.code(world.expired, world.expired_id))
    assert r.verdict is CodeVerdict.ISSUER_REVOKED
    assert "validity" in r.reason


def test_bad_signatures(world: World, clock: FixedClock) -> None:
    v = _verifier(world, clock)
    # signed by a key the list does not name, under a key id it does
    r = v.verify(world.code(world.unknown, world.key_id))
    assert r.verdict is CodeVerdict.BAD_SIGNATURE
    # a field changed after signing (card category 3 -> 4)
    code = parse_code(world.code())
    signed = bytearray(code.signed_bytes)
    signed[23] = 4
    assert v.verify(code_text(bytes(signed), code.signature)).verdict is CodeVerdict.BAD_SIGNATURE
    # a code claiming the other algorithm than its issuer key
    mixed = world.code(world.mixed, world.key_id, alg=world.other_alg)
    assert v.verify(mixed).verdict is CodeVerdict.BAD_SIGNATURE
    # and a key of the other algorithm in the list verifies its own codes
    own = world.code(world.mixed, world.mixed_id, alg=world.other_alg)
    assert v.verify(own).verdict is CodeVerdict.VALID


def test_hotlist(world: World, clock: FixedClock) -> None:
    hot = {card_token(TOKEN_KEY, CARD)}
    seen: list[bytes] = []

    def hotlist(token: bytes) -> bool:
        seen.append(token)
        return token in hot

    v = _verifier(world, clock, hotlist=hotlist, token_key=TOKEN_KEY)
    text = world.code()
    assert v.verify(text).verdict is CodeVerdict.HOTLISTED
    assert v.verify(world.code(card=card_token(TOKEN_KEY, CARD))).verdict is CodeVerdict.HOTLISTED
    other = "A1234567" + check_character("A1234567")
    assert v.verify(world.code(card=other)).verdict is CodeVerdict.VALID
    assert all(len(t) == 16 for t in seen)
    # a refused code does not burn its nonce: once off the hotlist, it is accepted
    hot.clear()
    assert v.verify(text).verdict is CodeVerdict.VALID


def test_replay_not_recorded_for_refused_codes(world: World, clock: FixedClock) -> None:
    v = _verifier(world, clock)
    text = world.code(issued_at=NOW + 100)
    assert v.verify(text).verdict is CodeVerdict.NOT_YET_VALID
    clock.advance(100)
    assert v.verify(text).verdict is CodeVerdict.VALID


def test_replay_survives_restart(world: World, clock: FixedClock, tmp_path: Path) -> None:
    path = tmp_path / "replay.sqlite"
    text = world.code()
    with ReplayCache(path, clock) as cache:
        assert CodeVerifier(world.trust_list, cache, clock).verify(text).accepted
    with ReplayCache(path, clock) as cache:
        r = CodeVerifier(world.trust_list, cache, clock).verify(text)
        assert r.verdict is CodeVerdict.REPLAYED


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("", CodeVerdict.NOT_OUR_CODE),
        ("HC1:6BFOXN", CodeVerdict.NOT_OUR_CODE),
        ("https://example.org/", CodeVerdict.NOT_OUR_CODE),
        (b"\xff\xfe", CodeVerdict.NOT_OUR_CODE),
        (PREFIX, CodeVerdict.MALFORMED),
        (PREFIX + "a", CodeVerdict.MALFORMED),
        (PREFIX + "GGW", CodeVerdict.MALFORMED),
        (PREFIX + base45.encode(b"\x01" * 103), CodeVerdict.MALFORMED),
    ],
)
def test_bad_text(world: World, clock: FixedClock, text: str, verdict: CodeVerdict) -> None:
    r = _verifier(world, clock).verify(text)
    assert r.verdict is verdict
    assert r.payload is None
    assert r.reason


def test_validity_over_120_is_malformed(world: World, clock: FixedClock) -> None:
    code = parse_code(world.code())
    signed = bytearray(code.signed_bytes)
    signed[28:30] = (121).to_bytes(2, "big")
    r = _verifier(world, clock).verify(code_text(bytes(signed), code.signature))
    assert r.verdict is CodeVerdict.MALFORMED
    assert "validity" in r.reason


def test_to_json_masks(world: World, clock: FixedClock) -> None:
    r = _verifier(world, clock).verify(world.code(scope="S01"))
    out = r.to_json()
    assert out["verdict"] == "valid"
    code = out["code"]
    assert code["card_number"] == "D*******X"  # type: ignore[index]
    assert code["scope"] == "S01"  # type: ignore[index]
    assert CARD not in json.dumps(out)
    token = card_token(TOKEN_KEY, CARD)
    out = _verifier(world, clock).verify(world.code(card=token)).to_json()
    assert token.hex() not in json.dumps(out)
    assert "nonce" not in json.dumps(out)


def test_config_errors(world: World, clock: FixedClock) -> None:
    cache = ReplayCache.in_memory(clock)
    with pytest.raises(ConfigError):
        CodeVerifier(world.trust_list, cache, clock, hotlist=lambda t: False)
    with pytest.raises(ConfigError):
        CodeVerifier(world.trust_list, cache, clock, token_key=b"short")
    with pytest.raises(ConfigError):
        CodeVerifier(world.trust_list, cache, clock, skew_seconds=-1)


def test_world_files(tmp_path: Path, clock: FixedClock) -> None:
    m = issue_ecode_world(tmp_path, now=T)
    for name in ("root", "issuer", "revoked_issuer", "unknown_issuer"):
        assert (Path(m[name]["private_key"]).stat().st_mode & 0o777) == 0o600  # type: ignore[index]
    assert (Path(m["token_key"]).stat().st_mode & 0o777) == 0o600  # type: ignore[arg-type]
    assert json.loads((tmp_path / "manifest.json").read_text()) == m
    from terminal.ecode.trustlist import load_trust_list

    alg = Algorithm(m["algorithm"])
    tl = load_trust_list(m["trust_list"], read_public_key(m["root"]["public_key"]), alg)  # type: ignore[arg-type,index]
    v = CodeVerifier(tl, ReplayCache.in_memory(clock), clock)
    card = m["card"]

    def code(who: str) -> str:
        key = read_private_key(m[who]["private_key"], alg)  # type: ignore[index]
        kid = bytes.fromhex(m[who]["key_id"])  # type: ignore[index]
        return issue_code(key, kid, alg, card["region"], card["card_number"], "3", NOW)  # type: ignore[index]

    assert v.verify(code("issuer")).verdict is CodeVerdict.VALID
    assert v.verify(code("revoked_issuer")).verdict is CodeVerdict.ISSUER_REVOKED
    assert v.verify(code("unknown_issuer")).verdict is CodeVerdict.UNKNOWN_ISSUER


_ALPHA = base45.ALPHABET + "abcxyz\n\x00é"


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.text(max_size=200),
        st.text(alphabet=_ALPHA, max_size=200).map(lambda s: PREFIX + s),
        st.binary(max_size=120).map(lambda b: PREFIX + base45.encode(b)),
    )
)
def test_random_text_never_raises(text: str) -> None:
    clock = FixedClock(NOW)
    r = CodeVerifier(_WORLD.trust_list, ReplayCache.in_memory(clock), clock).verify(text)
    assert r.verdict in {CodeVerdict.MALFORMED, CodeVerdict.NOT_OUR_CODE}


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 102), st.integers(0, 255)), min_size=1, max_size=3))
def test_mutated_valid_code_never_raises_nor_passes(edits: list[tuple[int, int]]) -> None:
    clock = FixedClock(NOW)
    raw = bytearray(base45.decode(_GOOD[len(PREFIX) :]))
    for pos, value in edits:
        raw[pos] = value
    text = PREFIX + base45.encode(bytes(raw))
    r = CodeVerifier(_WORLD.trust_list, ReplayCache.in_memory(clock), clock).verify(text)
    if text != _GOOD:
        assert r.verdict is not CodeVerdict.VALID
    else:
        assert r.verdict is CodeVerdict.VALID


_WORLD = World(Algorithm.ECDSA_P256)  # P-256 keeps the property tests fast on any back-end
_GOOD = _WORLD.code()


def test_check_records_nothing_commit_records_release_takes_back(
    world: World, clock: FixedClock
) -> None:
    v = _verifier(world, clock)
    text = world.code()
    checked = v.check(text)
    assert checked.verdict is CodeVerdict.VALID and len(v.replay_cache) == 0
    assert v.check(text).verdict is CodeVerdict.VALID  # checking twice burns nothing
    assert v.commit(checked) is checked and len(v.replay_cache) == 1
    assert v.check(text).verdict is CodeVerdict.REPLAYED
    # Admitted meanwhile (another process sharing the cache): the second commit says so.
    assert v.commit(checked).verdict is CodeVerdict.REPLAYED
    v.release(checked)
    assert v.check(text).verdict is CodeVerdict.VALID


def test_only_a_valid_code_is_committed(world: World, clock: FixedClock) -> None:
    v = _verifier(world, clock)
    refused = v.check(world.code(issued_at=NOW + 1000))
    assert refused.verdict is CodeVerdict.NOT_YET_VALID
    with pytest.raises(ValueError):
        v.commit(refused)
