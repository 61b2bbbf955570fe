"""Typed errors of the back office, each with the HTTP status it answers with.

They belong to the one onecard error family (:class:`terminal.errors.OneCardError`), so the
CLI reports them like any other; the server turns them into ``{"error", "reason"}`` JSON
answers with :attr:`BackOfficeError.http_status`. They live here rather than in
``terminal/errors.py`` because the terminal never raises them.
"""

from __future__ import annotations

from terminal.errors import ConfigError, OneCardError, ParseError


class BackOfficeError(OneCardError):
    """Base of the back office's errors; ``http_status`` is what a client is answered."""

    code = "backoffice_error"
    http_status = 500


class BadRequestError(ParseError, BackOfficeError):
    """A request whose body, query or headers do not follow docs/sync.md (400)."""

    code = "bad_request"
    http_status = 400


class LengthRequiredError(BackOfficeError):
    """A POST without a usable Content-Length (411): the body cannot be bounded."""

    code = "length_required"
    http_status = 411


class PayloadTooLargeError(BackOfficeError):
    """A body over the server's limit (413); it is not read."""

    code = "payload_too_large"
    http_status = 413


class RangeNotSatisfiableError(BackOfficeError):
    """A hotlist snapshot ``Range`` that starts at or beyond its end (416); ``size`` is the
    snapshot's, sent as ``Content-Range: bytes */size``."""

    code = "range_not_satisfiable"
    http_status = 416

    def __init__(self, reason: str, size: int = 0) -> None:
        super().__init__(reason)
        self.size = size


class AuthenticationError(BackOfficeError):
    """Unknown terminal, missing or bad signature headers, bad signature (401)."""

    code = "unauthenticated"
    http_status = 401


class ClockSkewError(AuthenticationError):
    """``X-Onecard-Time`` more than the allowed skew away from the server's clock (401)."""

    code = "clock_skew"


class TerminalRevokedError(BackOfficeError):
    """The terminal authenticated but its enrolment was revoked (403)."""

    code = "revoked"
    http_status = 403


class ForbiddenError(BackOfficeError):
    """An authenticated terminal asking for something that is not its own (403)."""

    code = "forbidden"
    http_status = 403


class NotFoundError(BackOfficeError):
    """No such endpoint, or a document not published yet (404)."""

    code = "not_found"
    http_status = 404


class MethodNotAllowedError(BackOfficeError):
    """A known path with the wrong method (405)."""

    code = "method_not_allowed"
    http_status = 405


class ConflictError(BackOfficeError):
    """A batch that contradicts what is stored (409); nothing of it is stored."""

    code = "conflict"
    http_status = 409


class DuplicateConflictError(ConflictError):
    """``(terminal_id, seq)`` is stored with another ``hash``: the journal was rewritten."""

    code = "duplicate_conflict"


class ChainBrokenError(ConflictError):
    """An entry whose ``hash`` is wrong or whose ``prev_hash`` does not link to its
    predecessor (stored or in the batch), or whose stored successor does not link to it."""

    code = "chain_broken"


class RateLimitedError(BackOfficeError):
    """A terminal over its request rate, or the process over its ingest rate (429): come
    back in ``retry_after`` seconds (the answer's ``Retry-After``)."""

    code = "rate_limited"
    http_status = 429

    def __init__(self, reason: str, retry_after: int) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class StorageError(BackOfficeError):
    """The database failed (500): the batch is not stored and may be re-sent."""

    code = "storage_error"
    http_status = 500


class EnrolmentError(ConfigError, BackOfficeError):
    """An operator action on enrolment that cannot be done (already enrolled, unknown)."""

    code = "enrolment_error"
    http_status = 400


class PublicationError(ConfigError, BackOfficeError):
    """A document body, key file or hotlist entry an operator gave that cannot be used."""

    code = "publication_error"
    http_status = 400


class ServeConfigError(ConfigError, BackOfficeError):
    """``backoffice serve`` options that cannot work together (more than one worker on
    SQLite...), or a server that could not start."""

    code = "serve_config_error"
    http_status = 500
