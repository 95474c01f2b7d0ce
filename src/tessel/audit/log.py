"""The audit trail's writer: requests append to an in-memory queue; one thread writes batches.

Recording costs a request one deque append, so the audit stays off the hot path's latency.
The writer flushes every FLUSH_SECONDS (or at MAX_BATCH), extending the hash chain inside one
catalog transaction that locks the chain's head row, so several servers on one catalog still
write one unbroken chain. `stop()` drains the queue (durable on a clean shutdown); a crash
can lose at most the last FLUSH_SECONDS of records. When the catalog stays unreachable and the
queue reaches MAX_QUEUE, the trail fails closed: the front ends refuse requests (`accepting`
is false) until the writer catches up, so nothing is served without its record.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Callable, Iterable

import sqlalchemy as sa

from tessel.audit.records import Event, chain_hash, row_of
from tessel.catalog.sql.tables import audit_head, audit_records, dicom_studies, image_sets

log = logging.getLogger("tessel.audit")

FLUSH_SECONDS = 0.25
MAX_BATCH = 2000
ROWS_PER_INSERT = 500  # x 22 columns: under SQLite's 32,766 parameters of one statement
MAX_QUEUE = 500_000  # beyond this (the catalog unreachable for long) requests are refused


class AuditLog:
    def __init__(self, catalog: Any, chain_key: bytes) -> None:
        self.catalog = catalog
        self._key = chain_key
        self._queue: collections.deque[Event] = collections.deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._writing = 0
        self._thread: threading.Thread | None = None
        self.dropped = 0
        self.written = 0
        self._insert_sql: tuple[str, tuple[str, ...] | None] | None = None
        self.observers: list[Callable[[list[Event]], None]] = []  # told of each batch written (metrics)

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def accepting(self) -> bool:
        """Whether a request may be served: its record has room in the queue."""
        return len(self._queue) < MAX_QUEUE

    # -- the hot path -------------------------------------------------------------------------------

    def record(self, event: Event) -> None:
        if len(self._queue) >= MAX_QUEUE:  # only records of refused requests get here
            self.dropped += 1
            if self.dropped % 10_000 == 1:
                log.error("audit queue full (catalog unreachable?): requests are refused; %d refusal(s) not "
                          "recorded so far", self.dropped)
            return
        self._queue.append(event)
        if len(self._queue) >= MAX_BATCH:
            self._wake.set()

    # -- the writer ---------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="tessel-audit", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Write everything queued, then stop."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
        self._drain()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every record queued before this call is written (tests, CLI-in-process)."""
        deadline = time.monotonic() + timeout
        if self._thread is None:
            self._drain()
            return True
        self._wake.set()
        with self._idle:
            while self._queue or self._writing:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.05))
                self._wake.set()
        return True

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(FLUSH_SECONDS)
            self._wake.clear()
            try:
                self._drain()
            except Exception:  # the catalog is down: keep the records queued and try again
                log.exception("writing audit records failed; %d queued, retrying", len(self._queue))
                time.sleep(1.0)

    def _drain(self) -> None:
        while self._queue:
            batch: list[Event] = []
            with self._idle:
                self._writing += 1
            try:
                while self._queue and len(batch) < MAX_BATCH:
                    batch.append(self._queue.popleft())
                try:
                    self._write(batch)
                except BaseException:
                    self._queue.extendleft(reversed(batch))  # nothing written: keep order, retry later
                    raise
                for observe in self.observers:
                    try:
                        observe(batch)
                    except Exception:  # a broken observer must not stop the audit trail
                        log.exception("an audit observer failed")
            finally:
                with self._idle:
                    self._writing -= 1
                    self._idle.notify_all()

    def _write(self, batch: list[Event]) -> None:
        self._resolve_patients(batch)
        with self.catalog.write() as conn:
            head = conn.execute(sa.select(audit_head.c.seq, audit_head.c.hash)
                                .where(audit_head.c.id == 1).with_for_update()).first()
            assert head is not None, "the audit_head row is made by migration 0006"
            seq, previous = int(head.seq), str(head.hash)
            rows = []
            for event in batch:
                seq += 1
                row = row_of(event, seq)
                row["hash"] = previous = chain_hash(self._key, previous, row)
                rows.append(row)
            self._insert_rows(conn, rows)
            conn.execute(sa.update(audit_head).where(audit_head.c.id == 1).values(seq=seq, hash=previous))
        self.written += len(rows)

    def _insert_rows(self, conn: Any, rows: list[dict[str, Any]]) -> None:
        """INSERT the records through the driver: SQLAlchemy's per-row parameter processing cost as
        much as the insert itself, and every request makes a record. With positional parameters
        (SQLite) a few hundred rows go in one multi-row INSERT: executemany steps the statement once
        per row, releasing and taking back the GIL each time, and the event loop serving requests
        then waits for it behind this thread. Other drivers (psycopg) pipeline executemany."""
        sql, order = self._insert(conn)
        if order is None:
            conn.exec_driver_sql(sql, rows)
            return
        head, _, group = sql.partition(" VALUES ")
        for start in range(0, len(rows), ROWS_PER_INSERT):
            chunk = rows[start:start + ROWS_PER_INSERT]
            conn.exec_driver_sql(f"{head} VALUES {', '.join([group] * len(chunk))}",
                                 tuple(row[name] for row in chunk for name in order))

    def _insert(self, conn: Any) -> tuple[str, tuple[str, ...] | None]:
        """The INSERT of a record compiled for the catalog's dialect, and its positional order."""
        if self._insert_sql is None:
            statement = sa.insert(audit_records).values({c.name: sa.bindparam(c.name) for c in audit_records.c})
            compiled = statement.compile(dialect=conn.dialect)
            order = tuple(compiled.positiontup) if compiled.positiontup is not None else None
            self._insert_sql = (compiled.string, order)
        return self._insert_sql

    def _resolve_patients(self, batch: Iterable[Event]) -> None:
        """Patient IDs of the image sets and studies the records name (read here, off the hot path)."""
        by_set = {e.image_set_id for e in batch if e.image_set_id and not e.patient_id}
        by_study = {(e.datastore_id, e.study_uid) for e in batch
                    if e.study_uid and e.datastore_id and not e.image_set_id and not e.patient_id}
        if not by_set and not by_study:
            return
        found_sets: dict[str, str | None] = {}
        found_studies: dict[tuple[str, str], str | None] = {}
        with self.catalog.read() as conn:
            if by_set:
                found_sets = dict(conn.execute(sa.select(image_sets.c.id, image_sets.c.patient_id).where(
                    image_sets.c.id.in_(list(by_set)))).all())
            for datastore_id, study_uid in by_study:
                row = conn.execute(sa.select(dicom_studies.c.patient_id).where(
                    dicom_studies.c.datastore_id == datastore_id,
                    dicom_studies.c.study_instance_uid == study_uid)).first()
                if row is not None:
                    found_studies[(datastore_id, study_uid)] = row.patient_id
        for e in batch:
            if e.patient_id:
                continue
            if e.image_set_id:
                e.patient_id = found_sets.get(e.image_set_id)
            elif e.study_uid and e.datastore_id:
                e.patient_id = found_studies.get((e.datastore_id, e.study_uid))
