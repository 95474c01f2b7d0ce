"""Image-set life cycle after import: UpdateImageSetMetadata, CopyImageSet, DeleteImageSet,
ListImageSetVersions and GetImageSet (spec sections 1 and 5).

Versions are immutable. Each change claims latest_version + 1 with a conditional
UPDATE (optimistic concurrency: a stale latestVersion is a Conflict naming both
versions), writes a new document blob and makes the catalog rows match it, all in
one write transaction. AHI runs these operations asynchronously (LOCKED, then
ACTIVE); tessel finishes them before returning, so callers see the final state
(ACTIVE/UPDATED, ACTIVE/COPIED, DELETED/DELETED) and failures as exceptions.
"""

from __future__ import annotations

import time
from typing import Any

from tessel.catalog import edits, query
from tessel.catalog.models import ImageSet, ImageSetState, ImageSetVersion, ImageSetWorkflowStatus
from tessel.errors import Conflict, InvalidInput, NotFound, QuotaExceeded
from tessel.ingest.assemble import new_id
from tessel.lifecycle import copying
from tessel.lifecycle.datastores import get_datastore
from tessel.lifecycle.patch import Rules, apply_updates, study_part
from tessel.lifecycle.versions import commit, create, load_document, stale
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


# -- UpdateImageSetMetadata -------------------------------------------------------------------


def update_image_set_metadata(stores: Stores, datastore_id: str, image_set_id: str, *,
                              latest_version_id: int, updatable: dict[str, Any] | None = None,
                              removable: dict[str, Any] | None = None,
                              revert_to_version_id: int | None = None, force: bool = False,
                              include_study_image_sets: bool = False) -> ImageSet:
    """Apply DICOMUpdates (or a revert) as a new version; returns the image set at that version.

    With include_study_image_sets, the Patient and Study attributes of the update are
    also applied to every other live image set of the same study (each gets a version
    of its own). On a primary image set, a Patient/Study change while other primary
    image sets share its study needs include_study_image_sets, so that the study's
    primary hierarchy stays consistent.
    """
    get_datastore(stores, datastore_id)
    if revert_to_version_id is not None and (updatable is not None or removable is not None):
        raise InvalidInput("give either revertToVersionId or DICOMUpdates, not both")
    if revert_to_version_id is None and updatable is None and removable is None:
        raise InvalidInput("give DICOMUpdates (updatableAttributes and/or removableAttributes) "
                           "or revertToVersionId")
    now = time.time()
    written: list[str] = []
    try:
        with stores.catalog.write() as conn:
            target = _writable(stores, conn, datastore_id, image_set_id, latest_version_id)
            current = load_document(stores, conn, target.id, target.latest_version)
            if revert_to_version_id is not None:
                if not 1 <= revert_to_version_id <= target.latest_version:
                    raise InvalidInput(f"image set {image_set_id} has no version {revert_to_version_id} "
                                       f"to revert to (versions 1 to {target.latest_version})")
                reverted = load_document(stores, conn, target.id, revert_to_version_id)
                commit(stores, conn, target, current, reverted, workflow=ImageSetWorkflowStatus.UPDATED,
                       forced=force, now=now, written=written)
            else:
                applied = apply_updates(current, updatable, removable,
                                        Rules(force=force, primary=target.is_primary))
                plans = [(target, current, applied.doc)]
                if applied.hierarchy_changed:
                    plans += _study_plans(stores, conn, target, updatable, removable, force,
                                          include_study_image_sets)
                # Claim in id order: two study-wide updates cannot deadlock on PostgreSQL.
                for image_set, old, new in sorted(plans, key=lambda p: p[0].id):
                    commit(stores, conn, image_set, old, new, workflow=ImageSetWorkflowStatus.UPDATED,
                           forced=force, now=now, written=written)
            result = _image_set(stores, conn, datastore_id, image_set_id)
    except BaseException:
        _discard(stores, written)
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
    frame ids, whose blob key depends only on datastore and frame id. The source is
    not changed. With promote_to_primary the destination is the primary image set
    of the source's series: the existing one (merged into) or a new one.
    Returns (source, destination).
    """
    get_datastore(stores, datastore_id)
    if destination_image_set_id is not None and destination_latest_version is None:
        raise InvalidInput("destinationImageSet needs latestVersionId")
    if destination_image_set_id == source_image_set_id:
        raise InvalidInput("source and destination image set are the same")
    now = time.time()
    written: list[str] = []
    try:
        with stores.catalog.write() as conn:
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
                destination_id = new_id()
                doc = copying.new_document_from(source_doc, picks, datastore_id, destination_id)
                if promote_to_primary:
                    doc = _fit_study(stores, conn, source, doc, force)
                create(stores, conn, datastore_id, destination_id, doc,
                       study_uid=source.study_instance_uid, series_uid=picks[0][0],
                       is_primary=promote_to_primary, workflow=ImageSetWorkflowStatus.COPIED,
                       forced=force, now=now, written=written, donor=source.id, donor_digests=digests)
            else:
                destination_id = destination.id
                destination_doc = load_document(stores, conn, destination.id, destination.latest_version)
                if not force:
                    copying.check_consistent(source_doc, destination_doc, picks)
                merged = copying.merge(destination_doc, source_doc, picks, force=force)
                # A forced copy re-parents instances, so they no longer equal their source files.
                commit(stores, conn, destination, destination_doc, merged,
                       workflow=ImageSetWorkflowStatus.COPIED, forced=force, now=now, written=written,
                       donor=source.id, donor_digests=None if force else digests)
            result = (_image_set(stores, conn, datastore_id, source.id),
                      _image_set(stores, conn, datastore_id, destination_id))
    except BaseException:
        _discard(stores, written)
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
    """Mark the image set DELETED and drop its instance/frame rows; idempotent.

    Its metadata documents are deleted after commit (nothing can read them any
    more). Frame blobs stay: copies share them, so the orphan sweep removes those
    that no image set references.
    """
    get_datastore(stores, datastore_id)
    now = time.time()
    with stores.catalog.write() as conn:
        image_set = _image_set(stores, conn, datastore_id, image_set_id)
        if image_set.state != ImageSetState.DELETED:
            if image_set.state == ImageSetState.LOCKED:
                raise Conflict(f"image set {image_set_id} is locked by another write operation")
            if not edits.mark_deleted(conn, image_set_id, image_set.latest_version, now):
                raise stale(stores, conn, datastore_id, image_set_id, image_set.latest_version)
            edits.remove_all_rows(conn, image_set_id)
            query.reindex_image_set(stores.catalog, conn, datastore_id, image_set_id, None)  # leaves QIDO/C-FIND
        documents_to_delete = edits.metadata_keys(conn, image_set_id)
        result = _image_set(stores, conn, datastore_id, image_set_id)
    for key in documents_to_delete:  # again on a repeated delete, in case a first one was cut short
        stores.blobs.delete(key)
    return result


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
