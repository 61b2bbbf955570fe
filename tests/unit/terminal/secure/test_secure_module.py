"""One test suite for both secure modules (software key set, PSAM over an in-process card),
then what only the PSAM has: its status words and its RAM session key."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers.card_exchange import tx
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.inprocess import InProcessConnection
from firmware_sim.cardos import CardOS, t1_atr
from firmware_sim.psam_applet import PsamApplet, build_psam, psam_fci
from terminal.crypto.symmetric import SymmetricAlgorithm as Alg
from terminal.errors import (
    AlgorithmMissingError,
    CryptoError,
    KeyMissingError,
    NoCardError,
    NoSecureModuleError,
    SecureModuleError,
)
from terminal.secure import (
    KeySet,
    PsamSecureModule,
    SoftwareSecureModule,
    generate_key_set,
)
from terminal.secure.psam import decode_terminal_number
from terminal.ssc.auth import KeyName, card_cryptogram
from terminal.ssc.secure_module import SecureModule

TERMINAL = "510100000042"
REGION = "519900"
HISTORICAL = bytes.fromhex("00814A444686605199000001AC")  # the real 3.0 card's T1..TD
P = bytes.fromhex("0102030405060708")
X = bytes.fromhex("1122334455667788")

ModuleFactory = Callable[[KeySet], SecureModule]


def software(keyset: KeySet) -> SecureModule:
    return SoftwareSecureModule(keyset)


def psam_t1(keyset: KeySet) -> SecureModule:
    return PsamSecureModule(InProcessConnection(build_psam(keyset)))


def psam_t0(keyset: KeySet) -> SecureModule:
    # T=0: CIPHER DATA and SELECT answers come through 61xx / GET RESPONSE.
    return PsamSecureModule(InProcessConnection(build_psam(keyset, protocol="T=0")))


IMPLEMENTATIONS = pytest.mark.parametrize(
    "make", [software, psam_t1, psam_t0], ids=["software", "psam-T=1", "psam-T=0"]
)


def without(keyset: KeySet, *drop: tuple[Alg, KeyName]) -> KeySet:
    return KeySet(keyset.terminal_number, {k: v for k, v in keyset.keys.items() if k not in drop})


@pytest.fixture(scope="module")
def keyset() -> KeySet:
    return generate_key_set(TERMINAL)


@pytest.fixture
def opened() -> Iterator[Callable[[ModuleFactory, KeySet], SecureModule]]:
    modules: list[SecureModule] = []

    def open_module(make: ModuleFactory, keyset: KeySet) -> SecureModule:
        modules.append(make(keyset))
        return modules[-1]

    yield open_module
    for module in modules:
        module.close()


# --- independent reference: the contract text, on other libraries' ciphers -----------------


def _reference_cryptogram(alg: Alg, master: bytes, region6: str, hist: bytes, p: bytes, x: bytes):
    """docs/card-authentication.md computed with pycryptodomex DES / gmssl SM4."""
    if alg is Alg.SM4:
        sm4 = pytest.importorskip("gmssl.sm4")

        def enc(key: bytes, block: bytes) -> bytes:
            cipher = sm4.CryptSM4(padding_mode=max(sm4.PKCS7, sm4.ZERO) + 1)  # no padding
            cipher.set_key(key, sm4.SM4_ENCRYPT)
            return bytes(cipher.crypt_ecb(block))

        def level(key: bytes, d: bytes) -> bytes:
            return enc(key, d + bytes(b ^ 0xFF for b in d))

        card_key = level(level(master, region6.encode() + b"sx"), hist[5:13])
        session = enc(card_key, p + bytes(8))
        return enc(session, x + bytes(8))[:8]
    des3 = pytest.importorskip("Cryptodome.Cipher.DES3")
    des = pytest.importorskip("Cryptodome.Cipher.DES")

    def level3(key: bytes, d: bytes) -> bytes:
        cipher = des3.new(key, des3.MODE_ECB)
        return cipher.encrypt(d) + cipher.encrypt(bytes(b ^ 0xFF for b in d))

    card_key = level3(level3(master, region6.encode() + b"sx"), hist[5:13])
    session = des3.new(card_key, des3.MODE_ECB).encrypt(p)
    return des.new(session, des.MODE_ECB).encrypt(x)


def _nonweak_keyset() -> KeySet:
    # pycryptodomex refuses 3DES keys whose halves are equal (degenerate to DES); a random
    # key set has them with negligible probability, so a fixed one keeps the test honest.
    keys = {
        (alg, name): bytes((16 * i + j + 1) & 0xFF for j in range(16))
        for i, (alg, name) in enumerate((a, n) for a in (Alg.DES3, Alg.SM4) for n in KeyName)
    }
    return KeySet(TERMINAL, keys)


# --- one suite, both implementations --------------------------------------------------------


@IMPLEMENTATIONS
def test_is_a_secure_module(make, opened, keyset) -> None:
    module = opened(make, keyset)
    assert isinstance(module, SecureModule)
    assert module.terminal_number == TERMINAL
    assert module.name == "software" or module.name.startswith("psam:")


@IMPLEMENTATIONS
@pytest.mark.parametrize("alg", [Alg.DES3, Alg.SM4])
@pytest.mark.parametrize("key", list(KeyName))
def test_cryptogram_is_card_cryptogram(make, opened, keyset, alg, key) -> None:
    module = opened(make, keyset)
    for i in range(3):
        p, x = bytes([i] * 8), bytes(range(i, i + 8))
        got = module.cryptogram(key, alg, REGION, HISTORICAL, p, x)
        assert len(got) == 8
        assert got == card_cryptogram(alg, keyset.keys[(alg, key)], REGION, HISTORICAL, p, x)


@IMPLEMENTATIONS
@pytest.mark.parametrize("alg", [Alg.DES3, Alg.SM4])
def test_cryptogram_follows_the_contract_independently(make, opened, alg) -> None:
    keyset = _nonweak_keyset()
    module = opened(make, keyset)
    for key in KeyName:
        expected = _reference_cryptogram(alg, keyset.keys[(alg, key)], REGION, HISTORICAL, P, X)
        assert module.cryptogram(key, alg, REGION, HISTORICAL, P, X) == expected


@IMPLEMENTATIONS
def test_inputs_change_the_cryptogram(make, opened, keyset) -> None:
    module = opened(make, keyset)
    base = module.cryptogram(KeyName.IRK, Alg.SM4, REGION, HISTORICAL, P, X)
    other_region = module.cryptogram(KeyName.IRK, Alg.SM4, "500100", HISTORICAL, P, X)
    other_card = module.cryptogram(KeyName.IRK, Alg.SM4, REGION, HISTORICAL[:12] + b"\xad", P, X)
    other_key = module.cryptogram(KeyName.RKSSSE, Alg.SM4, REGION, HISTORICAL, P, X)
    assert len({base, other_region, other_card, other_key}) == 4
    # T1..T5 (chip and OS vendor) take no part in the diversification.
    assert module.cryptogram(KeyName.IRK, Alg.SM4, REGION, bytes(5) + HISTORICAL[5:], P, X) == base


@IMPLEMENTATIONS
def test_key_names_as_strings(make, opened, keyset) -> None:
    module = opened(make, keyset)
    assert module.cryptogram("rkssse", Alg.DES3, REGION, HISTORICAL, P, X) == module.cryptogram(
        KeyName.RKSSSE, Alg.DES3, REGION, HISTORICAL, P, X
    )


@IMPLEMENTATIONS
def test_algorithms(make, opened, keyset) -> None:
    assert opened(make, keyset).algorithms() == {Alg.DES3, Alg.SM4}
    des3_only = generate_key_set(TERMINAL, algorithms=[Alg.DES3])
    assert opened(make, des3_only).algorithms() == {Alg.DES3}
    sm4_only_irk = KeySet(TERMINAL, {(Alg.SM4, KeyName.RKSSSE): bytes(16)})
    assert opened(make, sm4_only_irk).algorithms() == {Alg.SM4}


@IMPLEMENTATIONS
def test_module_without_sm4_is_algorithm_missing(make, opened) -> None:
    module = opened(make, generate_key_set(TERMINAL, algorithms=[Alg.DES3]))
    with pytest.raises(AlgorithmMissingError) as info:
        module.cryptogram(KeyName.IRK, Alg.SM4, REGION, HISTORICAL, P, X)
    assert info.value.code == "algorithm_missing"
    assert "SM4" in info.value.reason
    assert len(module.cryptogram(KeyName.IRK, Alg.DES3, REGION, HISTORICAL, P, X)) == 8


@IMPLEMENTATIONS
def test_module_without_rkssse_is_key_missing(make, opened, keyset) -> None:
    module = opened(make, without(keyset, (Alg.SM4, KeyName.RKSSSE)))
    with pytest.raises(KeyMissingError) as info:
        module.cryptogram(KeyName.RKSSSE, Alg.SM4, REGION, HISTORICAL, P, X)
    assert info.value.code == "key_missing"
    assert "rkssse" in info.value.reason
    # The other keys of the table, and the same key of the other table, still work.
    irk = module.cryptogram(KeyName.IRK, Alg.SM4, REGION, HISTORICAL, P, X)
    assert irk == card_cryptogram(
        Alg.SM4, keyset.keys[(Alg.SM4, KeyName.IRK)], REGION, HISTORICAL, P, X
    )
    assert len(module.cryptogram(KeyName.RKSSSE, Alg.DES3, REGION, HISTORICAL, P, X)) == 8


@IMPLEMENTATIONS
def test_ssf33_is_algorithm_missing(make, opened, keyset) -> None:
    with pytest.raises(AlgorithmMissingError):
        opened(make, keyset).cryptogram(KeyName.IRK, Alg.SSF33, REGION, HISTORICAL, P, X)


@IMPLEMENTATIONS
@pytest.mark.parametrize(
    "args",
    [
        ("50010", HISTORICAL, P, X),
        ("5001a0", HISTORICAL, P, X),
        ("５００１００", HISTORICAL, P, X),  # full-width digits: isdigit() but not ASCII
        (REGION, HISTORICAL[:12], P, X),
        (REGION, "not bytes", P, X),
        (REGION, HISTORICAL, P[:7], X),
        (REGION, HISTORICAL, P, X + b"\x00"),
        (REGION, HISTORICAL, P, None),
    ],
    ids=["short-region", "hex-region", "fullwidth", "short-atr", "str-atr", "p7", "x9", "none"],
)
def test_bad_inputs_are_crypto_errors(make, opened, keyset, args) -> None:
    module = opened(make, keyset)
    with pytest.raises(CryptoError):
        module.cryptogram(KeyName.IRK, Alg.DES3, *args)
    with pytest.raises(CryptoError):
        module.cryptogram("mac1", Alg.DES3, REGION, HISTORICAL, P, X)
    with pytest.raises(CryptoError):
        module.cryptogram(KeyName.IRK, 7, REGION, HISTORICAL, P, X)


@IMPLEMENTATIONS
def test_closed_module_refuses(make, keyset) -> None:
    module = make(keyset)
    module.close()
    module.close()  # idempotent
    with pytest.raises(SecureModuleError):
        module.cryptogram(KeyName.IRK, Alg.DES3, REGION, HISTORICAL, P, X)
    with pytest.raises(SecureModuleError):
        module.algorithms()


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[SecureModule, SecureModule]]:
    keyset = generate_key_set("000000000001")
    soft, psam = software(keyset), psam_t1(keyset)
    yield soft, psam
    psam.close()


@settings(max_examples=60, deadline=None)
@given(
    key=st.sampled_from(list(KeyName)),
    alg=st.sampled_from([Alg.DES3, Alg.SM4]),
    region=st.text("0123456789", min_size=6, max_size=6),
    hist=st.binary(min_size=13, max_size=15),
    p=st.binary(min_size=8, max_size=8),
    x=st.binary(min_size=8, max_size=8),
)
def test_software_and_psam_agree(pair, key, alg, region, hist, p, x) -> None:
    soft, psam = pair
    assert soft.cryptogram(key, alg, region, hist, p, x) == psam.cryptogram(
        key, alg, region, hist, p, x
    )


# --- PSAM only: the module's side -----------------------------------------------------------


def test_psam_apdu_counts(keyset) -> None:
    t1, t0 = psam_t1(keyset), psam_t0(keyset)
    assert t1.apdu_count == 2  # SELECT, READ BINARY EF16
    assert t0.apdu_count == 3  # SELECT, GET RESPONSE, READ BINARY
    t1.cryptogram(KeyName.IRK, Alg.SM4, REGION, HISTORICAL, P, X)
    t0.cryptogram(KeyName.IRK, Alg.SM4, REGION, HISTORICAL, P, X)
    assert t1.apdu_count == 2 + 2  # DELIVERY SESSION KEY, CIPHER DATA
    assert t0.apdu_count == 3 + 3  # ... and GET RESPONSE
    t1.algorithms()
    t1.algorithms()  # probed once, then cached
    assert t1.apdu_count == 4 + 2


def test_psam_is_thread_safe(keyset) -> None:
    # DELIVERY and CIPHER DATA share state in the PSAM: interleaving them would mix up keys.
    psam, soft = psam_t1(keyset), software(keyset)
    jobs = [
        (key, alg, bytes([i] * 8))
        for i in range(40)
        for key, alg in ((KeyName.IRK, Alg.DES3), (KeyName.RKSSSE, Alg.SM4))
    ]

    def run(job):
        key, alg, p = job
        return psam.cryptogram(key, alg, REGION, HISTORICAL, p, X)

    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(run, jobs))
    assert got == [soft.cryptogram(k, a, REGION, HISTORICAL, p, X) for k, a, p in jobs]


def test_card_without_psam_application_is_no_psam() -> None:
    blank = CardOS(t1_atr(b"NOPSAM"), "T=1")
    connection = InProcessConnection(blank)
    with pytest.raises(NoSecureModuleError) as info:
        PsamSecureModule(connection)
    assert info.value.code == "no_psam"
    assert info.value.sw == 0x6A82
    assert not blank.powered  # the failed open closed the connection


def test_open_empty_reader_is_no_psam() -> None:
    class EmptyBackend:
        def readers(self):
            return []

        def connect(self, reader: str):
            raise NoCardError(f"no card in reader {reader!r}")

    with pytest.raises(NoSecureModuleError):
        PsamSecureModule.open(EmptyBackend(), "PSAM slot")


class _Answering(InProcessConnection):
    """A PSAM connection whose card answers ``sw`` to every command with INS ``ins``."""

    def __init__(self, card: CardOS, ins: int, sw: bytes) -> None:
        super().__init__(card)
        self.ins, self.sw = ins, sw

    def transmit_raw(self, apdu: bytes) -> bytes:
        return self.sw if apdu[1] == self.ins else super().transmit_raw(apdu)


def test_other_status_words_are_named_secure_module_errors(keyset) -> None:
    module = PsamSecureModule(_Answering(build_psam(keyset), 0xDE, b"\x65\x81"))
    with pytest.raises(SecureModuleError) as info:
        module.cryptogram(KeyName.IRK, Alg.DES3, REGION, HISTORICAL, P, X)
    assert type(info.value) is SecureModuleError
    assert info.value.sw == 0x6581
    assert "6581 memory failure" in info.value.reason
    assert info.value.to_json()["sw"] == "6581"


def test_cipher_data_refused_after_delivery(keyset) -> None:
    module = PsamSecureModule(_Answering(build_psam(keyset), 0xFA, b"\x69\x85"))
    with pytest.raises(SecureModuleError) as info:
        module.cryptogram(KeyName.IRK, Alg.DES3, REGION, HISTORICAL, P, X)
    assert "CIPHER DATA" in info.value.reason and info.value.sw == 0x6985


def test_short_cryptogram_is_an_error(keyset) -> None:
    module = PsamSecureModule(_Answering(build_psam(keyset), 0xFA, bytes(4) + b"\x90\x00"))
    with pytest.raises(SecureModuleError, match="4 bytes"):
        module.cryptogram(KeyName.IRK, Alg.DES3, REGION, HISTORICAL, P, X)


def test_terminal_number_decoding() -> None:
    assert decode_terminal_number(bytes.fromhex("510100000042")) == "510100000042"
    with pytest.raises(SecureModuleError):
        decode_terminal_number(bytes.fromhex("5101000000AF"))
    with pytest.raises(SecureModuleError):
        decode_terminal_number(bytes.fromhex("5101"))


# --- PSAM only: the applet on the wire ------------------------------------------------------


SELECT = "00A4040006D15600000590" + "00"
DELIVER_IRK_DES3 = "BFDE010118" + (REGION.encode() + b"sx").hex() + HISTORICAL[5:13].hex() + P.hex()
CIPHER = "80FA000008" + X.hex() + "08"


@pytest.fixture
def psam_card(keyset) -> CardOS:
    card = build_psam(keyset)
    card.power_on()
    return card


def test_select_and_terminal_number(psam_card) -> None:
    assert tx(psam_card, SELECT) == (psam_fci(), 0x9000)
    assert tx(psam_card, "00B0960006") == (bytes.fromhex(TERMINAL), 0x9000)
    assert psam_card.atr.startswith(bytes.fromhex("3BEA00008131FE45")) and b"PSAM" in psam_card.atr


def test_wire_cryptogram(psam_card, keyset) -> None:
    tx(psam_card, SELECT)
    assert tx(psam_card, DELIVER_IRK_DES3) == (b"", 0x9000)
    expected = card_cryptogram(
        Alg.DES3, keyset.keys[(Alg.DES3, KeyName.IRK)], REGION, HISTORICAL, P, X
    )
    assert tx(psam_card, CIPHER) == (expected, 0x9000)
    assert tx(psam_card, CIPHER) == (expected, 0x9000)  # the session key stays until replaced
    assert tx(psam_card, "80FA000008" + X.hex() + "10") == (b"", 0x6C08)  # Le held to 8


def test_cipher_data_without_session_key_is_6985(psam_card) -> None:
    tx(psam_card, SELECT)
    assert tx(psam_card, CIPHER) == (b"", 0x6985)


@pytest.mark.parametrize(
    "apdu, sw",
    [
        ("BFDE040118" + "00" * 24, 0x6A86),  # key usage 04
        ("BFDE010418" + "00" * 24, 0x6A86),  # algorithm 04
        ("BFDE010218" + "00" * 24, 0x6A81),  # SSF33: a known algorithm the PSAM lacks
        ("BFDE010117" + "00" * 23, 0x6700),  # Lc 17
        ("BFDE010119" + "00" * 25, 0x6700),  # Lc 19
        ("80FA010008" + "00" * 8 + "08", 0x6A86),  # P1 01
        ("80FA000007" + "00" * 7 + "08", 0x6700),  # Lc 7
    ],
)
def test_wire_refusals(psam_card, apdu, sw) -> None:
    tx(psam_card, SELECT)
    assert tx(psam_card, apdu) == (b"", sw)


def test_missing_key_and_algorithm_on_the_wire(keyset) -> None:
    card = build_psam(
        KeySet(TERMINAL, {k: v for k, v in keyset.keys.items() if k != (Alg.DES3, KeyName.UKSSSE)})
    )
    card.power_on()
    tx(card, SELECT)
    assert tx(card, "BFDE030118" + "00" * 24) == (b"", 0x6A88)  # 3DES ukssse
    assert tx(card, "BFDE030318" + "00" * 24) == (b"", 0x9000)  # SM4 ukssse
    des3_only = build_psam(generate_key_set(TERMINAL, [Alg.DES3]))
    des3_only.power_on()
    tx(des3_only, SELECT)
    assert tx(des3_only, "BFDE010318" + "00" * 24) == (b"", 0x6A81)


def test_failed_delivery_drops_the_previous_session_key(psam_card) -> None:
    tx(psam_card, SELECT)
    assert tx(psam_card, DELIVER_IRK_DES3)[1] == 0x9000
    assert tx(psam_card, "BFDE040118" + "00" * 24)[1] == 0x6A86
    assert tx(psam_card, CIPHER) == (b"", 0x6985)


def test_session_key_dropped_at_power_on(psam_card) -> None:
    applet = next(a for a in psam_card.applets if isinstance(a, PsamApplet))
    tx(psam_card, SELECT)
    assert tx(psam_card, DELIVER_IRK_DES3)[1] == 0x9000
    assert applet.has_session
    psam_card.power_off()
    psam_card.power_on()
    assert not applet.has_session
    tx(psam_card, SELECT)
    assert tx(psam_card, CIPHER) == (b"", 0x6985)


def test_commands_refused_outside_the_application(psam_card) -> None:
    # Before SELECT the MF is current: the OS answers, and knows no proprietary class.
    assert tx(psam_card, DELIVER_IRK_DES3) == (b"", 0x6E00)
    assert tx(psam_card, CIPHER) == (b"", 0x6E00)


def test_t0_psam_announces_the_cryptogram(keyset) -> None:
    card = build_psam(keyset, protocol="T=0")
    card.power_on()
    assert tx(card, SELECT) == (b"", 0x610A)
    tx(card, "00C000000A")
    tx(card, DELIVER_IRK_DES3)
    assert tx(card, CIPHER) == (b"", 0x6108)
    data, sw = tx(card, "00C0000008")
    assert sw == 0x9000 and len(data) == 8


def test_applet_repr_hides_keys(keyset) -> None:
    applet = PsamApplet(keyset)
    for value in keyset.keys.values():
        assert value.hex() not in repr(applet).lower()
