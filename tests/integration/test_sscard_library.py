"""libonecard_sscard.so end to end: a counter runtime on the real pcscd + vpcd stack serves
the LD/T 33 library on its Unix socket; a small C program compiled here loads the library
with dlopen, and Python loads it with ctypes. The record each returns is compared field by
field with `onecard read --format ireadcardbas`; every error code is reached on purpose
(no service, no card, wrong card, blocked PIN, card pulled mid-read)."""

from __future__ import annotations

import ctypes
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from test_runtime_counter import RIGHT_PIN, WRONG_PIN, make_world, write_config

from firmware_sim.profile import load_profile
from firmware_sim.ssc_applet import build_card
from onecard.runtime import build_runtime
from terminal import ldt33
from terminal.counter import sscard_protocol as proto
from terminal.outputs import RecordingOutputs
from terminal.runtime.config import load_config
from terminal.runtime.loop import TerminalRuntime

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CALLER = r"""
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
typedef long (*typed_fn)(int, char *);
/* caller LIBRARY FUNCTION ITYPE: prints the code, then pOutInfo, each on a line. */
int main(int argc, char **argv) {
    if (argc != 4) return 2;
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) { fprintf(stderr, "%s\n", dlerror()); return 2; }
    typed_fn fn = (typed_fn)dlsym(lib, argv[2]);
    if (fn == NULL) { fprintf(stderr, "%s\n", dlerror()); return 2; }
    char out[1024];
    memset(out, 'X', sizeof out);
    long code = fn(atoi(argv[3]), out);
    if (memchr(out, '\0', sizeof out) == NULL) { fprintf(stderr, "no NUL\n"); return 3; }
    printf("%ld\n%s\n", code, out);
    dlclose(lib);
    return 0;
}
"""


@pytest.fixture(scope="module")
def native(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The library built by its Makefile, and the dlopen caller compiled with -Werror."""
    out = tmp_path_factory.mktemp("sscard")
    subprocess.run(
        ["make", "-s", "-C", str(REPO / "native" / "sscard"), f"OUT={out}"],
        check=True,
        capture_output=True,
    )
    source = out / "caller.c"
    source.write_text(CALLER)
    subprocess.run(
        ["cc", "-Wall", "-Wextra", "-Werror", "-o", str(out / "caller"), str(source), "-ldl"],
        check=True,
        capture_output=True,
    )
    return {"library": out / "libonecard_sscard.so", "caller": out / "caller"}


def c_call(native: dict[str, Path], function: str, itype: int, socket: Path) -> tuple[int, bytes]:
    env = {"ONECARD_SSCARD_SOCKET": str(socket), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [str(native["caller"]), str(native["library"]), function, str(itype)],
        capture_output=True,
        env=env,
        timeout=60,
        check=True,
    )
    code, text = done.stdout.split(b"\n", 1)
    return int(code), text.removesuffix(b"\n")


class Library:
    """The library through ctypes, on one socket."""

    def __init__(self, path: Path, socket: Path) -> None:
        self.lib = ctypes.CDLL(str(path))
        for name in ("iReadCardBas", "iReadCardBas_HSM_Step1", "iVerifyPIN", "iChangePIN"):
            getattr(self.lib, name).argtypes = [ctypes.c_int, ctypes.c_char_p]
            getattr(self.lib, name).restype = ctypes.c_long
        self.lib.iReadCardBas_HSM_Step2.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        self.lib.iReadCardBas_HSM_Step2.restype = ctypes.c_long
        self.lib.iSSCardInit.argtypes = [ctypes.c_char_p, ctypes.c_int]
        self.lib.iSSCardInit.restype = ctypes.c_long
        assert self.lib.iSSCardInit(str(socket).encode(), 1) == 0  # GBK

    def __call__(self, name: str, arg: int | bytes) -> tuple[int, bytes]:
        out = ctypes.create_string_buffer(1024)
        code = getattr(self.lib, name)(arg, out)
        return int(code), out.value


@pytest.fixture
def world(tmp_path: Path) -> dict:
    return make_world(tmp_path)


@contextmanager
def counter_runtime(world: dict, require_pin: bool, pins: list[str]) -> Iterator[TerminalRuntime]:
    config = load_config(
        write_config(
            world["tmp"],
            terminal_id="COUNTER-0042",
            pins=pins,
            require_pin=require_pin,
            counter='sscard_socket = "run/sscard.sock"\nsscard_wait_seconds = 20',
            more="\n[screen]\nport = -1\n",
        )
    )
    runtime = build_runtime(config, outputs=RecordingOutputs())
    with runtime.running("sscard-counter"):
        yield runtime
    assert not (world["tmp"] / "run" / "sscard.sock").exists()


def card(world: dict, name: str):
    return load_profile(world["cards"]["cards"][name]["file"])


def onecard_read(reader: str) -> str:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "onecard.cli",
            "read",
            "--format",
            "ireadcardbas",
            "--reveal",
            "--reader",
            reader,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def test_library_reads_the_counters_card_as_onecard_read_does(
    world: dict, insert_card, native: dict[str, Path]
) -> None:
    socket = world["tmp"] / "run" / "sscard.sock"
    # No service yet: the standard reader-connection code, at once.
    assert c_call(native, "iReadCardBas", 3, socket)[0] == ldt33.READER_CONNECTION
    with counter_runtime(world, False, [WRONG_PIN, WRONG_PIN, WRONG_PIN]) as runtime:
        lib = Library(native["library"], socket)
        # No card in the reader.
        assert c_call(native, "iReadCardBas", 1, socket)[0] == ldt33.NO_CARD
        assert lib("iReadCardBas", 3)[0] == ldt33.NO_CARD

        holder = card(world, "genuine-cq-2.0")
        inserted = insert_card(card=build_card(holder), slot=0)
        # Called at once: waits for the counter's transaction of this card.
        code, text = c_call(native, "iReadCardBas", 1, socket)
        assert code == 0, text
        assert runtime.outcomes[-1].accepted, runtime.outcomes
        expected = onecard_read(inserted.reader).split("|")
        fields = text.decode("gbk").split("|")
        assert fields == expected, (fields, expected)
        assert fields[1] == holder.holder.ssn and fields[4] == holder.holder.name
        assert lib("iReadCardBas", 3) == (0, text)
        assert lib("iReadCardBas", 2)[0] == ldt33.NO_CARD  # a contact card, not contactless

        # The PIN from the counter's pad (scripted: three wrong ones), never from the caller.
        assert lib("iVerifyPIN", 1) == (ldt33.PIN_WRONG, b"2")
        assert c_call(native, "iVerifyPIN", 1, socket) == (ldt33.PIN_WRONG, b"1")
        assert lib("iVerifyPIN", 1)[0] == ldt33.PIN_BLOCKED
        assert lib("iVerifyPIN", 1)[0] == proto.PIN_NOT_ENTERED  # the pad has nothing more
        inserted.remove()
        assert lib("iReadCardBas", 1)[0] == ldt33.NO_CARD  # the record left with the card

        # A card without the social security application: wrong card type.
        inserted = insert_card(profile="tunion-plain", slot=0)
        assert c_call(native, "iReadCardBas", 3, socket)[0] == ldt33.WRONG_CARD_TYPE
        inserted.remove()
    # The service stopped: reader connection again, no hang.
    assert lib("iReadCardBas", 1)[0] == ldt33.READER_CONNECTION


def test_hsm_read_through_the_library(world: dict, insert_card, native: dict[str, Path]) -> None:
    from terminal.crypto.symmetric import SymmetricAlgorithm
    from terminal.secure.software import SoftwareSecureModule
    from terminal.ssc.auth import KeyName

    socket = world["tmp"] / "run" / "sscard.sock"
    with counter_runtime(world, False, []):
        lib = Library(native["library"], socket)
        holder = card(world, "genuine-sc-3.0")
        insert_card(card=build_card(holder), slot=0)
        code, step1 = lib("iReadCardBas_HSM_Step1", 1)
        assert code == 0, step1
        region, hist, alg, _, ip, ir, ep, er, serial, _ = step1.decode().split("|")
        module = SoftwareSecureModule.from_file(world["cards"]["keys"])
        algorithm, historical = SymmetricAlgorithm(int(alg)), bytes.fromhex(hist)
        internal = module.cryptogram(
            KeyName.IRK, algorithm, region, historical, bytes.fromhex(ip), bytes.fromhex(ir)
        )
        external = module.cryptogram(
            KeyName.RKSSSE, algorithm, region, historical, bytes.fromhex(ep), bytes.fromhex(er)
        )
        key = f"{internal.hex().upper()}|{external.hex().upper()}{er}".encode()
        code, text = lib("iReadCardBas_HSM_Step2", key)
        assert code == 0, text
        fields = text.decode("gbk").split("|")
        assert fields[1] == holder.holder.ssn and fields[4] == holder.holder.name
        assert fields[9] == "0" * 12 and serial == "0" * 12


class HeldPad:
    """A PIN pad whose holder types only when the test says so."""

    def __init__(self) -> None:
        self.asked = threading.Event()
        self.release = threading.Event()

    def read_pin(self, prompt: str) -> str:
        self.asked.set()
        assert self.release.wait(30)
        return RIGHT_PIN


def test_card_pulled_mid_read(world: dict, insert_card, native: dict[str, Path]) -> None:
    socket = world["tmp"] / "run" / "sscard.sock"
    with counter_runtime(world, True, [RIGHT_PIN]) as runtime:
        pad = HeldPad()
        runtime.steps.profile._pinpad = pad
        lib = Library(native["library"], socket)
        inserted = insert_card(card=build_card(card(world, "genuine-cq-2.0")), slot=0)
        assert pad.asked.wait(30)  # the transaction runs: read done, waiting for the PIN
        answer: list[tuple[int, bytes]] = []
        caller = threading.Thread(target=lambda: answer.append(lib("iReadCardBas", 1)))
        caller.start()
        inserted.remove()  # pulled before the PIN reached the card
        pad.release.set()
        caller.join(60)
        assert answer and answer[0][0] == ldt33.NO_ANSWER, answer
        assert runtime.wait_for_outcomes(1, 30)
        assert runtime.outcomes[-1].decision == "error"
