"""The PKI check of a third-generation card through the real pcscd + vpcd stack
(docs/pki.md section 4): a genuine card in 3 APDUs, a clone caught."""

from __future__ import annotations

import datetime as dt

import pytest

from firmware_sim.pki_applet import PkiApplet
from firmware_sim.pki_issuing import make_hierarchy
from firmware_sim.profile import load_sample
from firmware_sim.ssc_applet import build_card
from terminal.crypto.signing import Algorithm, generate_private_key
from terminal.devices.reader import CardChannel
from terminal.pki.session import verify_card_pki
from terminal.pki.truststore import PkiCheck, PkiOutcome, dump_trust_store, parse_trust_store

pytestmark = pytest.mark.integration

SAMPLE = "sichuan-3.0"  # T=1, as third-generation cards
TODAY = dt.date.today()


def _check(insert_card, backend, applet: PkiApplet, store_text: str, card_id: str):
    card = build_card(load_sample(SAMPLE))
    card.install(applet)
    inserted = insert_card(card=card, slot=1)
    connection = backend.connect(inserted.reader)
    try:
        channel = CardChannel(connection)
        store = parse_trust_store(store_text, TODAY)
        check: PkiCheck = verify_card_pki(channel, store, TODAY, card_id)
        return check, channel.apdu_count
    finally:
        connection.close()
        inserted.remove()  # the slot is free for the next card


@pytest.mark.parametrize("alg", [Algorithm.SM2, Algorithm.ECDSA_P256])
def test_genuine_card_valid_in_three_apdus_and_clone_detected(insert_card, backend, alg):
    card_id = load_sample(SAMPLE).issuer.card_id.upper()
    h = make_hierarchy(alg, card_id, TODAY)
    store_text = dump_trust_store([h.root_cert], [h.issuer_cert])

    check, apdus = _check(insert_card, backend, h.applet(), store_text, card_id)
    assert check.outcome is PkiOutcome.VALID, check.reason
    assert apdus == 3  # SELECT, READ BINARY, INTERNAL AUTHENTICATE

    clone = PkiApplet(generate_private_key(alg), alg, h.card_cert, h.issuer_cert)
    check, apdus = _check(insert_card, backend, clone, store_text, card_id)
    assert check.outcome is PkiOutcome.CLONED, check.reason
    assert apdus == 3
