"""An audit record: who did what to which data, from where, through which interface, and how it went.

Records are hash-chained: each record's `hash` is HMAC-SHA256, keyed by the `audit-chain`
data key, over the previous record's hash and this record's canonical form. Altering a
record, removing one, or re-numbering the rest breaks the chain at that record; without the
key nobody can compute a chain that verifies.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

GENESIS = "0" * 64  # the hash "before" record 1


class Outcome(StrEnum):
    ALLOWED = "allowed"
    DENIED = "denied"    # authentication or authorization refused it
    INVALID = "invalid"  # refused before any access decision (malformed, no such route)
    ERROR = "error"      # the server failed (5xx, DIMSE processing failure)


class Interface(StrEnum):
    AHI = "ahi"
    DICOMWEB = "dicomweb"
    DIMSE = "dimse"
    VIEWER = "viewer"
    CLI = "cli"  # administrative commands: tessel keys / master-key


@dataclass(slots=True)
class Event:
    """One request as it happens; front ends and the decision point fill in what they know."""

    interface: str
    action: str = ""
    time: float = 0.0
    principal: str = "anonymous"
    principal_name: str | None = None
    auth: str | None = None
    source: str | None = None
    datastore_id: str | None = None
    image_set_id: str | None = None
    study_uid: str | None = None
    series_uid: str | None = None
    sop_uid: str | None = None
    patient_id: str | None = None
    outcome: str | None = None  # None until decided; the edge settles it from the status
    status: int | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    duration_ms: float | None = None
    detail: str | None = None
    request_id: str | None = None

    def __post_init__(self) -> None:
        if not self.time:
            self.time = time.time()

    def set_principal(self, principal: Any) -> None:
        self.principal = principal.access_key_id
        self.principal_name = principal.name
        self.auth = principal.method


FIELDS = tuple(f.name for f in fields(Event))  # the record's columns, in canonical order (after seq)


def row_of(event: Event, seq: int) -> dict[str, Any]:
    row = {name: getattr(event, name) for name in FIELDS}  # (dataclasses.asdict deep-copies: 10x slower)
    row["time"] = round(float(row["time"]), 6)
    if row["duration_ms"] is not None:
        row["duration_ms"] = round(float(row["duration_ms"]), 3)
    row["outcome"] = row["outcome"] or Outcome.ALLOWED.value
    for name in ("principal", "principal_name", "source", "detail", "request_id"):
        if isinstance(row[name], str):
            row[name] = row[name][:256 if name != "detail" else 2000]
    row["seq"] = seq
    return row


def canonical(row: dict[str, Any]) -> bytes:
    """The bytes a record's hash covers: its sequence number and every field, in a fixed order."""
    return json.dumps([row["seq"], *(row[name] for name in FIELDS)], separators=(",", ":"),
                      ensure_ascii=False).encode()


def chain_hash(key: bytes, previous: str, row: dict[str, Any]) -> str:
    return hmac.new(key, previous.encode() + b"\n" + canonical(row), hashlib.sha256).hexdigest()
