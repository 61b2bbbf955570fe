"""The last warnings and errors kept for the status page (terminal.runtime.recent_errors)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

from terminal.runtime.recent_errors import MESSAGE_LIMIT, RecentErrors, mask_identifiers


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    # A logger of its own, not propagating: the test's records stay out of pytest's capture
    # and of any handler another test installed on the root.
    log = logging.getLogger("onecard.test.recent_errors")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    yield log
    for handler in list(log.handlers):
        log.removeHandler(handler)
    log.propagate = True
    log.setLevel(logging.NOTSET)


@pytest.fixture
def recent(logger: logging.Logger) -> Iterator[RecentErrors]:
    handler = RecentErrors()
    handler.install(logger)
    yield handler
    handler.remove()


def messages(handler: RecentErrors, limit: int = 20) -> list[str]:
    return [entry["message"] for entry in handler.snapshot(limit)]


def test_keeps_warnings_and_above_only(recent: RecentErrors, logger: logging.Logger) -> None:
    logger.debug("debug")
    logger.info("info")
    logger.warning("warning %d", 1)
    logger.error("error")
    logger.critical("critical")
    entries = recent.snapshot()
    assert [e["level"] for e in entries] == ["CRITICAL", "ERROR", "WARNING"]
    assert entries[-1]["message"] == "warning 1"
    assert all(e["logger"] == logger.name for e in entries)
    assert all(isinstance(e["at"], float) for e in entries)
    assert set(entries[0]) == {"at", "level", "logger", "message"}


def test_capacity_drops_the_oldest_and_snapshot_is_newest_first(logger: logging.Logger) -> None:
    handler = RecentErrors(capacity=3)
    handler.install(logger)
    for n in range(5):
        logger.warning("w%d", n)
    assert messages(handler) == ["w4", "w3", "w2"]
    assert messages(handler, limit=2) == ["w4", "w3"]
    assert messages(handler, limit=0) == []
    assert RecentErrors().capacity == 50
    with pytest.raises(ValueError):
        RecentErrors(capacity=0)


def test_snapshot_gives_copies(recent: RecentErrors, logger: logging.Logger) -> None:
    logger.warning("one")
    recent.snapshot()[0]["message"] = "changed"
    assert messages(recent) == ["one"]


def test_identifiers_in_a_message_are_masked(recent: RecentErrors, logger: logging.Logger) -> None:
    logger.warning("holder %s refused", "11010119900307123X")
    logger.warning("card 50012345678901234567 hotlisted")
    logger.error("id 110101199003071234, card 5001234567890123; short 12345678901 stays")
    assert messages(recent) == [
        "id 1101**********1234, card 5001********0123; short 12345678901 stays",
        "card 5001************4567 hotlisted",
        "holder 1101**********123X refused",
    ]


def test_mask_identifiers() -> None:
    assert mask_identifiers("123456789012") == "1234****9012"
    assert mask_identifiers("11010119900307123x.") == "1101**********123x."
    assert mask_identifiers("no digits here") == "no digits here"


def test_exception_type_and_text_without_traceback(
    recent: RecentErrors, logger: logging.Logger
) -> None:
    try:
        raise ValueError("bad card 110101199003071234")
    except ValueError:
        logger.exception("read failed")
    try:
        raise KeyError
    except KeyError:
        logger.error("lookup failed", exc_info=True)
    assert messages(recent) == [
        "lookup failed (KeyError)",
        "read failed (ValueError: bad card 1101**********1234)",
    ]
    assert "Traceback" not in "".join(messages(recent))


def test_message_is_cut_after_masking(recent: RecentErrors, logger: logging.Logger) -> None:
    # The identifier straddles the cut: masked first, so no digit run of it is left bare.
    logger.warning("x" * (MESSAGE_LIMIT - 10) + "110101199003071234")
    (message,) = messages(recent)
    assert len(message) == MESSAGE_LIMIT
    assert message.endswith("1101******")


def test_emit_never_raises() -> None:
    # Records handed to the handler directly: other handlers (pytest's own) would raise on
    # them first.
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    handler = RecentErrors()

    def record(msg: object, args: tuple[object, ...], exc: BaseException | None) -> None:
        exc_info = (type(exc), exc, None) if exc is not None else None
        handler.handle(logging.LogRecord("t", logging.ERROR, "x.py", 1, msg, args, exc_info))

    record("%d items", ("not a number",), None)  # arguments that do not format
    record("odd", (), Unprintable())
    assert messages(handler) == [
        "odd (Unprintable)",
        "%d items (message arguments did not format)",
    ]


def test_concurrent_logging_keeps_every_record_up_to_capacity(logger: logging.Logger) -> None:
    handler = RecentErrors(capacity=1000)
    handler.install(logger)
    start = threading.Barrier(8)

    def work(worker: int) -> None:
        start.wait()
        for n in range(100):
            logger.warning("w%d-%d", worker, n)
            handler.snapshot(5)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    kept = messages(handler, limit=1000)
    assert len(kept) == 800 and len(set(kept)) == 800
    # Newest first also within each thread's own sequence.
    for worker in range(8):
        mine = [int(m.split("-")[1]) for m in kept if m.startswith(f"w{worker}-")]
        assert mine == sorted(mine, reverse=True)


def test_install_and_remove(logger: logging.Logger) -> None:
    handler = RecentErrors()
    handler.install(logger)
    assert handler in logger.handlers
    logger.warning("kept")
    handler.remove()
    assert handler not in logger.handlers
    logger.warning("not kept")
    assert messages(handler) == ["kept"]
    handler.remove()  # nothing to do, no error


def test_install_on_root_by_default_and_moving_leaves_the_old_logger() -> None:
    handler = RecentErrors()
    other = logging.getLogger("onecard.test.recent_errors.other")
    try:
        handler.install()
        assert handler in logging.getLogger().handlers
        handler.install(other)
        assert handler not in logging.getLogger().handlers
        assert handler in other.handlers
    finally:
        handler.remove()
    assert handler not in other.handlers and handler not in logging.getLogger().handlers
