"""DeleteImageSet: state, rows, documents, idempotence, and what still answers afterwards."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from tessel import retrieve
from tessel.blobs import keys
from tessel.catalog import edits
from tessel.catalog.models import ImageSetState, ImageSetWorkflowStatus, JobStatus
from tessel.catalog.search import SearchCriteria, search_image_sets
from tessel.catalog.sql.tables import frames, instances
from tessel.errors import Conflict, NotFound
from tessel.lifecycle import deletion
from tessel.lifecycle.datastores import create_datastore, delete_datastore
from tessel.lifecycle.imagesets import (copy_image_set, delete_image_set, get_image_set_version,
                                        list_image_set_versions, update_image_set_metadata)
from tessel.ingest.jobs import start_import_job
from tessel.stores import Stores
from tests.lifecycle import document, make_image_set, uid


@pytest.fixture
def ds(stores: Stores) -> str:
    return create_datastore(stores, "t").id


@pytest.fixture
def image_set(stores: Stores, ds: str) -> str:
    image_set_id = make_image_set(stores, ds, study=uid("study"), series=uid("series"), count=2)
    update_image_set_metadata(stores, ds, image_set_id, latest_version_id=1, updatable={
        "SchemaVersion": 1.1, "Study": {"DICOM": {"StudyDescription": "HEAD"}}})
    return image_set_id


def count_rows(stores: Stores, image_set_id: str) -> tuple[int, int]:
    with stores.catalog.read() as conn:
        return (conn.execute(sa.select(sa.func.count()).select_from(instances)
                             .where(instances.c.image_set_id == image_set_id)).scalar_one(),
                conn.execute(sa.select(sa.func.count()).select_from(frames)
                             .where(frames.c.image_set_id == image_set_id)).scalar_one())


def test_delete_marks_the_image_set_and_every_version_deleted(stores: Stores, ds: str, image_set: str) -> None:
    result = delete_image_set(stores, ds, image_set)
    assert (result.state, result.workflow_status) == (ImageSetState.DELETED, ImageSetWorkflowStatus.DELETED)
    assert result.deleted_at is not None and result.latest_version == 2
    versions = list_image_set_versions(stores, ds, image_set, limit=10, before_version=None)
    assert [(v.version_id, v.state, v.workflow_status) for v in versions] == [
        (2, ImageSetState.DELETED, ImageSetWorkflowStatus.DELETED),
        (1, ImageSetState.DELETED, ImageSetWorkflowStatus.CREATED)]
    assert {v.deleted_at for v in versions} == {result.deleted_at}
    image_set_row, version = get_image_set_version(stores, ds, image_set, None)
    assert (image_set_row.state, version.version_id) == (ImageSetState.DELETED, 2)


def test_delete_removes_rows_and_documents_so_nothing_serves_it(stores: Stores, ds: str, image_set: str) -> None:
    doc = document(stores, ds, image_set)
    frame_id = next(iter(next(iter(doc["Study"]["Series"].values()))["Instances"].values()))["ImageFrames"][0]["ID"]
    delete_image_set(stores, ds, image_set)
    assert count_rows(stores, image_set) == (0, 0)
    with pytest.raises(NotFound):
        retrieve.get_metadata(stores, ds, image_set)
    with pytest.raises(NotFound):
        retrieve.get_image_frame(stores, ds, image_set, frame_id)
    assert not stores.blobs.exists(keys.metadata(ds, image_set, 1))
    assert not stores.blobs.exists(keys.metadata(ds, image_set, 2))
    assert stores.blobs.exists(keys.frame(ds, frame_id))  # frames go after a grace period ...
    assert deletion.purge_frames(stores) == 0
    assert deletion.purge_frames(stores, grace=0) == 2  # ... once nothing holds them
    assert not stores.blobs.exists(keys.frame(ds, frame_id))
    page = search_image_sets(stores.catalog, ds, SearchCriteria(), limit=50, cursor=None)
    assert image_set not in [s.id for s in page.image_sets]


def test_delete_is_idempotent_and_the_image_set_then_refuses_writes(stores: Stores, ds: str, image_set: str) -> None:
    first = delete_image_set(stores, ds, image_set)
    assert delete_image_set(stores, ds, image_set) == first
    with pytest.raises(Conflict, match="deleted"):
        update_image_set_metadata(stores, ds, image_set, latest_version_id=2, revert_to_version_id=1)
    with pytest.raises(NotFound):
        delete_image_set(stores, ds, "0" * 32)


def test_deleting_a_copy_keeps_the_shared_frames_of_the_source(stores: Stores, ds: str, image_set: str) -> None:
    _, copy = copy_image_set(stores, ds, image_set, source_latest_version=2)
    delete_image_set(stores, ds, copy.id)
    assert deletion.purge_frames(stores, grace=0) == 0  # the source holds every frame of the copy
    assert count_rows(stores, image_set) == (2, 2)
    doc = document(stores, ds, image_set)
    for series in doc["Study"]["Series"].values():
        for node in series["Instances"].values():
            assert retrieve.get_image_frame(stores, ds, image_set, node["ImageFrames"][0]["ID"]).data


def test_a_datastore_can_be_deleted_once_its_image_sets_are(stores: Stores, ds: str, image_set: str) -> None:
    with pytest.raises(Conflict):
        delete_datastore(stores, ds)
    delete_image_set(stores, ds, image_set)
    delete_datastore(stores, ds)


def test_frames_wait_while_instances_may_be_arriving(stores: Stores, ds: str, image_set: str) -> None:
    doc = document(stores, ds, image_set)
    frame_ids = [node["ImageFrames"][0]["ID"] for series in doc["Study"]["Series"].values()
                 for node in series["Instances"].values()]
    job = start_import_job(stores, ds, (stores.settings.data_dir / "in").as_uri(), (stores.settings.data_dir / "out").as_uri())
    delete_image_set(stores, ds, image_set)
    # An import of the same instances would reuse these very frames before committing its rows.
    assert deletion.purge_frames(stores, grace=0) == 0
    assert all(stores.blobs.exists(keys.frame(ds, f)) for f in frame_ids)
    stores.catalog.set_job_status(job.id, JobStatus.COMPLETED)
    assert deletion.purge_frames(stores, grace=0) == 2
    assert not any(stores.blobs.exists(keys.frame(ds, f)) for f in frame_ids)


def test_a_delete_in_progress_shows_locked_deleting(stores: Stores, ds: str, image_set: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    real = edits.mark_deleted

    def observing(conn: Any, *args: Any) -> bool:
        seen.append(retrieve.get_image_set(stores, ds, image_set))  # another connection's view
        return real(conn, *args)

    monkeypatch.setattr(edits, "mark_deleted", observing)
    delete_image_set(stores, ds, image_set)
    assert [(s.state, s.workflow_status) for s in seen] == [(ImageSetState.LOCKED, ImageSetWorkflowStatus.DELETING)]
    final = retrieve.get_image_set(stores, ds, image_set)
    assert (final.state, final.workflow_status, final.locked_at) == (
        ImageSetState.DELETED, ImageSetWorkflowStatus.DELETED, None)


def test_a_failed_delete_returns_to_active_with_the_reason(stores: Stores, ds: str, image_set: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(*args: Any) -> None:
        raise OSError("disk unplugged")

    monkeypatch.setattr(deletion, "schedule", failing)
    with pytest.raises(OSError):
        delete_image_set(stores, ds, image_set)
    after = retrieve.get_image_set(stores, ds, image_set)
    assert (after.state, after.latest_version) == (ImageSetState.ACTIVE, 2)
    assert after.message is not None and "disk unplugged" in after.message
    assert count_rows(stores, image_set) == (2, 2)
