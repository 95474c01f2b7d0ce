"""Catalog SQL for editing image sets after import: update, revert, copy, delete.

Each function runs on the caller's connection, so a whole life-cycle step
(claim the next version, move rows, write the version row) is one transaction.
The Catalog class keeps the SQL that ingest shares; this module adds the rest.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tessel.catalog.models import ImageSetState, ImageSetWorkflowStatus
from tessel.catalog.sql.tables import frames, image_set_versions, image_sets, instances

_CHUNK = 500  # stays below SQLite's bound-parameter limit with room for the other conditions


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def frame_rows(conn: Connection, image_set_id: str, frame_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """frame_id -> frame row of this image set, for the given ids that it has."""
    ids = sorted(set(frame_ids))
    found: dict[str, dict[str, Any]] = {}
    for chunk in _chunks(ids):
        for row in conn.execute(sa.select(frames).where(frames.c.image_set_id == image_set_id,
                                                        frames.c.frame_id.in_(chunk))):
            found[row.frame_id] = dict(row._mapping)
    return found


def instance_rows(conn: Connection, image_set_id: str,
                  sops: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """sop_instance_uid -> instance row (all rows of the image set when sops is None)."""
    query = sa.select(instances).where(instances.c.image_set_id == image_set_id)
    if sops is None:
        return {r.sop_instance_uid: dict(r._mapping) for r in conn.execute(query)}
    found: dict[str, dict[str, Any]] = {}
    for chunk in _chunks(sorted(set(sops))):
        for row in conn.execute(query.where(instances.c.sop_instance_uid.in_(chunk))):
            found[row.sop_instance_uid] = dict(row._mapping)
    return found


def frames_of_instances(conn: Connection, image_set_id: str,
                        sops: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """sop_instance_uid -> its frame rows in frame order."""
    found: dict[str, list[dict[str, Any]]] = {}
    for chunk in _chunks(sorted(set(sops))):
        rows = conn.execute(sa.select(frames).where(frames.c.image_set_id == image_set_id,
                                                    frames.c.sop_instance_uid.in_(chunk))
                            .order_by(frames.c.sop_instance_uid, frames.c.frame_number))
        for row in rows:
            found.setdefault(row.sop_instance_uid, []).append(dict(row._mapping))
    return found


def set_study_instance_uid(conn: Connection, image_set_id: str, study_instance_uid: str) -> None:
    conn.execute(sa.update(instances).where(instances.c.image_set_id == image_set_id)
                 .values(study_instance_uid=study_instance_uid))


def remove_all_rows(conn: Connection, image_set_id: str) -> None:
    """Drop every instance and frame row, so DICOMweb and frame lookups no longer see the image set."""
    conn.execute(sa.delete(frames).where(frames.c.image_set_id == image_set_id))
    conn.execute(sa.delete(instances).where(instances.c.image_set_id == image_set_id))


def mark_deleted(conn: Connection, image_set_id: str, expected_version: int, now: float) -> bool:
    """Move a live image set to DELETED; False if it changed (or was deleted) meanwhile.

    Every version row turns DELETED with the same deletedAt; the latest one also
    records the DELETED workflow status, the others keep the step that made them.
    """
    result = conn.execute(sa.update(image_sets).where(
        image_sets.c.id == image_set_id, image_sets.c.latest_version == expected_version,
        image_sets.c.state != ImageSetState.DELETED.value,
    ).values(state=ImageSetState.DELETED.value, workflow_status=ImageSetWorkflowStatus.DELETED.value,
             message=None, deleted_at=now, updated_at=now, locked_at=None))
    if result.rowcount != 1:
        return False
    conn.execute(sa.update(image_set_versions).where(image_set_versions.c.image_set_id == image_set_id)
                 .values(state=ImageSetState.DELETED.value, deleted_at=now))
    conn.execute(sa.update(image_set_versions).where(
        image_set_versions.c.image_set_id == image_set_id,
        image_set_versions.c.version_id == expected_version,
    ).values(workflow_status=ImageSetWorkflowStatus.DELETED.value, updated_at=now))
    return True


def metadata_keys(conn: Connection, image_set_id: str) -> list[str]:
    return [r.metadata_key for r in conn.execute(
        sa.select(image_set_versions.c.metadata_key).where(image_set_versions.c.image_set_id == image_set_id))]


def frame_ids(conn: Connection, image_set_id: str) -> list[str]:
    return [r.frame_id for r in conn.execute(sa.select(frames.c.frame_id).where(frames.c.image_set_id == image_set_id))]


def lock(conn: Connection, image_set_id: str, expected_version: int, workflow: ImageSetWorkflowStatus,
         now: float) -> bool:
    """ACTIVE at expected_version -> LOCKED with `workflow`; False if it is not (any more)."""
    result = conn.execute(sa.update(image_sets).where(
        image_sets.c.id == image_set_id, image_sets.c.latest_version == expected_version,
        image_sets.c.state == ImageSetState.ACTIVE.value,
    ).values(state=ImageSetState.LOCKED.value, workflow_status=workflow.value, message=None, locked_at=now))
    return bool(result.rowcount == 1)


def unlock(conn: Connection, image_set_id: str, workflow: ImageSetWorkflowStatus, message: str | None) -> None:
    """LOCKED -> ACTIVE with `workflow` (a commit that advanced the version unlocked it already)."""
    conn.execute(sa.update(image_sets).where(
        image_sets.c.id == image_set_id, image_sets.c.state == ImageSetState.LOCKED.value,
    ).values(state=ImageSetState.ACTIVE.value, workflow_status=workflow.value, message=message, locked_at=None))


def locked_image_sets(conn: Connection, locked_before: float) -> list[tuple[str, str]]:
    """(datastore id, image set id) of image sets LOCKED since before `locked_before`."""
    return [(r.datastore_id, r.id) for r in conn.execute(
        sa.select(image_sets.c.datastore_id, image_sets.c.id).where(
            image_sets.c.locked_at < locked_before, image_sets.c.state == ImageSetState.LOCKED.value))]
