"""The PKI check over in-process simulated cards (docs/pki.md section 4): every outcome,
the APDU count, clones, forgeries, and cards that answer nonsense."""

from __future__ import annotations

import datetime as dt
from functools import cache

import pytest
from helpers.card_exchange import tx
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.inprocess import InProcessConnection
from firmware_sim.cardos import CardOS
from firmware_sim.pki_applet import PkiApplet
from firmware_sim.pki_issuing import DemoHierarchy, make_card_credentials, make_hierarchy
from firmware_sim.profile import load_sample
from firmware_sim.ssc_applet import build_card
from terminal.crypto.signing import Algorithm, generate_private_key
from terminal.devices.reader import CardChannel
from terminal.errors import CardError, NoPkiApplicationError
from terminal.iso7816.apdu import CommandAPDU, ResponseAPDU
from terminal.iso7816.status_words import SW
from terminal.pki.certificate import parse_certificate
from terminal.pki.session import (
    COMMANDS,
    PKI_DF_NAME,
    dynamic_authenticate,
    internal_authenticate_command,
    read_card_certificates,
    select_command,
    verify_card_pki,
)
from terminal.pki.truststore import PkiOutcome, TrustStore, dump_trust_store, parse_trust_store
from terminal.ssc.session import read_ssc

TODAY = dt.date(2025, 6, 1)
SAMPLE = "sichuan-3.0"  # T=1, like third-generation cards
CARD_ID = load_sample(SAMPLE).issuer.card_id.upper()
OTHER_CARD_ID = load_sample("chongqing-2.0").issuer.card_id.upper()
ALGS = (Algorithm.SM2, Algorithm.ECDSA_P256)


@cache
def hierarchy(alg: Algorithm = Algorithm.SM2, card_id: str = CARD_ID) -> DemoHierarchy:
    return make_hierarchy(alg, card_id, TODAY)


def store_of(h: DemoHierarchy, issuers: bool = True, revoked: bool = False) -> TrustStore:
    issuer_id = parse_certificate(h.issuer_cert).subject_key_id
    text = dump_trust_store(
        [h.root_cert], [h.issuer_cert] if issuers else [], [issuer_id] if revoked else []
    )
    return parse_trust_store(text, TODAY)


def card_with(applet: PkiApplet | None, sample: str = SAMPLE) -> CardOS:
    card = build_card(load_sample(sample))
    if applet is not None:
        card.install(applet)
    return card


def channel_to(card: CardOS) -> CardChannel:
    return CardChannel(InProcessConnection(card))


def pki(card: CardOS, store: TrustStore, card_id: str | None = CARD_ID) -> tuple:
    channel = channel_to(card)
    return verify_card_pki(channel, store, TODAY, card_id), channel.apdu_count


# --- genuine cards --------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGS)
def test_genuine_card_is_valid_in_three_apdus(alg: Algorithm) -> None:
    h = hierarchy(alg)
    applet = h.applet()
    check, apdus = pki(card_with(applet), store_of(h))
    assert check.outcome is PkiOutcome.VALID, check.reason
    assert "private key" in check.reason
    assert check.certificate == parse_certificate(h.card_cert)
    assert apdus == 3  # SELECT, READ BINARY, INTERNAL AUTHENTICATE
    assert applet.signatures == 1


def test_t0_card_needs_a_get_response_after_select_and_internal_authenticate() -> None:
    h = hierarchy()
    check, apdus = pki(card_with(h.applet(), "chongqing-2.0"), store_of(h))
    assert check.outcome is PkiOutcome.VALID
    assert apdus == 5


def test_card_id_read_from_ef05_on_the_same_channel() -> None:
    h = hierarchy()
    channel = channel_to(card_with(h.applet()))
    card_id = read_ssc(channel, read_holder=False).issuer.card_id
    assert card_id == CARD_ID
    assert verify_card_pki(channel, store_of(h), TODAY, card_id).outcome is PkiOutcome.VALID


def test_issuer_from_the_card_costs_one_more_apdu() -> None:
    h = hierarchy()
    check, apdus = pki(card_with(h.applet()), store_of(h, issuers=False))
    assert check.outcome is PkiOutcome.VALID and apdus == 4


def test_reads_the_issuer_only_when_asked() -> None:
    h = hierarchy()
    channel = channel_to(card_with(h.applet()))
    assert read_card_certificates(channel) == (h.card_cert, None)
    assert channel.apdu_count == 2
    assert read_card_certificates(channel, read_issuer=True) == (h.card_cert, h.issuer_cert)


def test_certificate_in_a_padded_fixed_size_ef_is_cut_out() -> None:
    h = hierarchy()
    padded = PkiApplet(h.card_key, h.alg, h.card_cert + b"\xff" * 40, None)
    check, _ = pki(card_with(padded), store_of(h))
    assert check.outcome is PkiOutcome.VALID
    # A tail that is not padding stays, and the strict parser refuses it.
    junk = PkiApplet(h.card_key, h.alg, h.card_cert + b"\x01\x02", None)
    assert pki(card_with(junk), store_of(h))[0].outcome is PkiOutcome.MALFORMED


# --- every other outcome --------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGS)
def test_clone_without_the_private_key_is_cloned(alg: Algorithm) -> None:
    h = hierarchy(alg)
    clone = PkiApplet(generate_private_key(alg), alg, h.card_cert, h.issuer_cert)
    check, apdus = pki(card_with(clone), store_of(h))
    assert check.outcome is PkiOutcome.CLONED and "does not verify" in check.reason
    assert apdus == 3


def test_card_signed_by_the_wrong_key_is_bad_signature_and_never_challenged() -> None:
    h = hierarchy()
    stranger = make_hierarchy(Algorithm.SM2, CARD_ID, TODAY)
    key, forged = make_card_credentials(stranger.issuer_key, h.issuer_cert, CARD_ID, (TODAY, TODAY))
    applet = PkiApplet(key, Algorithm.SM2, forged, h.issuer_cert)
    check, apdus = pki(card_with(applet), store_of(h))
    assert check.outcome is PkiOutcome.BAD_SIGNATURE
    assert apdus == 2 and applet.signatures == 0


def test_unknown_issuer() -> None:
    stranger = make_hierarchy(Algorithm.SM2, CARD_ID, TODAY)
    check, _ = pki(card_with(stranger.applet()), store_of(hierarchy()))
    assert check.outcome is PkiOutcome.UNKNOWN_ISSUER


def test_unknown_issuer_when_the_card_has_no_issuer_ef() -> None:
    h = hierarchy()
    applet = PkiApplet(h.card_key, h.alg, h.card_cert, None)
    check, apdus = pki(card_with(applet), store_of(h, issuers=False))
    assert check.outcome is PkiOutcome.UNKNOWN_ISSUER and apdus == 3


def test_unknown_issuer_when_the_cards_issuer_certificate_is_garbage() -> None:
    h = hierarchy()
    applet = PkiApplet(h.card_key, h.alg, h.card_cert, b"\x01\x02\x03")
    check, _ = pki(card_with(applet), store_of(h, issuers=False))
    assert check.outcome is PkiOutcome.UNKNOWN_ISSUER


def test_issuer_revoked() -> None:
    h = hierarchy()
    check, _ = pki(card_with(h.applet()), store_of(h, revoked=True))
    assert check.outcome is PkiOutcome.ISSUER_REVOKED


def test_certificate_expired() -> None:
    h = hierarchy()
    past = (dt.date(2010, 1, 1), dt.date(2020, 1, 1))
    key, old = make_card_credentials(h.issuer_key, h.issuer_cert, CARD_ID, past)
    check, _ = pki(card_with(PkiApplet(key, h.alg, old, h.issuer_cert)), store_of(h))
    assert check.outcome is PkiOutcome.CERTIFICATE_EXPIRED


def test_card_carrying_another_cards_credentials_is_subject_mismatch() -> None:
    # Certificate and key of the Chongqing card copied onto the Sichuan card: the chain and
    # even the private key are genuine, only EF05 betrays it.
    other = hierarchy(Algorithm.SM2, OTHER_CARD_ID)
    applet = other.applet()
    check, _ = pki(card_with(applet), store_of(other), CARD_ID)
    assert check.outcome is PkiOutcome.SUBJECT_MISMATCH and applet.signatures == 0


def test_wrong_type_when_the_card_ef_holds_an_issuer_certificate() -> None:
    h = hierarchy()
    applet = PkiApplet(h.issuer_key, h.alg, h.issuer_cert, h.issuer_cert)
    check, apdus = pki(card_with(applet), store_of(h, issuers=False))
    assert check.outcome is PkiOutcome.WRONG_TYPE and apdus == 2


def test_malformed_card_certificate() -> None:
    h = hierarchy()
    applet = PkiApplet(h.card_key, h.alg, b"\x01\x03\x01" + bytes(50), None)
    check, _ = pki(card_with(applet), store_of(h))
    assert check.outcome is PkiOutcome.MALFORMED and check.certificate is None


def test_all_outcomes_are_covered() -> None:
    # The tests above reach each of these through verify_card_pki.
    assert {o.name for o in PkiOutcome} == {
        "VALID", "UNKNOWN_ISSUER", "ISSUER_REVOKED", "CERTIFICATE_EXPIRED", "BAD_SIGNATURE",
        "SUBJECT_MISMATCH", "WRONG_TYPE", "MALFORMED", "CLONED",
    }  # fmt: skip


# --- cards without PKI, and cards that misbehave --------------------------------------------


def test_card_without_pki_application_is_a_typed_error() -> None:
    with pytest.raises(NoPkiApplicationError) as info:
        pki(card_with(None), store_of(hierarchy()))
    assert info.value.sw == SW.FILE_NOT_FOUND and isinstance(info.value, CardError)
    assert info.value.to_json()["error"] == "no_pki"


def test_pki_df_without_card_certificate_is_a_typed_error() -> None:
    h = hierarchy()
    card = card_with(h.applet())
    card.fs.mf.child(0xDF10).children.pop()  # drop EF C002
    with pytest.raises(NoPkiApplicationError, match="no card certificate"):
        pki(card, store_of(h))


class AnsweringApplet(PkiApplet):
    """A PKI applet that answers INTERNAL AUTHENTICATE with fixed bytes or a status word."""

    def __init__(self, h: DemoHierarchy, answer: bytes = b"", sw: int = SW.OK) -> None:
        super().__init__(h.card_key, h.alg, h.card_cert, h.issuer_cert)
        self.answer, self.sw = answer, sw

    def process(self, card: CardOS, cmd: CommandAPDU) -> ResponseAPDU | None:
        if cmd.ins == 0x88 and self.is_selected(card):
            if self.sw != SW.OK:
                return ResponseAPDU(b"", self.sw)
            return card.respond(cmd, self.answer)
        return None


def _selected_channel(applet: PkiApplet, sample: str = SAMPLE) -> CardChannel:
    channel = channel_to(card_with(applet, sample))
    assert channel.transmit(select_command()).sw == SW.OK
    return channel


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=100), st.sampled_from(ALGS), st.sampled_from([SAMPLE, "chongqing-2.0"]))
def test_random_signatures_from_the_card_are_false(answer: bytes, alg: Algorithm, sample: str):
    h = hierarchy(alg)
    channel = _selected_channel(AnsweringApplet(h, answer), sample)
    cert = parse_certificate(h.card_cert)
    assert dynamic_authenticate(channel, cert) is False


@pytest.mark.parametrize("alg", ALGS)
@pytest.mark.parametrize("cut", [0, 1, 32, 63])
def test_truncated_genuine_signature_is_false(alg: Algorithm, cut: int) -> None:
    h = hierarchy(alg)
    cert = parse_certificate(h.card_cert)
    genuine = _selected_channel(h.applet())
    assert dynamic_authenticate(genuine, cert, alg) is True
    # A replayed (stale) signature, whole or truncated, cannot answer a fresh challenge.
    channel = channel_to(card_with(h.applet()))
    channel.transmit(select_command())
    challenge = bytes(16)
    stale = channel.transmit(internal_authenticate_command(challenge)).data
    assert len(stale) == 64
    replay = _selected_channel(AnsweringApplet(h, stale[:cut] if cut else stale))
    assert dynamic_authenticate(replay, cert) is False


@pytest.mark.parametrize(
    "sw", [SW.INS_NOT_SUPPORTED, SW.CONDITIONS_NOT_SATISFIED, SW.REFERENCE_DATA_NOT_FOUND]
)
def test_card_refusing_internal_authenticate_is_false_and_cloned(sw: int) -> None:
    h = hierarchy()
    cert = parse_certificate(h.card_cert)
    assert dynamic_authenticate(_selected_channel(AnsweringApplet(h, sw=sw)), cert) is False
    check, _ = pki(card_with(AnsweringApplet(h, sw=sw)), store_of(h))
    assert check.outcome is PkiOutcome.CLONED and f"{sw:04X}" in check.reason


# --- the applet on the wire -----------------------------------------------------------------


def test_applet_wire_format() -> None:
    h = hierarchy()
    card = card_with(h.applet())
    card.power_on()
    fci, sw = tx(card, b"\x00\xa4\x04\x00\x0c" + PKI_DF_NAME + b"\x00")
    assert sw == SW.OK and PKI_DF_NAME in fci
    assert PKI_DF_NAME.hex().upper() == "504B492EC9E7BBE1B1A3D5CF"
    data, sw = tx(card, "00B0820000")
    assert (data, sw) == (h.card_cert, SW.END_OF_FILE)
    data, sw = tx(card, "00B0810000")
    assert (data, sw) == (h.issuer_cert, SW.END_OF_FILE)
    assert tx(card, "0088000008" + "00" * 8 + "00")[1] == SW.WRONG_LENGTH
    assert tx(card, "00880000")[1] == SW.WRONG_LENGTH
    assert tx(card, "0088000110" + "00" * 16 + "00")[1] == SW.WRONG_P1P2
    sig, sw = tx(card, "0088000010" + "00" * 16 + "00")
    assert sw == SW.OK and len(sig) == 64
    assert COMMANDS.auth_prefix == b"onecard/card-auth/v1"


def test_applet_stays_out_of_the_way_when_its_df_is_not_selected() -> None:
    h = hierarchy()
    card = card_with(h.applet())
    card.power_on()
    # MF current: INTERNAL AUTHENTICATE is not the PKI applet's to answer.
    assert tx(card, "0088000010" + "00" * 16 + "00")[1] != SW.OK
    # Reading by SFI 02 from the MF finds nothing: the certificates live in the PKI DF.
    assert tx(card, "00B0820000")[1] == SW.FILE_NOT_FOUND
