"""Image-set life cycle after import: UpdateImageSetMetadata, CopyImageSet, DeleteImageSet,
ListImageSetVersions and GetImageSet (spec sections 1 and 5).

Versions are immutable. Every write goes through AHI's states in three steps:
1. plan from a consistent read (new documents, checks): a refused request changes nothing;
2. LOCK the image sets it writes, with the "-ING" workflow status (UPDATING, COPYING, ...),
   conditionally on the version the plan was made from (optimistic concurrency: a stale
   latestVersion, or a LOCKED image set, is a Conflict that says which);
3. commit: claim latest_version + 1 with a conditional UPDATE, write the document blob,
   make the catalog rows match it and unlock, in one transaction (ACTIVE/UPDATED, ...).
If step 3 fails the image sets return to ACTIVE with the "-FAILED" status and the reason
as their message; a lock left by a process that died between 2 and 3 is released the same
way by `recover_image_sets`. AHI answers at step 2 and finishes later; tessel answers after
step 3, so callers see the final state, and code that polls until ACTIVE works unchanged.
"""

from __future__ import annotations

import time
from typing import Any

from tessel.catalog import edits, query
from tessel.catalog.models import ImageSet, ImageSetState, ImageSetVersion, ImageSetWorkflowStatus
from tessel.errors import Conflict, InvalidInput, NotFound, QuotaExceeded, TesselError
from tessel.ingest.assemble import new_id
from tessel.lifecycle import copying, deletion
from tessel.lifecycle.datastores import active_datastore, get_datastore
from tessel.lifecycle.patch import Rules, apply_updates, study_part
from tessel.lifecycle.versions import commit, create, load_document, record_failed_version, stale
from tessel.stores import Stores

MAX_COPY_FRAMES = 1000  # AHI quota: image frames per CopyImageSet


def _image_set(stores: Stores, conn: Any, datastore_id: str, image_set_id: str) -> ImageSet:
    image_set = stores.catalog.get_image_set(datastore_id, image_set_id, conn)
    if image_set is None:
        raise NotFound(f"image set {image_set_id} does not exist in datastore {datastore_id}",
                       image_set_id=image_set_id)
    return image_set


def _writable(stores: Stores, conn: Any, datastore_id: str, image_set_id: str,
              expected_version: int | None) -> ImageSet:
    """A live, unlocked image set at `expected_version` (any version when None)."""
    image_set = _image_set(stores, conn, datastore_id, image_set_id)
    if image_set.state == ImageSetState.DELETED:
        raise Conflict(f"image set {image_set_id} was deleted", image_set_id=image_set_id)
    if image_set.state == ImageSetState.LOCKED:
        raise Conflict(f"image set {image_set_id} is locked by another write operation",
                       image_set_id=image_set_id)
    if expected_version is not None and image_set.latest_version != expected_version:
        raise stale(stores, conn, datastore_id, image_set_id, expected_version)
    return image_set


def _discard(stores: Stores, written: list[str]) -> None:
    for key in written:  # the transaction failed: its blobs are unreachable
        stores.blobs.delete(key)


# -- locking ----------------------------------------------------------------------------------

_FAILED = {ImageSetWorkflowStatus.UPDATING: ImageSetWorkflowStatus.UPDATE_FAILED,
           ImageSetWorkflowStatus.UPDATING_FOR_STUDY_CONSISTENCY: ImageSetWorkflowStatus.UPDATE_FAILED,
           ImageSetWorkflowStatus.COPYING: ImageSetWorkflowStatus.COPY_FAILED,
           ImageSetWorkflowStatus.COPYING_WITH_READ_ONLY_ACCESS: ImageSetWorkflowStatus.COPY_FAILED}


def _lock(stores: Stores, locks: list[tuple[ImageSet, ImageSetWorkflowStatus]]) -> None:
    """LOCK every image set with its "-ING" status, at the version the plan was made from; all or none.

    Claimed in id order, so that two writers locking overlapping sets cannot deadlock.
    """
    with stores.catalog.write() as conn:
        for image_set, workflow in sorted(locks, key=lambda lock: lock[0].id):
            if not edits.lock(conn, image_set.id, image_set.latest_version, workflow, time.time()):
                _writable(stores, conn, image_set.datastore_id, image_set.id, image_set.latest_version)
                raise Conflict(f"image set {image_set.id} changed meanwhile; read it again and retry",
                               image_set_id=image_set.id)


def _unlock_failed(stores: Stores, locks: list[tuple[ImageSet, ImageSetWorkflowStatus]], reason: str) -> None:
    """Back to ACTIVE after a write that did not commit, with the "-FAILED" status and why."""
    with stores.catalog.write() as conn:
        for image_set, workflow in locks:
            edits.unlock(conn, image_set.id, _FAILED.get(workflow, image_set.workflow_status), reason)


def _reason(exc: BaseException) -> str:
    text = exc.message if isinstance(exc, TesselError) else f"{type(exc).__name__}: {exc}"
    return text[:2000]


# -- UpdateImageSetMetadata -------------------------------------------------------------------


def update_image_set_metadata(stores: Stores, datastore_id: str, image_set_id: str, *,
                              latest_version_id: int, updatable: dict[str, Any] | None = None,
                              removable: dict[str, Any] | None = None,
                              revert_to_version_id: int | None = None, force: bool = False,
                              include_study_image_sets: bool = False) -> ImageSet:
    """Apply DICOMUpdates (or a revert) as a new version; returns the image set at that version.

    The new documents are made first, from a consistent read, so a refused payload
    changes nothing. Then the image set is LOCKED/UPDATING (and the other image sets
    of the study it reaches LOCKED/UPDATING_FOR_STUDY_CONSISTENCY), then every new
    version is committed at once: ACTIVE/UPDATED. If the commit fails they return to
    ACTIVE/UPDATE_FAILED with the reason as their message.

    With include_study_image_sets, the Patient and Study attributes of the update are
    also applied to every other live image set of the same study (each gets a version
    of its own). On a primary image set, a Patient/Study change while other primary
    image sets share its study needs include_study_image_sets, so that the study's
    primary hierarchy stays consistent.
    """
    active_datastore(stores, datastore_id)
    if revert_to_version_id is not None and (updatable is not None or removable is not None):
        raise InvalidInput("give either revertToVersionId or DICOMUpdates, not both")
    if revert_to_version_id is None and updatable is None and removable is None:
        raise InvalidInput("give DICOMUpdates (updatableAttributes and/or removableAttributes) "
                           "or revertToVersionId")
    with stores.catalog.read() as conn:
        target = _writable(stores, conn, datastore_id, image_set_id, latest_version_id)
        current = load_document(stores, conn, target.id, target.latest_version)
        if revert_to_version_id is not None:
            if not 1 <= revert_to_version_id <= target.latest_version:
                raise InvalidInput(f"image set {image_set_id} has no version {revert_to_version_id} "
                                   f"to revert to (versions 1 to {target.latest_version})")
            plans = [(target, current, load_document(stores, conn, target.id, revert_to_version_id))]
        else:
            applied = apply_updates(current, updatable, removable, Rules(force=force, primary=target.is_primary))
            plans = [(target, current, applied.doc)]
            if applied.hierarchy_changed:
                plans += _study_plans(stores, conn, target, updatable, removable, force,
                                      include_study_image_sets)
    locks = [(image_set, ImageSetWorkflowStatus.UPDATING if image_set.id == target.id
              else ImageSetWorkflowStatus.UPDATING_FOR_STUDY_CONSISTENCY) for image_set, _, _ in plans]
    _lock(stores, locks)
    now = time.time()
    written: list[str] = []
    try:
        with stores.catalog.write() as conn:
            for image_set, old, new in sorted(plans, key=lambda p: p[0].id):
                commit(stores, conn, image_set, old, new, workflow=ImageSetWorkflowStatus.UPDATED,
                       forced=force, now=now, written=written)
            result = _image_set(stores, conn, datastore_id, image_set_id)
    except BaseException as exc:
        _discard(stores, written)
        _unlock_failed(stores, locks, f"the update did not complete: {_reason(exc)}")
        raise
    return result


def _study_plans(stores: Stores, conn: Any, target: ImageSet, updatable: dict[str, Any] | None,
                 removable: dict[str, Any] | None, force: bool,
                 include: bool) -> list[tuple[ImageSet, dict[str, Any], dict[str, Any]]]:
    others = [s for s in stores.catalog.find_image_sets(conn, target.datastore_id,
                                                        study_instance_uid=target.study_instance_uid)
              if s.id != target.id]
    if not include:
        if target.is_primary and any(s.is_primary for s in others):
            raise InvalidInput(f"image set {target.id} is primary and its study has other primary image "
                               f"sets; change Patient/Study attributes with includeStudyImageSets=true "
                               f"so that they all stay consistent")
        return []
    part_updatable, part_removable = study_part(updatable), study_part(removable)
    plans = []
    for other in others:
        if other.state == ImageSetState.LOCKED:
            raise Conflict(f"image set {other.id} of the same study is locked by another write operation")
        old = load_document(stores, conn, other.id, other.latest_version)
        try:
            new = apply_updates(old, part_updatable, part_removable,
                                Rules(force=force, primary=other.is_primary, lenient=True)).doc
        except InvalidInput as exc:
            raise InvalidInput(f"image set {other.id} of the same study: {exc.message}") from None
        if new != old:
            plans.append((other, old, new))
    return plans


# -- CopyImageSet -----------------------------------------------------------------------------


def copy_image_set(stores: Stores, datastore_id: str, source_image_set_id: str, *,
                   source_latest_version: int, copiable: dict[str, Any] | None = None,
                   destination_image_set_id: str | None = None,
                   destination_latest_version: int | None = None, force: bool = False,
                   promote_to_primary: bool = False) -> tuple[ImageSet, ImageSet]:
    """Copy instances (all, or those `copiable` names) into a new or an existing image set.

    Frames are shared, not copied: the destination gets frame rows naming the same
    frame ids, whose blob key depends only on datastore and frame id. The source's
    content is not changed. With promote_to_primary the destination is the primary
    image set of the source's series: the existing one (merged into) or a new one.

    The source is LOCKED/COPYING_WITH_READ_ONLY_ACCESS and an existing destination
    LOCKED/COPYING while the copy commits; both end ACTIVE/COPIED. A merge into a named
    destination whose Patient/Study/Series metadata conflicts (without force), or which
    would repeat a SOP Instance UID, fails as AHI's does: the destination gets a new
    version with the same content, ACTIVE/COPY_FAILED, whose message says why (the
    source ends ACTIVE/COPY_FAILED too). A promotion that does not fit the primary image
    set it would merge into is a Conflict. Returns (source, destination).
    """
    active_datastore(stores, datastore_id)
    if destination_image_set_id is not None and destination_latest_version is None:
        raise InvalidInput("destinationImageSet needs latestVersionId")
    if destination_image_set_id == source_image_set_id:
        raise InvalidInput("source and destination image set are the same")
    failure: str | None = None
    merged: dict[str, Any] | None = None
    with stores.catalog.read() as conn:
        source = _writable(stores, conn, datastore_id, source_image_set_id, source_latest_version)
        source_doc = load_document(stores, conn, source.id, source.latest_version)
        picks = copying.select(source_doc, copiable)
        frames = copying.frame_count(source_doc, picks)
        if frames > MAX_COPY_FRAMES:
            raise QuotaExceeded(f"the copy holds {frames} image frames; CopyImageSet copies at most "
                                f"{MAX_COPY_FRAMES} (select fewer instances with copiableAttributes)")
        digests = {sop: row["digest"] for sop, row in
                   edits.instance_rows(conn, source.id, [sop for _, sop in picks]).items()}
        destination = None
        if destination_image_set_id is not None:
            destination = _writable(stores, conn, datastore_id, destination_image_set_id,
                                    destination_latest_version)
            if promote_to_primary and not destination.is_primary:
                raise InvalidInput(f"promoteToPrimary copies into a primary image set; "
                                   f"{destination.id} is not primary")
        elif promote_to_primary:
            destination = _primary_for(stores, conn, source, picks)
        if destination is None:
            new_doc = copying.new_document_from(source_doc, picks, datastore_id, "")
            if promote_to_primary:
                new_doc = _fit_study(stores, conn, source, new_doc, force)
        else:
            destination_doc = load_document(stores, conn, destination.id, destination.latest_version)
            try:
                if not force:
                    copying.check_consistent(source_doc, destination_doc, picks)
                merged = copying.merge(destination_doc, source_doc, picks, force=force)
            except Conflict as exc:
                if destination_image_set_id is None:
                    raise  # promotion into the study's primary image set, which the caller did not name
                failure = f"INVALID_REQUEST: {exc.message}"
    locks = [(source, ImageSetWorkflowStatus.COPYING_WITH_READ_ONLY_ACCESS)]
    if destination is not None:
        locks.append((destination, ImageSetWorkflowStatus.COPYING))
    _lock(stores, locks)
    now = time.time()
    written: list[str] = []
    try:
        with stores.catalog.write() as conn:
            if destination is None:
                if promote_to_primary and _primary_for(stores, conn, source, picks) is not None:
                    raise Conflict(f"a primary image set of series {picks[0][0]} appeared meanwhile; retry")
                destination_id = new_id()
                new_doc["ImageSetID"] = destination_id
                create(stores, conn, datastore_id, destination_id, new_doc,
                       study_uid=source.study_instance_uid, series_uid=picks[0][0],
                       is_primary=promote_to_primary, workflow=ImageSetWorkflowStatus.COPIED,
                       forced=force, now=now, written=written, donor=source.id, donor_digests=digests)
            elif failure is not None:
                destination_id = destination.id
                record_failed_version(stores, conn, destination, ImageSetWorkflowStatus.COPY_FAILED,
                                      failure, now=now)
            else:
                assert merged is not None
                destination_id = destination.id
                # A forced copy re-parents instances, so they no longer equal their source files.
                commit(stores, conn, destination, destination_doc, merged,
                       workflow=ImageSetWorkflowStatus.COPIED, forced=force, now=now, written=written,
                       donor=source.id, donor_digests=None if force else digests)
            edits.unlock(conn, source.id, ImageSetWorkflowStatus.COPIED if failure is None
                         else ImageSetWorkflowStatus.COPY_FAILED, failure)
            result = (_image_set(stores, conn, datastore_id, source.id),
                      _image_set(stores, conn, datastore_id, destination_id))
    except BaseException as exc:
        _discard(stores, written)
        _unlock_failed(stores, locks, f"the copy did not complete: {_reason(exc)}")
        raise
    return result


def _primary_for(stores: Stores, conn: Any, source: ImageSet, picks: list[copying.Pick]) -> ImageSet | None:
    """The primary image set that promoting `picks` merges into (None: a new one is made)."""
    if source.is_primary:
        raise InvalidInput(f"image set {source.id} is primary already")
    series = {series_uid for series_uid, _ in picks}
    if len(series) != 1:
        raise InvalidInput("promoteToPrimary copies the instances of one series at a time")
    (series_uid,) = series
    primaries = stores.catalog.find_image_sets(conn, source.datastore_id, is_primary=True,
                                               study_instance_uid=source.study_instance_uid,
                                               series_instance_uid=series_uid)
    if primaries and primaries[0].state == ImageSetState.LOCKED:
        raise Conflict(f"primary image set {primaries[0].id} is locked by another write operation")
    return primaries[0] if primaries else None


def _fit_study(stores: Stores, conn: Any, source: ImageSet, doc: dict[str, Any], force: bool) -> dict[str, Any]:
    """A new primary series must agree with the study's other primary image sets."""
    primaries = stores.catalog.find_image_sets(conn, source.datastore_id, is_primary=True,
                                               study_instance_uid=source.study_instance_uid)
    if not primaries:
        return doc
    reference = load_document(stores, conn, primaries[0].id, primaries[0].latest_version)
    problems = copying.mismatches(doc, reference, ("patient", "study"))
    if not problems:
        return doc
    if not force:
        raise Conflict(f"Patient/Study metadata of the image set and of the study's primary image set "
                       f"{primaries[0].id} don't match: {', '.join(sorted(problems))} differ (update "
                       f"them first, or force to take the primary study's values)")
    return copying.adopt_hierarchy(doc, reference)


# -- DeleteImageSet ---------------------------------------------------------------------------


def delete_image_set(stores: Stores, datastore_id: str, image_set_id: str) -> ImageSet:
    """LOCKED/DELETING, then DELETED/DELETED with its instance/frame rows dropped; idempotent.

    Its metadata documents are deleted after commit (nothing can read them any
    more) and its frames are queued for deletion: lifecycle.deletion removes each
    one from the blob store once no image set holds it (copies share frames).
    """
    get_datastore(stores, datastore_id)
    with stores.catalog.read() as conn:
        image_set = _image_set(stores, conn, datastore_id, image_set_id)
    if image_set.state != ImageSetState.DELETED:
        if image_set.state == ImageSetState.LOCKED:
            raise Conflict(f"image set {image_set_id} is locked by another write operation")
        locks = [(image_set, ImageSetWorkflowStatus.DELETING)]
        _lock(stores, locks)
        try:
            finish_deleting(stores, image_set)
        except BaseException as exc:
            _unlock_failed(stores, locks, f"the deletion did not complete: {_reason(exc)}")
            raise
    with stores.catalog.read() as conn:
        documents_to_delete = edits.metadata_keys(conn, image_set_id)
        result = _image_set(stores, conn, datastore_id, image_set_id)
    for key in documents_to_delete:  # again on a repeated delete, in case a first one was cut short
        stores.blobs.delete(key)
    return result


def finish_deleting(stores: Stores, image_set: ImageSet) -> None:
    """The DELETED commit of a LOCKED/DELETING image set."""
    now = time.time()
    with stores.catalog.write() as conn:
        frame_ids = edits.frame_ids(conn, image_set.id)
        if not edits.mark_deleted(conn, image_set.id, image_set.latest_version, now):
            raise stale(stores, conn, image_set.datastore_id, image_set.id, image_set.latest_version)
        edits.remove_all_rows(conn, image_set.id)
        query.reindex_image_set(stores.catalog, conn, image_set.datastore_id, image_set.id, None)  # leaves QIDO
        deletion.schedule(conn, image_set.datastore_id, frame_ids, now)


def recover_image_sets(stores: Stores, *, older_than: float) -> int:
    """Release image sets left LOCKED (for `older_than` seconds) by a write a stopped server cut short.

    A lock outlives its operation only if the process died between the lock and
    the commit, so nothing was changed: the image set returns to ACTIVE with the
    operation's "-FAILED" status and a message saying so. A DELETING one is deleted.
    """
    with stores.catalog.read() as conn:
        stuck = edits.locked_image_sets(conn, time.time() - older_than)
    for datastore_id, image_set_id in stuck:
        with stores.catalog.read() as conn:
            image_set = _image_set(stores, conn, datastore_id, image_set_id)
        if image_set.state != ImageSetState.LOCKED:
            continue
        if image_set.workflow_status == ImageSetWorkflowStatus.DELETING:
            finish_deleting(stores, image_set)
            continue
        _unlock_failed(stores, [(image_set, image_set.workflow_status)],
                       "the server stopped before the operation completed; nothing was changed")
    return len(stuck)


# -- ListImageSetVersions / GetImageSet -------------------------------------------------------


def list_image_set_versions(stores: Stores, datastore_id: str, image_set_id: str, *, limit: int,
                            before_version: int | None) -> list[ImageSetVersion]:
    """Versions newest first, those below `before_version` (the previous page's last) when given."""
    get_datastore(stores, datastore_id)
    if limit < 1:
        raise InvalidInput("limit must be at least 1")
    with stores.catalog.read() as conn:
        _image_set(stores, conn, datastore_id, image_set_id)
    return stores.catalog.list_versions(image_set_id, before=before_version, limit=limit)


def get_image_set_version(stores: Stores, datastore_id: str, image_set_id: str,
                          version_id: int | None) -> tuple[ImageSet, ImageSetVersion]:
    """The image set and one of its versions (the latest when version_id is None).

    Deleted image sets still answer, with state DELETED and deletedAt.
    """
    get_datastore(stores, datastore_id)
    with stores.catalog.read() as conn:
        image_set = _image_set(stores, conn, datastore_id, image_set_id)
        wanted = image_set.latest_version if version_id is None else version_id
        version = stores.catalog.get_version(image_set_id, wanted, conn)
    if version is None:
        raise NotFound(f"image set {image_set_id} has no version {wanted}", image_set_id=image_set_id)
    return image_set, version
