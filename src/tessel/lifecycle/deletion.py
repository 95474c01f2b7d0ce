"""Deleting the frames of deleted image sets from the blob store.

DeleteImageSet drops an image set's frame rows and queues its frame ids in
`frame_deletions`, in the transaction that marks it DELETED. `purge_frames` then
deletes each queued frame's blob unless some image set still holds it (copies
share frames), and forgets it.

A frame id is a hash of the instance and its pixels, so storing the same instance
again (an import, STOW-RS, C-STORE) writes or reuses the very same blob before its
catalog rows exist. Purging waits for that: a frame is purged only `grace` seconds
after its deletion was asked for, and never while its datastore has an import job
running or C-STORE instances waiting to be committed.
"""

from __future__ import annotations

import time
from typing import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tessel.blobs import keys
from tessel.catalog.models import JobStatus
from tessel.catalog.sql.tables import dimse_staged, frame_deletions, frames, import_jobs
from tessel.stores import Stores

GRACE = 60.0  # seconds between DeleteImageSet and the deletion of its frames
_CHUNK = 500


def schedule(conn: Connection, datastore_id: str, frame_ids: Iterable[str], now: float) -> None:
    """Queue frames for deletion (inside the transaction that dropped their rows)."""
    ids = sorted(set(frame_ids))
    for i in range(0, len(ids), _CHUNK):
        chunk = ids[i:i + _CHUNK]
        conn.execute(sa.delete(frame_deletions).where(frame_deletions.c.datastore_id == datastore_id,
                                                      frame_deletions.c.frame_id.in_(chunk)))
        conn.execute(sa.insert(frame_deletions), [{"datastore_id": datastore_id, "frame_id": f,
                                                    "requested_at": now} for f in chunk])


def purge_frames(stores: Stores, *, grace: float = GRACE, batch: int = 2000) -> int:
    """Delete queued frames that no image set holds; returns how many blobs were deleted."""
    cutoff = time.time() - grace
    with stores.catalog.read() as conn:
        queued = [(r.datastore_id, r.frame_id) for r in conn.execute(
            sa.select(frame_deletions.c.datastore_id, frame_deletions.c.frame_id)
            .where(frame_deletions.c.requested_at <= cutoff)
            .order_by(frame_deletions.c.requested_at).limit(batch))]
        busy = {ds for ds in {ds for ds, _ in queued} if _storing(conn, ds)}
        ready = [(ds, f) for ds, f in queued if ds not in busy]
        held = _held(conn, [f for _, f in ready])
    deleted = 0
    for datastore_id, frame_id in ready:
        if frame_id not in held:
            stores.blobs.delete(keys.frame(datastore_id, frame_id))
            deleted += 1
    if ready:  # forgotten only once the blobs are gone, so a crash in between just repeats the deletes
        with stores.catalog.write() as conn:
            for datastore_id in {ds for ds, _ in ready}:
                ids = [f for ds, f in ready if ds == datastore_id]
                for i in range(0, len(ids), _CHUNK):
                    conn.execute(sa.delete(frame_deletions).where(
                        frame_deletions.c.datastore_id == datastore_id, frame_deletions.c.requested_at <= cutoff,
                        frame_deletions.c.frame_id.in_(ids[i:i + _CHUNK])))
    return deleted


def _storing(conn: Connection, datastore_id: str) -> bool:
    """Whether instances may be on their way into the datastore (staged, not yet committed)."""
    job = conn.execute(sa.select(import_jobs.c.id).where(
        import_jobs.c.datastore_id == datastore_id,
        import_jobs.c.status.in_([JobStatus.SUBMITTED.value, JobStatus.IN_PROGRESS.value])).limit(1)).first()
    if job is not None:
        return True
    return conn.execute(sa.select(dimse_staged.c.id).where(
        dimse_staged.c.datastore_id == datastore_id).limit(1)).first() is not None


def _held(conn: Connection, frame_ids: list[str]) -> set[str]:
    held: set[str] = set()
    for i in range(0, len(frame_ids), _CHUNK):
        held.update(r.frame_id for r in conn.execute(
            sa.select(frames.c.frame_id).where(frames.c.frame_id.in_(frame_ids[i:i + _CHUNK])).distinct()))
    return held
