"""The one table from tessel's errors to botocore's error shapes.

botocore reads the code from the `x-amzn-ErrorType` header and the text from
the body's `message`; the status codes are those of service-2.json (note
ServiceQuotaExceededException is 402). Lookup walks the exception's MRO, so
a subclass maps like its nearest listed ancestor.
"""

from __future__ import annotations

import itertools
import json
import logging
import uuid

from sqlalchemy.exc import OperationalError
from starlette.responses import Response

from tessel.errors import (AlreadyExists, Conflict, Forbidden, InvalidInput, NotFound,
                           QuotaExceeded, TesselError, Unauthenticated, Unavailable)

log = logging.getLogger("tessel.ahi")


class NotAcceptable(TesselError):
    """GetImageFrame: the Accept header excludes the frame's stored media type."""


class BadRequest(InvalidInput):
    """GetImageFrame: the request body is malformed (not the JSON the operation takes)."""


ERROR_TABLE: dict[type[Exception], tuple[str, int]] = {
    NotAcceptable: ("NotAcceptableException", 406),
    BadRequest: ("BadRequestException", 400),
    InvalidInput: ("ValidationException", 400),
    NotFound: ("ResourceNotFoundException", 404),
    AlreadyExists: ("ConflictException", 409),
    Conflict: ("ConflictException", 409),
    Forbidden: ("AccessDeniedException", 403),
    Unauthenticated: ("AccessDeniedException", 403),
    Unavailable: ("ThrottlingException", 429),
    QuotaExceeded: ("ServiceQuotaExceededException", 402),
}
INTERNAL = ("InternalServerException", 500)


_BOOT = str(uuid.uuid4())[:23]  # uuid4() per request showed in profiles; a counter is unique enough
_COUNTER = itertools.count()


def new_request_id() -> str:
    return f"{_BOOT}-{next(_COUNTER) & 0xFFFFFFFFFFFF:012x}"


def error_response(code: str, status: int, message: str, request_id: str | None = None) -> Response:
    body = json.dumps({"message": message}).encode()
    return Response(body, status_code=status, media_type="application/json",
                    headers={"x-amzn-ErrorType": code, "x-amzn-RequestId": request_id or new_request_id()})


def code_for(exc: BaseException) -> tuple[str, int] | None:
    for cls in type(exc).__mro__:
        if cls in ERROR_TABLE:
            return ERROR_TABLE[cls]
    if isinstance(exc, OperationalError) and "locked" in str(exc.orig):
        return ERROR_TABLE[Unavailable]  # SQLite writer busy past its timeout: retryable
    return None


def response_for(exc: BaseException, request_id: str, operation: str) -> Response:
    """The botocore-shaped answer to any exception; unexpected ones are logged once, here."""
    mapped = code_for(exc)
    if mapped is not None:
        code, status = mapped
        message = exc.message if isinstance(exc, TesselError) else "the catalog is busy; retry"
        return error_response(code, status, message, request_id)
    log.error("%s failed (request %s)", operation, request_id, exc_info=exc)
    return error_response(*INTERNAL, f"internal error (request id {request_id})", request_id)
