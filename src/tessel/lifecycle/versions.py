"""Committing image-set versions, the way ingest.assemble does it.

Inside one catalog write transaction: first claim the next version with the
conditional UPDATE on latest_version (so a second writer fails there and never
touches the blob of "our" version number), then write the gzip JSON document
under its immutable key, then make the instance/frame rows and search columns
match the new document, add the version row and refresh the DICOM query index
(catalog.query; primary image sets only). If the transaction fails, the caller
deletes the blobs listed in `written`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy.engine import Connection

from tessel import codecs, documents
from tessel.blobs import keys
from tessel.catalog import edits, query
from tessel.catalog.models import (ImageSet, ImageSetId, ImageSetState, ImageSetVersion,
                                   ImageSetWorkflowStatus)
from tessel.errors import Conflict, NotFound
from tessel.ingest.assemble import group_key
from tessel.ingest.staging import SERIES_KEYS, STUDY_KEYS
from tessel.stores import Stores


def load_document(stores: Stores, conn: Connection, image_set_id: str, version_id: int) -> dict[str, Any]:
    version = stores.catalog.get_version(image_set_id, version_id, conn)
    if version is None:
        raise NotFound(f"image set {image_set_id} has no version {version_id}")
    return documents.decode(stores.blobs.get(version.metadata_key))


def stale(stores: Stores, conn: Connection, datastore_id: str, image_set_id: str, expected: int) -> Exception:
    """The error for a writer whose expected version is not the latest (any more)."""
    current = stores.catalog.get_image_set(datastore_id, image_set_id, conn)
    if current is None:
        return NotFound(f"image set {image_set_id} does not exist in datastore {datastore_id}")
    if current.state == ImageSetState.DELETED:
        return Conflict(f"image set {image_set_id} was deleted", image_set_id=image_set_id)
    return Conflict(f"image set {image_set_id} is at version {current.latest_version}, not version "
                    f"{expected}; read it again and retry with latestVersion {current.latest_version}",
                    image_set_id=image_set_id, latest_version=current.latest_version,
                    expected_version=expected)


def columns(doc: dict[str, Any], study_uid: str, series_uid: str) -> dict[str, Any]:
    """The image_sets columns that follow from a document: search fields, UIDs, counts, group key."""
    study = doc["Study"]["DICOM"]
    series = doc["Study"]["Series"]
    study_uid = str(study.get("StudyInstanceUID") or study_uid)
    if series_uid not in series:
        series_uid = next(iter(series))
    patient = doc["Patient"]["DICOM"]
    staged_like = {"study_instance_uid": study_uid, "series_instance_uid": series_uid,
                   "study_keys": {k: study.get(k, patient.get(k)) for k in STUDY_KEYS},
                   "series_keys": {k: series[series_uid]["DICOM"].get(k) for k in SERIES_KEYS}}
    return {**documents.search_fields(doc), "study_instance_uid": study_uid,
            "series_instance_uid": series_uid, "group_key": group_key(staged_like),
            "number_of_series": len(series),
            "number_of_instances": sum(len(s["Instances"]) for s in series.values())}


def commit(stores: Stores, conn: Connection, image_set: ImageSet, old_doc: dict[str, Any],
           new_doc: dict[str, Any], *, workflow: ImageSetWorkflowStatus, forced: bool, now: float,
           written: list[str], donor: str | None = None,
           donor_digests: dict[str, str] | None = None) -> None:
    """Make `new_doc` version latest_version + 1 of `image_set`; Conflict if someone else did first."""
    catalog = stores.catalog
    version_id = image_set.latest_version + 1
    values = {**columns(new_doc, image_set.study_instance_uid, image_set.series_instance_uid),
              "state": ImageSetState.ACTIVE.value, "workflow_status": workflow.value, "message": None,
              "updated_at": now, "locked_at": None}
    if not catalog.advance_image_set(conn, image_set.id, image_set.latest_version, values):
        raise stale(stores, conn, image_set.datastore_id, image_set.id, image_set.latest_version)
    key = _put_document(stores, image_set.datastore_id, image_set.id, version_id, new_doc, written)
    sync_rows(stores, conn, image_set.datastore_id, image_set.id, old_doc, new_doc, version_id,
              study_uid=values["study_instance_uid"], donor=donor, donor_digests=donor_digests)
    catalog.insert_version(conn, ImageSetVersion(
        image_set_id=image_set.id, version_id=version_id, metadata_key=key, state=ImageSetState.ACTIVE,
        workflow_status=workflow, message=None, forced=forced, is_primary=image_set.is_primary,
        created_at=now, updated_at=now, deleted_at=None))
    query.reindex_image_set(catalog, conn, image_set.datastore_id, image_set.id, new_doc)  # QIDO / C-FIND rows


def record_failed_version(stores: Stores, conn: Connection, image_set: ImageSet,
                          workflow: ImageSetWorkflowStatus, message: str, *, now: float) -> None:
    """Version latest_version + 1 with the same content, ACTIVE with a "-FAILED" status and its reason.

    This is how AHI reports a copy that could not be merged: the failure is a step in
    the destination's history (ListImageSetVersions shows it), and the next write must
    name the new version. The document blob is shared with the previous version.
    """
    catalog = stores.catalog
    previous = catalog.get_version(image_set.id, image_set.latest_version, conn)
    assert previous is not None
    values = {"state": ImageSetState.ACTIVE.value, "workflow_status": workflow.value, "message": message,
              "updated_at": now, "locked_at": None}
    if not catalog.advance_image_set(conn, image_set.id, image_set.latest_version, values):
        raise stale(stores, conn, image_set.datastore_id, image_set.id, image_set.latest_version)
    catalog.insert_version(conn, ImageSetVersion(
        image_set_id=image_set.id, version_id=image_set.latest_version + 1, metadata_key=previous.metadata_key,
        state=ImageSetState.ACTIVE, workflow_status=workflow, message=message, forced=False,
        is_primary=image_set.is_primary, created_at=now, updated_at=now, deleted_at=None))


def create(stores: Stores, conn: Connection, datastore_id: str, image_set_id: str, doc: dict[str, Any],
           *, study_uid: str, series_uid: str, is_primary: bool, workflow: ImageSetWorkflowStatus,
           forced: bool, now: float, written: list[str], donor: str,
           donor_digests: dict[str, str]) -> None:
    """A new image set at version 1 holding `doc`, its rows taken from the `donor` image set."""
    catalog = stores.catalog
    key = _put_document(stores, datastore_id, image_set_id, 1, doc, written)
    values = columns(doc, study_uid, series_uid)
    catalog.insert_image_set(conn, {
        "id": image_set_id, "datastore_id": datastore_id, "latest_version": 1,
        "state": ImageSetState.ACTIVE.value, "workflow_status": workflow.value, "message": None,
        "is_primary": is_primary, "created_at": now, "updated_at": now, "deleted_at": None,
        "last_accessed_at": None, "storage_tier": "FREQUENT_ACCESS", **values})
    sync_rows(stores, conn, datastore_id, image_set_id, None, doc, 1, study_uid=values["study_instance_uid"],
              donor=donor, donor_digests=donor_digests)
    catalog.insert_version(conn, ImageSetVersion(
        image_set_id=ImageSetId(image_set_id), version_id=1, metadata_key=key, state=ImageSetState.ACTIVE,
        workflow_status=workflow, message=None, forced=forced, is_primary=is_primary,
        created_at=now, updated_at=now, deleted_at=None))
    query.reindex_image_set(catalog, conn, datastore_id, image_set_id, doc)  # QIDO / C-FIND rows


def _put_document(stores: Stores, datastore_id: str, image_set_id: str, version_id: int,
                  doc: dict[str, Any], written: list[str]) -> str:
    key = keys.metadata(datastore_id, image_set_id, version_id)
    stores.blobs.put(key, documents.encode(doc))
    written.append(key)
    return key


def sync_rows(stores: Stores, conn: Connection, datastore_id: str, image_set_id: str,
              old_doc: dict[str, Any] | None, new_doc: dict[str, Any], version_id: int, *, study_uid: str,
              donor: str | None = None, donor_digests: dict[str, str] | None = None) -> None:
    """Make the instance and frame rows of an image set match `new_doc` (they matched `old_doc`).

    Only instances whose node or series changed are rewritten. Frame rows keep their
    stored size and syntax: taken from this image set's rows, else from the `donor`
    (the source of a copy), else from the frame blob itself (a revert that brings
    back an instance no image set still lists).
    """
    catalog = stores.catalog
    old = {sop: (series_uid, node) for series_uid, sop, node in documents.iter_instances(old_doc)} \
        if old_doc else {}
    new = {sop: (series_uid, node) for series_uid, sop, node in documents.iter_instances(new_doc)}
    gone = [sop for sop in old if sop not in new]
    changed = [sop for sop, entry in new.items() if old.get(sop) != entry]
    wanted = {f["ID"] for sop in changed for f in new[sop][1].get("ImageFrames") or []}
    known = edits.frame_rows(conn, image_set_id, wanted)
    if donor is not None and wanted - known.keys():
        known.update(edits.frame_rows(conn, donor, wanted - known.keys()))
    instance_rows: list[dict[str, Any]] = []
    frame_rows: list[dict[str, Any]] = []
    for sop in changed:
        series_uid, node = new[sop]
        frames = node.get("ImageFrames") or []
        digest = (donor_digests or {}).get(sop) or instance_digest(new_doc, series_uid, node)
        instance_rows.append({
            "image_set_id": image_set_id, "sop_instance_uid": sop, "datastore_id": datastore_id,
            "study_instance_uid": study_uid, "series_instance_uid": series_uid,
            "sop_class_uid": node["DICOM"].get("SOPClassUID"),
            "instance_number": _number(node["DICOM"].get("InstanceNumber")),
            "number_of_frames": len(frames),
            "stored_transfer_syntax_uid": node.get("StoredTransferSyntaxUID"), "digest": digest,
            "version_added": version_id})
        for number, frame in enumerate(frames, 1):
            row = known.get(frame["ID"]) or _frame_from_blob(stores, datastore_id, frame["ID"], node)
            frame_rows.append({"image_set_id": image_set_id, "frame_id": frame["ID"],
                               "sop_instance_uid": sop, "frame_number": number,
                               "transfer_syntax_uid": row["transfer_syntax_uid"], "size": row["size"]})
    catalog.remove_instances(conn, image_set_id, gone)
    catalog.replace_instances(conn, image_set_id, instance_rows, frame_rows)
    if old_doc and old_doc["Study"]["DICOM"].get("StudyInstanceUID") != study_uid:
        edits.set_study_instance_uid(conn, image_set_id, study_uid)


def instance_digest(doc: dict[str, Any], series_uid: str, node: dict[str, Any]) -> str:
    """The digest staging would give a file with exactly this content (so a re-import of it is a no-op)."""
    body = {"patient": doc["Patient"]["DICOM"], "study": doc["Study"]["DICOM"],
            "series": doc["Study"]["Series"][series_uid]["DICOM"], "instance": node}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _frame_from_blob(stores: Stores, datastore_id: str, frame_id: str, node: dict[str, Any]) -> dict[str, Any]:
    try:
        size = len(stores.blobs.get(keys.frame(datastore_id, frame_id)))
    except NotFound:
        raise Conflict(f"image frame {frame_id} is no longer stored, so its instance cannot be restored") from None
    return {"transfer_syntax_uid": node.get("StoredTransferSyntaxUID") or codecs.HTJ2K_LOSSLESS_RPCL,
            "size": size}


def _number(value: Any) -> int | None:
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        return int(str(value).strip()) if value not in (None, "") else None
    except ValueError:
        return None
