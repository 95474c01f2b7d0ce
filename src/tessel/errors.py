"""The one error hierarchy of tessel. Front ends translate these in one table each."""

from __future__ import annotations


class TesselError(Exception):
    """Root of every error tessel raises on purpose."""

    def __init__(self, message: str, **fields: object) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields


class InvalidInput(TesselError):
    """The input (a file, a request, a parameter) is malformed; the message says what is wrong."""


class Unsupported(InvalidInput):
    """Well-formed input that tessel does not handle (e.g. an unknown transfer syntax)."""


class NotFound(TesselError):
    """The named resource does not exist (or the caller may not know that it does)."""


class AlreadyExists(TesselError):
    """A resource with that identity exists already."""


class Conflict(TesselError):
    """The request conflicts with the resource's current state (stale version, locked, not empty)."""


class Forbidden(TesselError):
    """The caller is known but not allowed to do this."""


class Unauthenticated(TesselError):
    """The caller could not be identified."""


class Unavailable(TesselError):
    """A dependency is unavailable or a limit was reached; retrying later may succeed."""


class Corrupted(TesselError):
    """Stored data failed its integrity check (altered or damaged at rest); it is not served."""


class QuotaExceeded(TesselError):
    """A configured quota would be exceeded."""
