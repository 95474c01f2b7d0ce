"""TesselError -> DIMSE status: the one translation table of the DIMSE edge.

Every handler runs its work inside `guard`/`guarded`, so no exception ever reaches
pynetdicom (which would log a traceback and answer with its own 0xC2xx codes): a
TesselError becomes the status of its row below with an Error Comment naming the
problem; anything else is logged once, here, and answered as a processing failure.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from enum import StrEnum
from typing import Any, TypeVar

from pydicom.dataset import Dataset

from tessel.errors import (AlreadyExists, Conflict, Forbidden, InvalidInput, NotFound, QuotaExceeded,
                           TesselError, Unauthenticated, Unavailable, Unsupported)

log = logging.getLogger("tessel.dimse")

SUCCESS = 0x0000
PENDING = 0xFF00
CANCEL = 0xFE00
PROCESSING_FAILURE = 0x0110
NO_SUCH_OBJECT_INSTANCE = 0x0112
CLASS_INSTANCE_CONFLICT = 0x0119
NOT_AUTHORIZED = 0x0124
MOVE_DESTINATION_UNKNOWN = 0xA801
SUBOPERATIONS_FAILED = 0xB000  # C-GET/C-MOVE: complete, one or more failures or warnings
COERCION = 0xB000  # C-STORE warning: coercion of data elements
ELEMENT_DISCARDED = 0xB006
SOP_CLASS_MISMATCH_WARNING = 0xB007


class Service(StrEnum):
    STORE = "C-STORE"
    FIND = "C-FIND"
    RETRIEVE = "C-GET/C-MOVE"
    COMMIT = "N-ACTION"


class IdentifierMismatch(InvalidInput):
    """The identifier or data set does not fit the SOP class (wrong level, missing unique key)."""


class MoveDestinationUnknown(NotFound):
    """C-MOVE names a destination AE title that is not in the AE registry."""


# Most specific class first: the first row whose class the error is an instance of wins.
# C-STORE failures stay in the ranges storage SCUs know (A7xx, A9xx, Cxxx: PS3.4 B.2.3), so a
# tool like storescu names them; the Error Comment says what went wrong.
#                       C-STORE  C-FIND   C-GET/MOVE  N-ACTION
_TABLE: tuple[tuple[type[BaseException], tuple[int, int, int, int]], ...] = (
    (IdentifierMismatch,     (0xA900, 0xA900, 0xA900, 0x0115)),  # data set / identifier does not match SOP class
    (MoveDestinationUnknown, (0xC0F1, 0xC0F1, 0xA801, 0x0110)),
    (Unsupported,            (0xA900, 0xC001, 0xC001, 0x0115)),  # well-formed but not handled here
    (InvalidInput,           (0xC000, 0xC000, 0xC000, 0x0115)),  # cannot understand: malformed input
    (Forbidden,              (0x0124, 0x0124, 0x0124, 0x0124)),  # refused: not authorised
    (Unauthenticated,        (0x0124, 0x0124, 0x0124, 0x0124)),
    (Unavailable,            (0xA700, 0xA700, 0xA702, 0x0213)),  # out of resources; retry later
    (QuotaExceeded,          (0xA710, 0xA700, 0xA702, 0x0213)),
    (NotFound,               (0xC0F1, 0xC0F1, 0xC0F1, 0x0112)),  # e.g. the datastore is gone
    (Conflict,               (0xC0F2, 0xC0F2, 0xC0F2, 0x0110)),  # e.g. several datastores, none chosen
    (AlreadyExists,          (0xC0F2, 0xC0F2, 0xC0F2, 0x0111)),
    (TesselError,            (0xC000, 0xC000, 0xC000, 0x0110)),
)
_COLUMN = {Service.STORE: 0, Service.FIND: 1, Service.RETRIEVE: 2, Service.COMMIT: 3}
_INTERNAL = {Service.STORE: 0xC0FF, Service.FIND: 0xC0FF, Service.RETRIEVE: 0xC0FF,
             Service.COMMIT: PROCESSING_FAILURE}


def status_code(exc: BaseException, service: Service) -> int:
    for kind, codes in _TABLE:
        if isinstance(exc, kind):
            return codes[_COLUMN[service]]
    return _INTERNAL[service]


def comment(text: str) -> str:
    """An Error Comment value: LO, so at most 64 characters of the default repertoire."""
    ascii_text = text.encode("ascii", "replace").decode("ascii").replace("\\", "/")
    ascii_text = " ".join(ascii_text.split())
    return ascii_text if len(ascii_text) <= 64 else ascii_text[:61] + "..."


def status(code: int, error_comment: str | None = None) -> Dataset:
    ds = Dataset()
    ds.Status = code
    if error_comment:
        ds.ErrorComment = comment(error_comment)
    return ds


def failure(exc: BaseException, service: Service) -> Dataset:
    """The status dataset for an error; unexpected ones are logged with their traceback."""
    if isinstance(exc, TesselError):
        return status(status_code(exc, service), exc.message)
    log.error("%s handler failed", service.value, exc_info=exc)
    return status(_INTERNAL[service], f"internal error in tessel ({type(exc).__name__}); see the server log")


def store_warning(warnings: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> Dataset | None:
    """The C-STORE warning status for ingest warnings, or None when there are none.

    Reason codes that are C-STORE warnings (B000, B006, B007) are kept; the rest are tessel's
    own (e.g. frames kept as sent) and reported as B000 with their message.
    """
    if not warnings:
        return None
    first = warnings[0]
    code = int(first.get("warning_reason_code") or COERCION)
    if code not in (COERCION, ELEMENT_DISCARDED, SOP_CLASS_MISMATCH_WARNING):
        code = COERCION
    text = str(first.get("message") or first.get("type") or "data elements were coerced")
    if len(warnings) > 1:
        text = f"{text} (+{len(warnings) - 1} more)"
    return status(code, text)


_R = TypeVar("_R")


def guard(service: Service, work: Callable[[], _R]) -> _R | Dataset:
    """Run one request's work; any error becomes the service's status dataset."""
    try:
        return work()
    except Exception as exc:  # the DIMSE edge never crashes: every error becomes a status
        return failure(exc, service)


def guarded(service: Service, results: Iterator[tuple[Any, Any]] | Iterator[Any]) -> Iterator[Any]:
    """Wrap a C-FIND/C-GET/C-MOVE handler generator: an error ends it with a failure status."""
    try:
        yield from results
    except Exception as exc:  # the DIMSE edge never crashes: every error becomes a status
        yield failure(exc, service), None
