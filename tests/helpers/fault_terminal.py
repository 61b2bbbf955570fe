"""A terminal that journals and syncs without pause, for the kill -9 fault test.

    python fault_terminal.py JOURNAL CREDENTIALS SEED

After each append has returned (the entry is durable), it prints the sequence number on
standard output: that is the terminal telling the holder "accepted". It uploads in a
background thread all the while, until the test kills it with SIGKILL.
"""

from __future__ import annotations

import random
import sys

from terminal.host.clock import SystemClock
from terminal.journal.entry import TransactionRecord
from terminal.journal.store import Journal
from terminal.privacy.cardtoken import card_token
from terminal.sync.auth import load_credentials
from terminal.sync.uploader import Uploader


def main() -> None:
    journal_path, credentials_path, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = random.Random(seed)
    credentials = load_credentials(credentials_path)
    clock = SystemClock()
    journal = Journal.open(journal_path, credentials.terminal_id, clock)
    uploader = Uploader(journal, credentials, clock, batch_size=rng.choice([1, 7, 50]))
    uploader.start()
    while True:
        number = f"A{rng.randrange(10**7):07d}"
        entry = journal.append(
            TransactionRecord(
                kind=rng.choice(["card", "code"]),
                service="museum-entry",
                decision="accept",
                reason="ok",
                amount=rng.choice([None, 0, 200]),
                card_token=card_token(credentials.token_key, number),
                region=rng.choice(["500103", "510104"]),
                category=rng.choice(["1", "2", "3", "4"]),
            )
        )
        sys.stdout.write(f"{entry.seq}\n")
        sys.stdout.flush()
        uploader.notify()


if __name__ == "__main__":
    main()
