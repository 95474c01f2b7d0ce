"""C-STORE: stage each instance, queue it durably, commit queued instances in batches.

Why not one `store_instances` call per C-STORE: each call makes a new image-set version (a
full metadata document), so a 300-slice series sent one instance per request would make
300 versions. And a C-STORE SCU waits for each response before it sends the next instance,
so holding responses back to batch them would batch nothing.

So the write is split where the import jobs split it (ingest.jobs: staged rows, then
assembly), and the response waits only for the part that makes the instance durable:

1. stage (the association's thread): parse, check, transcode and write the frame and bulk
   blobs (fsync'd) -- a bad instance fails here and is answered with its reason;
2. queue: one small catalog transaction inserts the staged record into `dimse_staged`;
   once it commits, the instance survives a crash and the C-STORE is answered Success;
3. commit (one committer thread): queued records of a datastore are assembled into image-set
   versions together once the queue is idle for IDLE_SECONDS, MAX_AGE_SECONDS after the
   first, at MAX_BATCH, when the association is released (before the A-RELEASE-RP, so the
   sender sees its instances once it is done), or when a C-FIND/C-GET/C-MOVE or a storage
   commitment request needs them. Rows are deleted after the commit; a crash in between
   replays them at the next start, which changes nothing (identical instances are no-ops).

A series sent on one association thus becomes one version, not one per instance.
"""

from __future__ import annotations

import gzip
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from tessel.catalog.sql.tables import dimse_staged
from tessel.dimse.status import IdentifierMismatch
from tessel.errors import NotFound
from tessel.ingest.assemble import assemble
from tessel.ingest.staging import StagingOptions, stage_bytes
from tessel.lifecycle.datastores import get_datastore, lossless_syntax
from tessel.stores import Stores

log = logging.getLogger("tessel.dimse")

IDLE_SECONDS = 0.5
MAX_AGE_SECONDS = 10.0
MAX_BATCH = 1000
RETRY_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class Stored:
    """A queued (durable) instance."""

    sop_class_uid: str | None
    sop_instance_uid: str | None
    warnings: tuple[dict[str, Any], ...]
    study_instance_uid: str | None = None  # for the audit trail
    series_instance_uid: str | None = None


@dataclass(slots=True)
class _Queue:
    """One datastore's queue, as the committer sees it (rows are the truth; this is a summary)."""

    last_id: int = 0  # highest queued row id
    committed_id: int = 0  # every row up to here is committed (or was never ours)
    first_at: float | None = None  # monotonic time the oldest uncommitted row was queued
    last_at: float = 0.0
    count: int = 0
    urgent: bool = False
    failing_since: float | None = None

    @property
    def outstanding(self) -> bool:
        return self.last_id > self.committed_id


class StoreQueue:
    """Stages C-STORE instances and commits them in batches on one committer thread."""

    def __init__(self, stores: Stores, *, idle: float = IDLE_SECONDS, max_age: float = MAX_AGE_SECONDS,
                 max_batch: int = MAX_BATCH) -> None:
        self.stores = stores
        self.idle, self.max_age, self.max_batch = idle, max_age, max_batch
        self._cond = threading.Condition()
        self._queues: dict[str, _Queue] = {}
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Pick up rows a previous run queued but did not commit, then start the committer."""
        with self.stores.catalog.read() as conn:
            rows = conn.execute(sa.select(dimse_staged.c.datastore_id, sa.func.max(dimse_staged.c.id),
                                          sa.func.count()).group_by(dimse_staged.c.datastore_id)).all()
        with self._cond:
            for datastore_id, last_id, count in rows:
                q = self._queues.setdefault(datastore_id, _Queue())
                q.last_id, q.count, q.urgent = max(q.last_id, int(last_id)), int(count), True
                q.first_at = q.first_at or time.monotonic()
            self._stopping = False
        if rows:
            log.info("committing %d DIMSE instance(s) queued before the last stop", sum(r[2] for r in rows))
        self._thread = threading.Thread(target=self._run, name="tessel-dimse-commit", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Commit what is queued (one attempt each), then end the committer."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    # -- the association side -----------------------------------------------------------------

    def store(self, datastore_id: str, data: bytes, calling_ae_title: str, *,
              expect_sop_instance_uid: str | None = None) -> Stored:
        """Stage one Part 10 instance and queue it durably; raises InvalidInput saying why not."""
        ds = get_datastore(self.stores, datastore_id)
        options = StagingOptions(datastore_id=ds.id, lossless_format=lossless_syntax(ds.lossless_storage_format))
        staged = stage_bytes(data, self.stores.blobs, options)
        if expect_sop_instance_uid is not None and staged["sop_instance_uid"] != expect_sop_instance_uid:
            # Its blobs stay behind as unreferenced, content-addressed objects for the orphan sweep.
            raise IdentifierMismatch(f"the data set's SOP Instance UID {staged['sop_instance_uid']} is not "
                                     "the request's Affected SOP Instance UID")
        record = gzip.compress(json.dumps(staged).encode(), 1)
        with self.stores.catalog.write() as conn:
            result = conn.execute(sa.insert(dimse_staged).values(
                datastore_id=ds.id, sop_instance_uid=str(staged["sop_instance_uid"] or "")[:64],
                calling_ae_title=calling_ae_title[:16], received_at=time.time(), record=record))
            row_id = int(result.inserted_primary_key[0])
        now = time.monotonic()
        with self._cond:
            q = self._queues.setdefault(ds.id, _Queue())
            q.last_id = max(q.last_id, row_id)
            q.count += 1
            q.last_at = now
            if q.first_at is None:
                q.first_at = now
            self._cond.notify_all()
        return Stored(staged["sop_class_uid"], staged["sop_instance_uid"], tuple(staged["warnings"]),
                      staged["study_instance_uid"], staged["series_instance_uid"])

    def flush(self, datastore_id: str | None = None, timeout: float = 60.0) -> bool:
        """Commit everything queued so far (for one datastore or all); False if not done in time."""
        deadline = time.monotonic() + timeout
        with self._cond:
            targets = {ds: q.last_id for ds, q in self._queues.items()
                       if (datastore_id is None or ds == datastore_id) and q.outstanding}
            if not targets:
                return True
            for ds in targets:
                self._queues[ds].urgent = True
            self._cond.notify_all()
            while any(self._queues[ds].committed_id < target for ds, target in targets.items()):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._thread is None:
                    return False
                self._cond.wait(remaining)
            return True

    def pending(self, datastore_id: str | None = None) -> int:
        """Instances queued but not yet committed."""
        with self._cond:
            return sum(q.count for ds, q in self._queues.items()
                       if (datastore_id is None or ds == datastore_id) and q.outstanding)

    def request_commit(self, datastore_id: str) -> None:
        """Commit soon without waiting (an association ended)."""
        with self._cond:
            q = self._queues.get(datastore_id)
            if q is not None and q.outstanding:
                q.urgent = True
                self._cond.notify_all()

    # -- the committer ------------------------------------------------------------------------

    def _due(self, now: float) -> tuple[list[str], float | None]:
        """Datastores to commit now, and how long to sleep otherwise."""
        due: list[str] = []
        wake: float | None = None
        for ds, q in self._queues.items():
            if not q.outstanding:
                continue
            if q.failing_since is not None and not self._stopping:
                ready_at = q.failing_since + RETRY_SECONDS
            elif self._stopping or q.urgent or q.count >= self.max_batch:
                ready_at = now
            else:
                ready_at = min(q.last_at + self.idle, (q.first_at or now) + self.max_age)
            if ready_at <= now:
                due.append(ds)
            else:
                wake = ready_at - now if wake is None else min(wake, ready_at - now)
        return due, wake

    def _run(self) -> None:
        attempted_at_stop: set[str] = set()
        while True:
            with self._cond:
                due, wake = self._due(time.monotonic())
                if self._stopping:
                    due = [ds for ds in due if ds not in attempted_at_stop]
                    if not due:
                        return
                    attempted_at_stop.update(due)
                elif not due:
                    self._cond.wait(wake if wake is not None else 5.0)
                    continue
            for ds in due:
                self._commit(ds)

    def _commit(self, datastore_id: str) -> None:
        catalog = self.stores.catalog
        with self._cond:
            # Every row up to seen_last committed before we read (store() bumps last_id after
            # its insert commits), so the read below sees all of them.
            seen_last = self._queues[datastore_id].last_id
        try:
            with catalog.read() as conn:
                rows = conn.execute(sa.select(dimse_staged.c.id, dimse_staged.c.record)
                                    .where(dimse_staged.c.datastore_id == datastore_id)
                                    .order_by(dimse_staged.c.id).limit(self.max_batch)).all()
            if rows:
                staged = [json.loads(gzip.decompress(r.record)) for r in rows]
                try:
                    assemble(catalog, self.stores.blobs, datastore_id, staged)
                except NotFound:
                    if catalog.get_datastore(datastore_id) is not None:
                        raise
                    log.warning("datastore %s no longer exists: dropping %d queued DIMSE instance(s)",
                                datastore_id, len(rows))
                ids = [r.id for r in rows]
                with catalog.write() as conn:
                    for start in range(0, len(ids), 500):
                        conn.execute(sa.delete(dimse_staged).where(dimse_staged.c.id.in_(ids[start:start + 500])))
        except Exception:  # keep the rows; they are durable and retried (and replayed at start)
            with self._cond:
                q = self._queues[datastore_id]
                first = q.failing_since is None
                q.failing_since = time.monotonic()
            if first:
                log.exception("committing queued DIMSE instances of datastore %s failed; retrying",
                              datastore_id)
            return
        full = len(rows) >= self.max_batch
        upto = rows[-1].id if full else max(seen_last, rows[-1].id if rows else 0)
        with self._cond:
            q = self._queues[datastore_id]
            q.failing_since = None
            q.committed_id = max(q.committed_id, upto)
            q.count = max(0, q.count - len(rows))
            if not q.outstanding:
                q.first_at, q.urgent, q.count = None, False, 0
            self._cond.notify_all()
        if rows:
            log.debug("committed %d DIMSE instance(s) into datastore %s", len(rows), datastore_id)
