"""Start, stop and wait for the system pcscd from tests (a restart is part of what we test)."""

from __future__ import annotations

import subprocess
import time

from drivers.pcsc import establish_context, list_readers, release_context
from firmware_sim.vpcd import reader_name
from terminal.errors import PcscUnavailableError

PCSCD_SOCKET_WAIT = 15.0


def pcscd_running() -> bool:
    return subprocess.run(["pgrep", "-x", "pcscd"], capture_output=True).returncode == 0


def wait_for_service(timeout: float = PCSCD_SOCKET_WAIT) -> list[str]:
    """Wait until pcscd answers and lists its vpcd readers; return the reader names."""
    end = time.monotonic() + timeout
    delay = 0.02
    while True:
        try:
            context = establish_context()
            try:
                names = list_readers(context)
            finally:
                release_context(context)
            if reader_name(0, names) is not None:
                return names
        except PcscUnavailableError:
            pass
        if time.monotonic() > end:
            raise RuntimeError("pcscd did not come up with its vpcd readers")
        time.sleep(delay)  # polling the service start: there is no event to wait on
        delay = min(delay * 2, 0.25)


def start_pcscd() -> None:
    if not pcscd_running():
        subprocess.run(["pcscd"], check=True)
    wait_for_service()


def stop_pcscd() -> None:
    subprocess.run(["pkill", "-x", "pcscd"], check=False)
    end = time.monotonic() + 15
    while pcscd_running():
        if time.monotonic() > end:
            subprocess.run(["pkill", "-9", "-x", "pcscd"], check=False)
        time.sleep(0.05)
