"""Reading the audit trail: filtered queries (`tessel audit`) and chain verification (`tessel audit verify`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import sqlalchemy as sa

from tessel.audit.records import FIELDS, GENESIS, chain_hash
from tessel.catalog.sql.tables import audit_head, audit_records


@dataclass(frozen=True, slots=True)
class Filters:
    principal: str | None = None      # access key id (or oidc:..., ae:...) or principal name
    patient_id: str | None = None
    image_set_id: str | None = None
    datastore_id: str | None = None
    study_uid: str | None = None
    interface: str | None = None
    action: str | None = None         # exact, or a suffix such as GetImageFrame
    outcome: str | None = None
    since: float | None = None
    until: float | None = None


def records(catalog: Any, filters: Filters, *, limit: int | None = None, newest_first: bool = False,
            batch: int = 5000) -> Iterator[dict[str, Any]]:
    """Matching records in sequence order (or newest first), streamed in batches."""
    t = audit_records
    where: list[Any] = []
    if filters.principal:
        where.append(sa.or_(t.c.principal == filters.principal, t.c.principal_name == filters.principal))
    if filters.patient_id:
        where.append(t.c.patient_id == filters.patient_id)
    if filters.image_set_id:
        where.append(t.c.image_set_id == filters.image_set_id)
    if filters.datastore_id:
        where.append(t.c.datastore_id == filters.datastore_id)
    if filters.study_uid:
        where.append(t.c.study_uid == filters.study_uid)
    if filters.interface:
        where.append(t.c.interface == filters.interface)
    if filters.action:
        where.append(sa.or_(t.c.action == filters.action, t.c.action.endswith(":" + filters.action)))
    if filters.outcome:
        where.append(t.c.outcome == filters.outcome)
    if filters.since is not None:
        where.append(t.c.time >= filters.since)
    if filters.until is not None:
        where.append(t.c.time < filters.until)
    returned = 0
    last: int | None = None
    while limit is None or returned < limit:
        q = sa.select(t).where(*where)
        if last is not None:
            q = q.where(t.c.seq < last if newest_first else t.c.seq > last)
        q = q.order_by(t.c.seq.desc() if newest_first else t.c.seq).limit(
            batch if limit is None else min(batch, limit - returned))
        with catalog.read() as conn:
            rows = [dict(r._mapping) for r in conn.execute(q)]
        if not rows:
            return
        for row in rows:
            yield row
        returned += len(rows)
        last = rows[-1]["seq"]


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    checked: int
    bad_seq: int | None = None
    reason: str | None = None


def verify(catalog: Any, key: bytes, *, batch: int = 5000) -> Verification:
    """Walk the chain from record 1; stop at the first record that is altered, missing or out of place."""
    previous, expected, checked = GENESIS, 1, 0
    t = audit_records
    while True:
        with catalog.read() as conn:
            rows = [dict(r._mapping) for r in conn.execute(
                sa.select(t).where(t.c.seq >= expected).order_by(t.c.seq).limit(batch))]
        if not rows:
            break
        for row in rows:
            if row["seq"] != expected:
                missing = f"record {expected}" if row["seq"] == expected + 1 else \
                    f"records {expected} to {row['seq'] - 1}"
                return Verification(False, checked, expected, f"{missing} removed (the chain jumps from "
                                                              f"{expected - 1} to {row['seq']})")
            content = {name: row[name] for name in FIELDS}
            content["seq"] = row["seq"]
            if chain_hash(key, previous, content) != row["hash"]:
                return Verification(False, checked, row["seq"],
                                    f"record {row['seq']} was altered (its content does not match its hash)")
            previous, expected, checked = row["hash"], expected + 1, checked + 1
    with catalog.read() as conn:
        head = conn.execute(sa.select(audit_head).where(audit_head.c.id == 1)).first()
    if head is None:
        return Verification(False, checked, None, "the chain's head record is missing")
    if int(head.seq) != expected - 1 or head.hash != previous:
        if int(head.seq) > expected - 1:
            return Verification(False, checked, expected, f"records {expected} to {head.seq} removed from the end "
                                                          f"(the chain's head names record {head.seq})")
        return Verification(False, checked, int(head.seq) or None,
                            "the chain's head does not match its last record (head altered)")
    return Verification(True, checked)
