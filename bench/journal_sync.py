"""Benchmark: every figure of the journal / sync / hotlist issue, in one run.

Runs, one after another in this process's environment, each with its own baseline measured
in the same run and printed beside it:

1. bench/journal_append.py - durable appends per second (WAL + synchronous=FULL, one commit
   per transaction) against synchronous=NORMAL and a plain file + fsync; peak RSS while a
   1,000,000-entry backlog uploads to a loopback ingest server.
2. bench/backoffice_ingest.py - transactions per second uploaded to a loopback back office on
   SQLite and on PostgreSQL (``ONECARD_TEST_PG_URL``), batched against row-by-row.
3. bench/hotlist.py - lookup time and resident memory at 1 and 10 million entries against a
   Python set, and the time to apply a 10,000-entry delta.

    .venv/bin/python bench/journal_sync.py [--backlog 1000000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def run(script: str, *args: str) -> None:
    print(f"\n=== {script} {' '.join(args)}".rstrip(), flush=True)
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    env.setdefault("ONECARD_TEST_PG_URL", "postgresql:///onecard_test?host=/var/run/postgresql")
    subprocess.run([sys.executable, str(HERE / script), *args], check=True, env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=1_000_000, help="backlog entries")
    args = parser.parse_args()
    run("journal_append.py", "--backlog", str(args.backlog))
    run("backoffice_ingest.py", "5", "10")
    run("hotlist.py")


if __name__ == "__main__":
    main()
