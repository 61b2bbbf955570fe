"""Benchmark: iReadCardBas through libonecard_sscard.so against `onecard read --format
ireadcardbas` as a process, on the same simulated card in the same run.

A counter runtime (software secure module, no PIN) serves the library on a temporary socket;
a chongqing-2.0 card sits in vpcd slot 0 and the counter reads it once, as it does for every
card inserted. Then, interleaved in rounds so machine noise hits all alike:

* ``card read (in-process)``: SCardConnect + the read of EF05/EF06 + SCardDisconnect, what the
  card itself costs (:func:`terminal.ssc.reading.read_card`);
* ``onecard read (process)``: what a hospital script calling the CLI pays per read;
* ``iReadCardBas (library)``: the hospital system's call through ctypes: connect to the
  service, one request line, the record of the card the counter read, close. It sends no
  APDU: the card was read once by the counter's transaction.

The goal of issue 18: the library adds under 2 ms to the card read itself. Needs pcscd with
vpcd (`make setup`); run it alone on pcscd (`flock /tmp/onecard-pcscd.lock ...` on a shared
machine).

    .venv/bin/python bench/his.py [--calls 200] [--rounds 5] [--process-calls 10]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from drivers.pcsc import (
    PcscBackend,
    establish_context,
    list_readers,
    release_context,
    wait_for_card,
)
from firmware_sim.issuing import issue_world
from firmware_sim.profile import load_profile
from firmware_sim.ssc_applet import build_card
from firmware_sim.vpcd import VpcdBridge, reader_name
from onecard.runtime import build_runtime
from terminal.crypto.signing import Algorithm, generate_private_key, public_key_bytes
from terminal.outputs import RecordingOutputs
from terminal.runtime.config import load_config
from terminal.ssc.reading import read_card
from terminal.wire.document import sign_document

REPO = Path(__file__).resolve().parents[1]
SERVICE = "hospital-registration"
GOAL_MS = 2.0


def build_library(out: Path) -> Path:
    subprocess.run(["make", "-s", "-C", str(REPO / "native" / "sscard"), f"OUT={out}"], check=True)
    return out / "libonecard_sscard.so"


def counter_config(tmp: Path, reader: str) -> Path:
    issue_world(tmp / "world")
    documents = tmp / "documents"
    documents.mkdir()
    publisher = generate_private_key(Algorithm.SM2)
    (tmp / "publication.pub").write_text(public_key_bytes(publisher).hex() + "\n")
    (tmp / "token.key").write_text(bytes(range(16)).hex() + "\n")
    applist = {
        "kind": "applist",
        "version": 1,
        "services": [
            {"code": SERVICE, "name": "R", "scope": "national", "valid_from": "2020-01-01"}
        ],
    }
    (documents / "applist.json").write_bytes(sign_document(applist, publisher, Algorithm.SM2))
    path = tmp / "terminal.toml"
    path.write_text(
        f"""
[terminal]
id = "BENCH-HIS"
profile = "counter"
service = "{SERVICE}"
[readers]
names = ["{reader}"]
[security]
keys = "world/keys.toml"
token_key = "token.key"
[backoffice]
journal = "journal.db"
documents = "documents"
replay_cache = "replay.db"
publication_key = "publication.pub"
[counter]
api_port = 0
pinpad = "script"
require_pin = false
sscard_socket = "sscard.sock"
[status]
port = -1
[screen]
port = -1
"""
    )
    return path


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="library calls per round")
    parser.add_argument("--reads", type=int, default=50, help="in-process card reads per round")
    parser.add_argument("--process-calls", type=int, default=10, help="CLI runs per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    context = establish_context()
    reader = reader_name(0, list_readers(context))
    release_context(context)
    if reader is None:
        print("no vpcd reader: run `make setup`", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        library = build_library(tmp / "lib")
        runtime = build_runtime(
            load_config(counter_config(tmp, reader)), outputs=RecordingOutputs()
        )
        profile = load_profile(sorted((tmp / "world" / "cards").glob("genuine-cq-2.0.toml"))[0])
        bridge = VpcdBridge(build_card(profile), slot=0)
        with runtime.running("bench-his"):
            bridge.insert()
            try:
                assert wait_for_card(reader, present=True), "pcscd did not see the card"
                assert runtime.wait_for_outcomes(1, 30) and runtime.outcomes[0].accepted
                counter_apdus = runtime.outcomes[0].apdu_count
                lib = ctypes.CDLL(str(library))
                lib.iReadCardBas.argtypes = [ctypes.c_int, ctypes.c_char_p]
                lib.iReadCardBas.restype = ctypes.c_long
                lib.iSSCardInit(str(tmp / "sscard.sock").encode(), 1)
                out = ctypes.create_string_buffer(1024)
                backend = PcscBackend()
                library_s: list[float] = []
                card_s: list[float] = []
                process_s: list[float] = []
                read_apdus = 0
                cli = [
                    sys.executable,
                    "-m",
                    "onecard.cli",
                    "read",
                    "--format",
                    "json",
                    "--reveal",
                    "--reader",
                    reader,
                ]
                cli_text_args = [*cli[:5], "ireadcardbas", *cli[6:]]
                for _ in range(args.rounds):
                    for _ in range(args.calls):
                        start = time.perf_counter()
                        code = lib.iReadCardBas(1, out)
                        library_s.append(time.perf_counter() - start)
                        assert code == 0, (code, out.value)
                    for _ in range(args.reads):
                        start = time.perf_counter()
                        reading = read_card(backend, reader)
                        card_s.append(time.perf_counter() - start)
                        read_apdus = reading.apdu_count
                    for _ in range(args.process_calls):
                        start = time.perf_counter()
                        done = subprocess.run(cli_text_args, capture_output=True, check=True)
                        process_s.append(time.perf_counter() - start)
                        assert done.stdout.count(b"|") == 11
                text = out.value.decode("gbk")
                cli_text = subprocess.run(
                    cli_text_args, capture_output=True, text=True, check=True
                ).stdout.strip()
                cli_apdus = json.loads(
                    subprocess.run(cli, capture_output=True, text=True, check=True).stdout
                )["apdu_count"]
            finally:
                bridge.remove()
    same = text == cli_text
    lib_ms, card_ms, proc_ms = median_ms(library_s), median_ms(card_s), median_ms(process_s)
    rows = [
        ("card read (in-process)", card_ms, len(card_s), read_apdus),
        ("onecard read (process)", proc_ms, len(process_s), cli_apdus),
        ("iReadCardBas (library)", lib_ms, len(library_s), 0),
    ]
    print(f"{'path':<26}{'median ms':>11}{'calls':>8}{'APDUs/read':>12}{'vs process':>12}")
    for name, ms, calls, apdus in rows:
        print(f"{name:<26}{ms:>11.3f}{calls:>8}{apdus:>12}{proc_ms / ms:>11.1f}x")
    print(
        f"\nthe counter's own read of the card: {counter_apdus} APDUs once per insertion "
        f"(read, verify); the library then answers from it with 0 APDUs per call"
    )
    print(
        f"library call over the card read: +{lib_ms:.3f} ms (goal < {GOAL_MS} ms): "
        f"{'met' if lib_ms < GOAL_MS else 'NOT met'}"
    )
    print(f"library string == onecard read string: {same}")
    return 0 if same and lib_ms < GOAL_MS else 1


if __name__ == "__main__":
    sys.exit(main())
