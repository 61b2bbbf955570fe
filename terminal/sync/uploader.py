"""The background uploader: journal entries to the back office, ``POST /v1/ingest``.

Exactly-once at the back office comes from two halves (docs/sync.md, "Upload"): the back
office skips an entry it already holds with the same hash, and the terminal resends every
entry it has not seen acknowledged. Acknowledgements live in the journal, so a restart
resumes where the last acknowledged batch ended; an answer lost on the way (a cut
connection, a time-out) only means the batch is sent again.

The backlog is streamed: one batch (``batch_size`` entries) is read, sent and acknowledged
at a time, so a terminal that was offline for a million transactions uploads them in
bounded memory. Any failure - refused connection, time-out, 5xx, a cut connection, an
answer that is not the contract - is a typed :class:`SyncError`; the background thread
(:class:`terminal.sync.sender.BackgroundSender`) logs it and backs off.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Unpack

from terminal.errors import (
    JournalError,
    OneCardError,
    SyncAnswerError,
    SyncError,
)
from terminal.host.clock import Clock
from terminal.journal.store import Journal
from terminal.sync.auth import TerminalCredentials
from terminal.sync.client import parse_acked_answer
from terminal.sync.sender import (
    BackgroundSender,
    SenderOptions,
)
from terminal.wire.journal import MAX_ENTRIES, ingest_body
from terminal.wire.requests import INGEST_PATH

log = logging.getLogger(__name__)

MAX_BATCH = MAX_ENTRIES
"""The back office takes at most this many entries per request (docs/sync.md)."""


# --- the uploader -------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadResult:
    """One :meth:`Uploader.run_once`: requests sent, entries sent (resends included), the
    journal's ``acked_up_to`` after it, and entries still waiting."""

    batches: int
    sent: int
    acked_up_to: int
    pending: int


@dataclass(frozen=True)
class UploaderStatus:
    """The background uploader at a glance, for the terminal's status page."""

    running: bool
    consecutive_failures: int
    last_error: str | None
    """``code: reason`` of the last failure, None after a success."""
    last_success_time: float | None
    acked_up_to: int
    pending: int


class Uploader(BackgroundSender):
    """Uploads a journal's unacknowledged entries to the back office.

    :meth:`run_once` uploads everything pending and returns (or raises a
    :class:`SyncError`); :meth:`start` runs it in a background thread that retries with
    back-off until :meth:`stop` (a :meth:`notify` does not cut a back-off short: entries
    arrive with every tap). ``client`` is the terminal's shared back office client; without
    one the uploader opens its own.
    """

    thread_name = "onecard-uploader"
    what = "upload"
    max_batch = MAX_BATCH
    mismatch_error = JournalError
    source_name = "journal"

    def __init__(
        self,
        journal: Journal,
        credentials: TerminalCredentials,
        clock: Clock,
        batch_size: int = 1000,
        **options: Unpack[SenderOptions],
    ) -> None:
        super().__init__(journal, credentials, clock, batch_size, options)
        self._journal = journal

    # --- one pass --------------------------------------------------------------------------

    def run_once(self) -> UploadResult:
        """Upload every pending entry, a batch at a time, marking each acknowledged batch in
        the journal before reading the next. Raises :class:`SyncError` on the first failure;
        what was acknowledged before it stays acknowledged."""
        with self._pass:
            return self._upload(stoppable=False)

    def _send_pending(self, stoppable: bool) -> int:
        result = self._upload(stoppable)
        if result.batches:
            log.info("uploaded %d entries, acked up to %d", result.sent, result.acked_up_to)
        return result.pending

    def _progress(self) -> int | None:
        try:
            return self._journal.acked_up_to
        except OneCardError:
            return None

    def _upload(self, stoppable: bool) -> UploadResult:
        # stoppable: the background pass ends early (between batches) when stop() is called.
        cursor = self._journal.acked_up_to
        batches = sent = 0
        regressed = False
        while not (stoppable and self._stop.is_set()):
            batch = self._journal.wire_page(cursor, self.batch_size)
            if not batch:
                break
            first, last = batch[0][0], batch[-1][0]
            if first != cursor + 1:
                raise SyncError(
                    f"the back office holds entries up to {cursor} but this journal has "
                    f"purged up to {first - 1}: they cannot be sent again"
                )
            status, answer = self._client.post(
                INGEST_PATH, ingest_body(self._terminal_id, [e for _, e in batch])
            )
            try:
                acked = parse_acked_answer(status, answer)
            except SyncError:
                # A back office that answers out of contract gets a fresh connection next time.
                self._client.close()
                raise
            batches += 1
            sent += len(batch)
            try:
                self._journal.ack(acked)
            except JournalError as exc:
                raise SyncAnswerError(f"acked_up_to {acked} is not ours: {exc.reason}") from None
            if acked < first - 1:
                # The back office holds less than it acknowledged before (restored from a
                # backup?): send again from what it holds, once per pass.
                if regressed:
                    raise SyncAnswerError(f"back office keeps going back (acked_up_to {acked})")
                regressed = True
                log.warning("back office holds only up to %d; sending again from there", acked)
            elif acked <= cursor:
                raise SyncAnswerError(
                    f"back office stored none of entries {first}..{last} (acked_up_to {acked})"
                )
            cursor = acked
        stats = self._journal.stats()
        return UploadResult(batches, sent, stats.acked_up_to, stats.unacked)

    # --- the operator's view --------------------------------------------------------------

    def status(self) -> UploaderStatus:
        stats = self._journal.stats()
        with self._state:
            return UploaderStatus(
                running=self.running,
                consecutive_failures=self._failures,
                last_error=self._last_error,
                last_success_time=self._last_success,
                acked_up_to=stats.acked_up_to,
                pending=stats.unacked,
            )
