"""The one table from tessel's errors to DICOMweb answers: HTTP status and a reason.

Lookup walks the exception's MRO, so a subclass maps like its nearest listed
ancestor (Unsupported before InvalidInput: a syntax that cannot be produced is
406 Not Acceptable, not 400). Bodies are JSON: {"error": reason, "message": text}.
"""

from __future__ import annotations

import json
import logging
import uuid

from sqlalchemy.exc import OperationalError
from starlette.responses import Response

from tessel.errors import (AlreadyExists, Conflict, Corrupted, Forbidden, InvalidInput, NotFound, QuotaExceeded,
                           TesselError, Unauthenticated, Unavailable, Unsupported)

log = logging.getLogger("tessel.dicomweb")

ERROR_TABLE: dict[type[Exception], tuple[int, str]] = {
    Unsupported: (406, "Not Acceptable"),
    InvalidInput: (400, "Bad Request"),
    NotFound: (404, "Not Found"),
    AlreadyExists: (409, "Conflict"),
    Conflict: (409, "Conflict"),
    Forbidden: (403, "Forbidden"),
    Unauthenticated: (401, "Unauthorized"),
    Unavailable: (503, "Service Unavailable"),
    QuotaExceeded: (413, "Payload Too Large"),
    Corrupted: (500, "Internal Server Error"),  # stored data failed its integrity check: named, not served
}
INTERNAL = (500, "Internal Server Error")
# Browsers and dicomweb-client retry a 401 with credentials when told which schemes work.
CHALLENGE = 'Bearer realm="tessel", Basic realm="tessel"'


class UnsupportedMediaType(InvalidInput):
    """The request body's media type is not one DICOMweb accepts here (415)."""


ERROR_TABLE = {UnsupportedMediaType: (415, "Unsupported Media Type"), **ERROR_TABLE}


def status_for(exc: BaseException) -> tuple[int, str] | None:
    for cls in type(exc).__mro__:
        if cls in ERROR_TABLE:
            return ERROR_TABLE[cls]
    if isinstance(exc, OperationalError) and "locked" in str(exc.orig):
        return ERROR_TABLE[Unavailable]  # SQLite writer busy past its timeout: retryable
    return None


def error_response(exc: BaseException, what: str) -> Response:
    """The answer to any exception; unexpected ones are logged once, here."""
    mapped = status_for(exc)
    headers: dict[str, str] = {}
    if mapped is None:
        request_id = str(uuid.uuid4())
        log.error("%s failed (request %s)", what, request_id, exc_info=exc)
        status, reason, message = *INTERNAL, f"internal error (request id {request_id})"
    else:
        status, reason = mapped
        message = exc.message if isinstance(exc, TesselError) else "the catalog is busy; retry"
        if status == 401:
            headers["WWW-Authenticate"] = CHALLENGE
        if status == 503:
            headers["Retry-After"] = "1"
    body = json.dumps({"error": reason, "message": message}).encode()
    return Response(body, status_code=status, media_type="application/json", headers=headers)
