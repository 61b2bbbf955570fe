"""Start, stop and wait for the system pcscd from tests (a restart is part of what we test)."""

from __future__ import annotations

import contextlib
import os
import signal
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


def pcscd_pids() -> list[int]:
    found = subprocess.run(["pgrep", "-x", "pcscd"], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


def stop_pcscd() -> None:
    """Stop the system pcscd, by its process id (SIGTERM, then SIGKILL after 15 s)."""
    pids = pcscd_pids()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + 15
    while set(pids) & set(pcscd_pids()):
        if time.monotonic() > end:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)  # polling a process's end: pcscd is not our child to wait() on


def restart_pcscd() -> list[str]:
    """Stop pcscd and start it again; the reader names once it serves its vpcd readers."""
    stop_pcscd()
    start_pcscd()
    return wait_for_service()
