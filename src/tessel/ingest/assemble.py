"""Group staged instances into image sets and commit new versions (spec section 3).

Instances of one series whose Patient/Study/Series keys agree with the store
join the series' primary image set; conflicting ones go to a non-primary image
set keyed by their values. An instance identical to the one already stored
changes nothing; a changed one makes a new version. One call makes at most one
new version per image set.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Sequence

from tessel import documents
from tessel.blobs import BlobStore, keys
from tessel.catalog import Catalog, query
from tessel.catalog.models import ImageSet, ImageSetState, ImageSetVersion, ImageSetWorkflowStatus
from tessel.ingest.latest import Latest, LatestDocuments, levels_before
from tessel.ingest.staging import SERIES_KEYS, STUDY_KEYS

# The documents this process committed last (the writer's next commit usually extends one).
LATEST = LatestDocuments()


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one staged instance ended up."""

    image_set_id: str
    is_primary: bool
    version: int
    changed: bool  # False when an identical instance was already stored


def new_id() -> str:
    return secrets.token_hex(16)


def group_key(staged: dict[str, Any]) -> str:
    parts = [staged["study_instance_uid"], staged["series_instance_uid"],
             repr(sorted(staged["study_keys"].items())), repr(sorted(staged["series_keys"].items()))]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


def assemble(catalog: Catalog, blobs: BlobStore, datastore_id: str,
             staged: Sequence[dict[str, Any]], *, sync: bool = False) -> list[Placement]:
    """Commit `staged` instances; returns one Placement per input, in order. `sync`: `blobs`
    writes without syncing each blob; sync it once before each catalog commit (the frames
    staged into it and the new documents become durable together)."""
    by_series: dict[tuple[str, str], list[int]] = defaultdict(list)
    for index, item in enumerate(staged):
        by_series[(item["study_instance_uid"], item["series_instance_uid"])].append(index)
    placements: list[Placement | None] = [None] * len(staged)
    for (study_uid, series_uid), indexes in by_series.items():
        for _attempt in range(5):
            try:
                result = _assemble_series(catalog, blobs, datastore_id, study_uid, series_uid,
                                          [staged[i] for i in indexes], sync)
                break
            except _Raced:
                continue  # another writer advanced one of our image sets: recompute on the new state
        else:  # pragma: no cover - needs five concurrent writers in a row
            raise RuntimeError("could not commit after five concurrent version conflicts")
        for i, placement in zip(indexes, result):
            placements[i] = placement
    return [p for p in placements if p is not None]


class _Raced(Exception):
    pass


def _assemble_series(catalog: Catalog, blobs: BlobStore, datastore_id: str, study_uid: str,
                     series_uid: str, items: list[dict[str, Any]], sync: bool) -> list[Placement]:
    now = time.time()
    kept: list[tuple[str, Latest]] = []  # documents to keep for the next commit, once this one is done
    with catalog.write() as conn:
        placements = _place_series(catalog, blobs, conn, datastore_id, study_uid, series_uid, items, now, kept)
        if sync:
            blobs.sync()  # before COMMIT: the catalog never names a blob that is not on disk
    for image_set_id, latest in kept:
        LATEST.put(image_set_id, latest)
    return placements


def _place_series(catalog: Catalog, blobs: BlobStore, conn: Any, datastore_id: str, study_uid: str,
                  series_uid: str, items: list[dict[str, Any]], now: float,
                  kept: list[tuple[str, Latest]]) -> list[Placement]:
    study_primaries = catalog.find_image_sets(conn, datastore_id, study_instance_uid=study_uid,
                                              is_primary=True)
    primary = next((s for s in study_primaries if s.series_instance_uid == series_uid), None)
    reference = _keys_of(catalog, blobs, primary, conn) if primary else None
    study_reference = (_keys_of(catalog, blobs, study_primaries[0], conn)[0]
                       if study_primaries and not primary else None)

    # Decide the target of each item: "primary" or a non-primary group key.
    targets: dict[str, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        study_keys, series_keys = item["study_keys"], item["series_keys"]
        if reference is None:
            if study_reference is not None and study_keys != study_reference:
                targets[group_key(item)].append(i)
                continue
            reference = (study_keys, series_keys)  # the first consistent item founds the primary set
        if (study_keys, series_keys) == reference:
            targets["primary"].append(i)
        else:
            targets[group_key(item)].append(i)

    placements: list[Placement | None] = [None] * len(items)
    for target, indexes in targets.items():
        members = [items[i] for i in indexes]
        if target == "primary":
            image_set, is_primary, gkey = primary, True, group_key(members[0])
        else:
            found = catalog.find_image_sets(conn, datastore_id, group_key=target, is_primary=False)
            image_set, is_primary, gkey = (found[0] if found else None), False, target
        result = _commit(catalog, blobs, conn, datastore_id, image_set, is_primary, gkey, members, now, kept)
        for i, placement in zip(indexes, result):
            placements[i] = placement
    return [p for p in placements if p is not None]


def _keys_of(catalog: Catalog, blobs: BlobStore, image_set: ImageSet,
             conn: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The consistency keys an existing image set was built with, from its latest document."""
    doc = LATEST.peek(image_set.id, image_set.latest_version)
    if doc is None:
        version = catalog.get_version(image_set.id, image_set.latest_version, conn)
        assert version is not None
        doc = documents.decode(blobs.get(version.metadata_key))
    patient, study = doc["Patient"]["DICOM"], doc["Study"]["DICOM"]
    series = doc["Study"]["Series"].get(image_set.series_instance_uid, {"DICOM": {}})["DICOM"]
    return ({k: study.get(k, patient.get(k)) for k in STUDY_KEYS},
            {k: series.get(k) for k in SERIES_KEYS})


def _commit(catalog: Catalog, blobs: BlobStore, conn: Any, datastore_id: str,
            image_set: ImageSet | None, is_primary: bool, gkey: str,
            members: list[dict[str, Any]], now: float, kept: list[tuple[str, Latest]]) -> list[Placement]:
    if image_set is None:
        image_set_id, version, digests = new_id(), 0, {}
    else:
        image_set_id, version = image_set.id, image_set.latest_version
        digests = catalog.instance_digests(conn, image_set_id, [m["sop_instance_uid"] for m in members])

    changed = [m for m in members if digests.get(m["sop_instance_uid"]) != m["digest"]]
    if not changed:
        return [Placement(image_set_id, is_primary, version, False) for _ in members]
    entry = LATEST.take(image_set_id, version) if image_set is not None else None
    if entry is None:
        if image_set is None:
            doc = documents.new_document(datastore_id, image_set_id)
        else:
            current = catalog.get_version(image_set_id, version, conn)
            assert current is not None
            doc = documents.decode(blobs.get(current.metadata_key))
        entry = Latest.of(version, doc)
    doc = entry.doc
    before = levels_before(doc)
    # Later duplicates of the same SOP instance within one batch win, as a re-import would.
    latest: dict[str, dict[str, Any]] = {m["sop_instance_uid"]: m for m in changed}
    for member in latest.values():
        documents.put_instance(doc, member)
    new_version = version + 1
    metadata_key = keys.metadata(datastore_id, image_set_id, new_version)
    blobs.put(metadata_key, entry.encode(
        [(m["series_instance_uid"], sop, m["instance"]) for sop, m in latest.items()], before))
    entry.version = new_version
    kept.append((image_set_id, entry))

    instance_rows = [{
        "image_set_id": image_set_id, "sop_instance_uid": m["sop_instance_uid"],
        "datastore_id": datastore_id, "study_instance_uid": m["study_instance_uid"],
        "series_instance_uid": m["series_instance_uid"], "sop_class_uid": m["sop_class_uid"],
        "instance_number": m["instance_number"], "number_of_frames": len(m["frames"]),
        "stored_transfer_syntax_uid": m["stored_transfer_syntax_uid"], "digest": m["digest"],
        "version_added": new_version} for m in latest.values()]
    frame_rows = [{"image_set_id": image_set_id, "sop_instance_uid": m["sop_instance_uid"], **f}
                  for m in latest.values() for f in m["frames"]]
    catalog.replace_instances(conn, image_set_id, instance_rows, frame_rows)
    n_series = len(doc["Study"]["Series"])
    n_instances = sum(len(series["Instances"]) for series in doc["Study"]["Series"].values())
    fields = {**documents.search_fields(doc), "number_of_series": n_series,
              "number_of_instances": n_instances, "updated_at": now}
    workflow = ImageSetWorkflowStatus.CREATED if image_set is None else ImageSetWorkflowStatus.IMPORTED
    if image_set is None:
        first = changed[0]
        catalog.insert_image_set(conn, {
            "id": image_set_id, "datastore_id": datastore_id, "latest_version": new_version,
            "state": ImageSetState.ACTIVE.value, "workflow_status": workflow.value, "message": None,
            "is_primary": is_primary, "group_key": gkey, "created_at": now, "deleted_at": None,
            "last_accessed_at": None, "storage_tier": "FREQUENT_ACCESS",
            "study_instance_uid": first["study_instance_uid"],
            "series_instance_uid": first["series_instance_uid"], **fields})
    elif not catalog.advance_image_set(conn, image_set_id, version,
                                       {**fields, "workflow_status": workflow.value}):
        raise _Raced()
    catalog.insert_version(conn, ImageSetVersion(
        image_set_id=image_set_id, version_id=new_version, metadata_key=metadata_key,  # type: ignore[arg-type]
        state=ImageSetState.ACTIVE, workflow_status=workflow, message=None, forced=False,
        is_primary=is_primary, created_at=now, updated_at=now, deleted_at=None))
    query.reindex_image_set(catalog, conn, datastore_id, image_set_id, doc,  # QIDO/C-FIND rows, same transaction
                            changed=set(latest) if image_set is not None else None)
    changed_sops = {m["sop_instance_uid"] for m in changed}
    return [Placement(image_set_id, is_primary, new_version, m["sop_instance_uid"] in changed_sops)
            for m in members]
