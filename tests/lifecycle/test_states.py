"""AHI's state transitions, observed from another connection while each write is under way:
LOCKED/UPDATING -> ACTIVE/UPDATED, LOCKED/COPYING(_WITH_READ_ONLY_ACCESS) -> ACTIVE/COPIED,
failures -> ACTIVE/*_FAILED with a message, locks left by a stopped process released,
datastores CREATING -> ACTIVE (or CREATE_FAILED) and DELETING -> DELETED."""

from __future__ import annotations

import threading
from typing import Any, Callable

import pytest
import sqlalchemy as sa

from tessel import lifecycle, retrieve
from tessel.blobs import keys
from tessel.catalog import edits
from tessel.catalog.sql.tables import slide_bookmarks
from tessel.catalog.models import (DatastoreStatus, ImageSet, ImageSetState, ImageSetWorkflowStatus,
                                   JobStatus)
from tessel.errors import Conflict, NotFound
from tessel.ingest.jobs import start_import_job
from tessel.lifecycle import datastores, imagesets, versions
from tessel.lifecycle.datastores import create_datastore, datastore_arn, delete_datastore, get_datastore
from tessel.lifecycle.imagesets import copy_image_set, delete_image_set, update_image_set_metadata
from tessel.stores import Stores
from tests.lifecycle import make_image_set, uid

UPDATE = {"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyDescription": "NEW"}}}


@pytest.fixture
def ds(stores: Stores) -> str:
    return create_datastore(stores, "t").id


@pytest.fixture
def image_set(stores: Stores, ds: str) -> str:
    return make_image_set(stores, ds, study=uid("study"), series=uid("series"), count=2)


def paused_in_commit(monkeypatch: pytest.MonkeyPatch, action: Callable[[], Any]) -> tuple[threading.Event,
                                                                                          threading.Thread]:
    """Run `action` in a thread that stops at its commit step until the returned event is set."""
    reached, release = threading.Event(), threading.Event()
    real = versions.commit

    def slow_commit(*args: Any, **kwargs: Any) -> None:
        reached.set()
        assert release.wait(30)
        real(*args, **kwargs)

    monkeypatch.setattr(imagesets, "commit", slow_commit)
    thread = threading.Thread(target=action)
    thread.start()
    assert reached.wait(30)
    return release, thread


def state(stores: Stores, ds: str, image_set_id: str) -> tuple[ImageSetState, ImageSetWorkflowStatus]:
    found = retrieve.get_image_set(stores, ds, image_set_id)
    return found.state, found.workflow_status


def test_an_update_is_locked_updating_until_it_commits_and_other_writes_meanwhile_conflict(
        stores: Stores, ds: str, image_set: str, monkeypatch: pytest.MonkeyPatch) -> None:
    release, thread = paused_in_commit(monkeypatch, lambda: update_image_set_metadata(
        stores, ds, image_set, latest_version_id=1, updatable=UPDATE))
    try:
        assert state(stores, ds, image_set) == (ImageSetState.LOCKED, ImageSetWorkflowStatus.UPDATING)
        for write in (lambda: update_image_set_metadata(stores, ds, image_set, latest_version_id=1,
                                                        updatable=UPDATE),
                      lambda: copy_image_set(stores, ds, image_set, source_latest_version=1),
                      lambda: delete_image_set(stores, ds, image_set)):
            with pytest.raises(Conflict, match="is locked by another write operation"):
                write()
        assert retrieve.get_metadata(stores, ds, image_set)["Study"]["DICOM"]["StudyDescription"] == "CHEST"
    finally:
        release.set()
        thread.join()
    final = retrieve.get_image_set(stores, ds, image_set)
    assert (final.state, final.workflow_status, final.latest_version, final.locked_at) == (
        ImageSetState.ACTIVE, ImageSetWorkflowStatus.UPDATED, 2, None)


def test_a_copy_locks_the_source_read_only_and_the_destination_copying(
        stores: Stores, ds: str, image_set: str, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = retrieve.get_metadata(stores, ds, image_set)
    (series_uid, series), = doc["Study"]["Series"].items()
    first, second = ({"SchemaVersion": "1.1", "Study": {"Series": {series_uid: {"Instances": {sop: {}}}}}}
                     for sop in series["Instances"])
    _, destination = copy_image_set(stores, ds, image_set, source_latest_version=1, copiable=first)
    release, thread = paused_in_commit(monkeypatch, lambda: copy_image_set(
        stores, ds, image_set, source_latest_version=1, copiable=second, destination_image_set_id=destination.id,
        destination_latest_version=1))
    try:
        assert state(stores, ds, image_set) == (ImageSetState.LOCKED,
                                                ImageSetWorkflowStatus.COPYING_WITH_READ_ONLY_ACCESS)
        assert state(stores, ds, destination.id) == (ImageSetState.LOCKED, ImageSetWorkflowStatus.COPYING)
        assert retrieve.get_metadata(stores, ds, image_set)  # the source stays readable
    finally:
        release.set()
        thread.join()
    assert state(stores, ds, image_set) == (ImageSetState.ACTIVE, ImageSetWorkflowStatus.COPIED)
    assert state(stores, ds, destination.id) == (ImageSetState.ACTIVE, ImageSetWorkflowStatus.COPIED)
    assert retrieve.get_image_set(stores, ds, destination.id).number_of_instances == 2


def test_a_failed_update_returns_to_active_update_failed_with_the_reason(
        stores: Stores, ds: str, image_set: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError("no space left on device")

    monkeypatch.setattr(imagesets, "commit", broken)
    with pytest.raises(OSError):
        update_image_set_metadata(stores, ds, image_set, latest_version_id=1, updatable=UPDATE)
    after = retrieve.get_image_set(stores, ds, image_set)
    assert (after.state, after.workflow_status, after.latest_version) == (
        ImageSetState.ACTIVE, ImageSetWorkflowStatus.UPDATE_FAILED, 1)
    assert after.message == "the update did not complete: OSError: no space left on device"
    monkeypatch.undo()
    done = update_image_set_metadata(stores, ds, image_set, latest_version_id=1, updatable=UPDATE)
    assert (done.workflow_status, done.message, done.latest_version) == (ImageSetWorkflowStatus.UPDATED, None, 2)


def lock(stores: Stores, image_set: ImageSet, workflow: ImageSetWorkflowStatus, at: float) -> None:
    """What a process that died between locking and committing leaves behind."""
    with stores.catalog.write() as conn:
        assert edits.lock(conn, image_set.id, image_set.latest_version, workflow, at)


def test_locks_left_by_a_stopped_process_are_released(stores: Stores, ds: str, image_set: str) -> None:
    copy = make_image_set(stores, ds, study=uid("study2"), series=uid("series2"), count=1)
    doomed = make_image_set(stores, ds, study=uid("study3"), series=uid("series3"), count=1)
    now = retrieve.get_image_set(stores, ds, image_set).updated_at
    lock(stores, retrieve.get_image_set(stores, ds, image_set), ImageSetWorkflowStatus.UPDATING, now - 3600)
    lock(stores, retrieve.get_image_set(stores, ds, copy), ImageSetWorkflowStatus.COPYING, now + 3600)
    lock(stores, retrieve.get_image_set(stores, ds, doomed), ImageSetWorkflowStatus.DELETING, now - 3600)
    lifecycle.maintain(stores)
    after = retrieve.get_image_set(stores, ds, image_set)
    assert (after.state, after.workflow_status, after.latest_version) == (
        ImageSetState.ACTIVE, ImageSetWorkflowStatus.UPDATE_FAILED, 1)
    assert after.message == "the server stopped before the operation completed; nothing was changed"
    # a fresh lock belongs to a write still under way
    assert state(stores, ds, copy) == (ImageSetState.LOCKED, ImageSetWorkflowStatus.COPYING)
    # an interrupted delete is finished
    assert state(stores, ds, doomed) == (ImageSetState.DELETED, ImageSetWorkflowStatus.DELETED)


# -- datastores -------------------------------------------------------------------------------


def test_a_datastore_is_creating_until_its_storage_is_ready(stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    real_put = stores.blobs.put

    def observing_put(key: str, data: bytes) -> None:
        seen.append([d.status for d in stores.catalog.list_datastores(status="CREATING")])
        real_put(key, data)

    monkeypatch.setattr(stores.blobs, "put", observing_put)
    ds = create_datastore(stores, "new")
    assert seen == [[DatastoreStatus.CREATING]] and ds.status == DatastoreStatus.ACTIVE
    assert stores.blobs.exists(datastores.marker_key(ds.id))


def test_a_datastore_whose_storage_refuses_writes_is_create_failed(stores: Stores,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def refusing(key: str, data: bytes) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(stores.blobs, "put", refusing)
    ds = create_datastore(stores, "unwritable")
    assert ds.status == DatastoreStatus.CREATE_FAILED
    monkeypatch.undo()
    with pytest.raises(Conflict, match="CREATE_FAILED, not ACTIVE"):
        start_import_job(stores, ds.id, "file:///tmp/in/", "file:///tmp/out/")


def test_deleting_a_datastore_removes_every_blob_tag_and_bookmark_it_had(stores: Stores, ds: str,
                                                                        image_set: str) -> None:
    arn = datastore_arn(stores.settings, ds)
    other = create_datastore(stores, "other").id
    with stores.catalog.write() as conn:
        stores.catalog.set_tags(conn, arn, {"team": "x"})
        stores.catalog.set_tags(conn, f"{arn}/imageset/{image_set}", {"purpose": "y"})
        for n, datastore in enumerate((ds, other)):
            conn.execute(sa.insert(slide_bookmarks).values(
                id=f"{n:032x}", datastore_id=datastore, study_instance_uid="1.2", series_instance_uid="1.2.3",
                sop_instance_uid="1.2.3.4", level=0, x=0, y=0, width=10, height=10, name="tumour margin",
                note="see report", created_by="TSLA", created_at=0.0, updated_at=0.0))
    delete_image_set(stores, ds, image_set)
    assert list(stores.blobs.list(keys.datastore_prefix(ds)))  # frames wait for their grace period
    deleted = delete_datastore(stores, ds)
    assert deleted.status == DatastoreStatus.DELETED
    assert list(stores.blobs.list(keys.datastore_prefix(ds))) == []
    assert stores.catalog.get_tags(arn) == {} and stores.catalog.get_tags(f"{arn}/imageset/{image_set}") == {}
    with stores.catalog.read() as conn:
        left = conn.execute(sa.select(slide_bookmarks.c.datastore_id)).scalars().all()
    assert left == [other]  # the other datastore's bookmark stays
    with pytest.raises(NotFound):
        get_datastore(stores, ds)


def test_a_datastore_running_an_import_cannot_be_deleted(stores: Stores, ds: str) -> None:
    job = start_import_job(stores, ds, "file:///tmp/in/", "file:///tmp/out/")
    with pytest.raises(Conflict, match=f"running import job {job.id}"):
        delete_datastore(stores, ds)
    stores.catalog.set_job_status(job.id, JobStatus.FAILED)
    assert delete_datastore(stores, ds).status == DatastoreStatus.DELETED


def test_an_interrupted_datastore_deletion_is_finished(stores: Stores, ds: str) -> None:
    with stores.catalog.write() as conn:
        stores.catalog.set_datastore_status(conn, ds, DatastoreStatus.DELETING, 0.0)
    assert get_datastore(stores, ds).status == DatastoreStatus.DELETING
    lifecycle.maintain(stores)
    assert list(stores.blobs.list(keys.datastore_prefix(ds))) == []
    with pytest.raises(NotFound):
        get_datastore(stores, ds)
