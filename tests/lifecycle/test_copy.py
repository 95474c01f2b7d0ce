"""CopyImageSet: new destinations, merges, consistency, the frame quota, promotion to primary."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest
import sqlalchemy as sa

from tessel import retrieve
from tessel.blobs import keys
from tessel.catalog import edits
from tessel.catalog.models import ImageSetState, ImageSetWorkflowStatus
from tessel.catalog.sql.tables import frames
from tessel.errors import Conflict, InvalidInput, QuotaExceeded
from tessel.lifecycle.datastores import create_datastore
from tessel.lifecycle.imagesets import (copy_image_set, delete_image_set, get_image_set_version,
                                        update_image_set_metadata)
from tessel.stores import Stores
from tests.lifecycle import document, make_image_set, sops, uid

V = 1.1


@pytest.fixture
def ds(stores: Stores) -> str:
    return create_datastore(stores, "t").id


@pytest.fixture
def source(stores: Stores, ds: str) -> str:
    return make_image_set(stores, ds, study=uid("study"), series=uid("series"), count=3, frames=2)


def frame_rows(stores: Stores, image_set_id: str) -> set[tuple[str, str, int]]:
    with stores.catalog.read() as conn:
        return {(r.frame_id, r.sop_instance_uid, r.frame_number) for r in conn.execute(
            sa.select(frames).where(frames.c.image_set_id == image_set_id))}


def pick(doc: dict[str, Any], *indexes: int) -> dict[str, Any]:
    (series_uid, series), = doc["Study"]["Series"].items()
    chosen = [list(series["Instances"])[i] for i in indexes]
    return {"SchemaVersion": "1.1", "Study": {"Series": {series_uid: {"Instances": {s: {} for s in chosen}}}}}


def test_a_copy_without_destination_is_a_new_non_primary_image_set_at_version_1(
        stores: Stores, ds: str, source: str) -> None:
    before = retrieve.get_image_set(stores, ds, source)
    src, dst = copy_image_set(stores, ds, source, source_latest_version=1)
    assert dst.id != source
    assert (dst.latest_version, dst.workflow_status, dst.is_primary) == (1, ImageSetWorkflowStatus.COPIED, False)
    assert (dst.number_of_instances, dst.study_instance_uid, dst.patient_id) == (3, before.study_instance_uid, "P1")
    # the source is not changed, only its workflow status says it was copied (as in AHI)
    assert replace(src, workflow_status=before.workflow_status) == before
    assert (src.state, src.workflow_status) == (ImageSetState.ACTIVE, ImageSetWorkflowStatus.COPIED)
    source_doc, copy_doc = document(stores, ds, source), document(stores, ds, dst.id)
    assert copy_doc["ImageSetID"] == dst.id and copy_doc["DatastoreID"] == ds
    assert copy_doc["Study"] == source_doc["Study"] and copy_doc["Patient"] == source_doc["Patient"]
    # frames are shared: same ids, same blobs, one row per image set
    assert frame_rows(stores, dst.id) == frame_rows(stores, source)
    frame_id = next(iter(frame_rows(stores, source)))[0]
    assert retrieve.get_image_frame(stores, ds, dst.id, frame_id).data == \
        stores.blobs.get(keys.frame(ds, frame_id))
    with stores.catalog.read() as conn:
        assert {k: v["digest"] for k, v in edits.instance_rows(conn, dst.id).items()} == \
            {k: v["digest"] for k, v in edits.instance_rows(conn, source).items()}
    _, version = get_image_set_version(stores, ds, dst.id, 1)
    assert (version.workflow_status, version.forced, version.is_primary) == (ImageSetWorkflowStatus.COPIED, False, False)


def test_copiable_attributes_select_instances(stores: Stores, ds: str, source: str) -> None:
    doc = document(stores, ds, source)
    _, dst = copy_image_set(stores, ds, source, source_latest_version=1, copiable=pick(doc, 0, 2))
    everything = list(sops(doc))
    assert list(sops(document(stores, ds, dst.id))) == [everything[0], everything[2]]
    assert dst.number_of_instances == 2
    assert len(frame_rows(stores, dst.id)) == 4


@pytest.mark.parametrize("copiable, message", [
    ({"Study": {"Series": {}}}, "SchemaVersion is required"),
    ({"SchemaVersion": "1.1", "Study": {"Series": {}}}, "names no series"),
    ({"SchemaVersion": "1.1", "Study": {"Series": {"1.2.3": {}}}}, "series 1.2.3 is not in the source"),
    ({"SchemaVersion": "1.1", "Patient": {}}, "unknown key 'Patient'"),
])
def test_bad_copiable_attributes_are_refused(stores: Stores, ds: str, source: str, copiable: dict[str, Any],
                                             message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        copy_image_set(stores, ds, source, source_latest_version=1, copiable=copiable)


def test_an_unknown_instance_in_copiable_is_refused(stores: Stores, ds: str, source: str) -> None:
    series_uid = next(iter(document(stores, ds, source)["Study"]["Series"]))
    with pytest.raises(InvalidInput, match="instance 9.9 is not in that series"):
        copy_image_set(stores, ds, source, source_latest_version=1, copiable={
            "SchemaVersion": "1.1", "Study": {"Series": {series_uid: {"Instances": {"9.9": {}}}}}})


def test_a_copy_into_a_destination_merges_and_makes_a_new_version(stores: Stores, ds: str, source: str) -> None:
    doc = document(stores, ds, source)
    _, partial = copy_image_set(stores, ds, source, source_latest_version=1, copiable=pick(doc, 0))
    src, dst = copy_image_set(stores, ds, source, source_latest_version=1, copiable=pick(doc, 1, 2),
                              destination_image_set_id=partial.id, destination_latest_version=1)
    assert (dst.id, dst.latest_version, dst.workflow_status) == (partial.id, 2, ImageSetWorkflowStatus.COPIED)
    assert dst.number_of_instances == 3
    assert sops(document(stores, ds, dst.id)) == sops(doc)
    assert frame_rows(stores, dst.id) == frame_rows(stores, source)
    assert src.latest_version == 1


def test_stale_versions_are_conflicts(stores: Stores, ds: str, source: str) -> None:
    doc = document(stores, ds, source)
    _, partial = copy_image_set(stores, ds, source, source_latest_version=1, copiable=pick(doc, 0))
    with pytest.raises(Conflict, match="at version 1, not version 2"):
        copy_image_set(stores, ds, source, source_latest_version=2)
    with pytest.raises(Conflict, match="at version 1, not version 3"):
        copy_image_set(stores, ds, source, source_latest_version=1, copiable=pick(doc, 1),
                       destination_image_set_id=partial.id, destination_latest_version=3)
    with pytest.raises(InvalidInput, match="latestVersionId"):
        copy_image_set(stores, ds, source, source_latest_version=1, destination_image_set_id=partial.id)
    with pytest.raises(InvalidInput, match="the same"):
        copy_image_set(stores, ds, source, source_latest_version=1, destination_image_set_id=source,
                       destination_latest_version=1)


def test_sop_instance_uids_stay_unique_in_the_destination(stores: Stores, ds: str, source: str) -> None:
    doc = document(stores, ds, source)
    _, partial = copy_image_set(stores, ds, source, source_latest_version=1, copiable=pick(doc, 0))
    src, failed = copy_image_set(stores, ds, source, source_latest_version=1, copiable=pick(doc, 0, 1),
                                 destination_image_set_id=partial.id, destination_latest_version=1)
    # As in AHI, the failed merge is a version of the destination, with the same content and the reason.
    assert (failed.latest_version, failed.state, failed.workflow_status) == (
        2, ImageSetState.ACTIVE, ImageSetWorkflowStatus.COPY_FAILED)
    assert failed.message is not None and "unique within an image set" in failed.message
    assert document(stores, ds, partial.id, 2) == document(stores, ds, partial.id, 1)
    _, version = get_image_set_version(stores, ds, partial.id, 2)
    assert (version.workflow_status, version.message) == (ImageSetWorkflowStatus.COPY_FAILED, failed.message)
    assert (src.state, src.workflow_status, src.latest_version) == (
        ImageSetState.ACTIVE, ImageSetWorkflowStatus.COPY_FAILED, 1)


def test_inconsistent_metadata_needs_force_and_force_keeps_the_destination_metadata(
        stores: Stores, ds: str, source: str) -> None:
    other = make_image_set(stores, ds, study=uid("study2"), series=uid("series2"), count=1, patient_id="P2",
                           accession="ACC2")
    _, failed = copy_image_set(stores, ds, source, source_latest_version=1, destination_image_set_id=other,
                               destination_latest_version=1)
    assert failed.workflow_status == ImageSetWorkflowStatus.COPY_FAILED and failed.message is not None
    assert re.search(r"^INVALID_REQUEST: .*Patient\.PatientID.*Study\.AccessionNumber", failed.message)
    assert failed.number_of_instances == 1
    before = document(stores, ds, other)
    _, dst = copy_image_set(stores, ds, source, source_latest_version=1, destination_image_set_id=other,
                            destination_latest_version=2, force=True)
    after = document(stores, ds, other)
    assert (dst.latest_version, dst.number_of_instances, dst.patient_id) == (3, 4, "P2")
    assert (dst.workflow_status, dst.message) == (ImageSetWorkflowStatus.COPIED, None)
    assert after["Patient"] == before["Patient"] and after["Study"]["DICOM"] == before["Study"]["DICOM"]
    assert list(after["Study"]["Series"]) == [uid("series2")]  # copied instances joined its series
    with stores.catalog.read() as conn:
        rows = edits.instance_rows(conn, other)
    assert {(r["study_instance_uid"], r["series_instance_uid"]) for r in rows.values()} == \
        {(uid("study2"), uid("series2"))}
    _, version = get_image_set_version(stores, ds, other, 3)
    assert version.forced


def test_a_copy_of_more_than_1000_frames_exceeds_the_quota(stores: Stores, ds: str) -> None:
    big = make_image_set(stores, ds, study=uid("big"), series=uid("big"), count=3, frames=334)
    with pytest.raises(QuotaExceeded, match="1002 image frames"):
        copy_image_set(stores, ds, big, source_latest_version=1)
    doc = document(stores, ds, big)
    _, dst = copy_image_set(stores, ds, big, source_latest_version=1, copiable=pick(doc, 0, 1))
    assert len(frame_rows(stores, dst.id)) == 668


def test_a_deleted_source_or_destination_is_a_conflict(stores: Stores, ds: str, source: str) -> None:
    _, dst = copy_image_set(stores, ds, source, source_latest_version=1)
    delete_image_set(stores, ds, dst.id)
    with pytest.raises(Conflict, match="deleted"):
        copy_image_set(stores, ds, dst.id, source_latest_version=1)
    with pytest.raises(Conflict, match="deleted"):
        copy_image_set(stores, ds, source, source_latest_version=1, destination_image_set_id=dst.id,
                       destination_latest_version=1)


# -- promotion --------------------------------------------------------------------------------


@pytest.fixture
def conflicting(stores: Stores, ds: str, source: str) -> str:
    """Two more instances of the source's series with another PatientID: a non-primary image set."""
    image_set_id = make_image_set(stores, ds, study=uid("study"), series=uid("series"), count=2,
                                  patient_id="WRONG", start=10)
    assert not retrieve.get_image_set(stores, ds, image_set_id).is_primary
    return image_set_id


def _fix_patient_id(stores: Stores, ds: str, image_set_id: str) -> None:
    update_image_set_metadata(stores, ds, image_set_id, latest_version_id=1, updatable={
        "SchemaVersion": V, "Patient": {"DICOM": {"PatientID": "P1"}}}, force=True)


def test_a_fixed_non_primary_image_set_promotes_into_the_existing_primary(
        stores: Stores, ds: str, source: str, conflicting: str) -> None:
    with pytest.raises(Conflict, match=r"Patient\.PatientID"):
        copy_image_set(stores, ds, conflicting, source_latest_version=1, promote_to_primary=True)
    _fix_patient_id(stores, ds, conflicting)
    src, dst = copy_image_set(stores, ds, conflicting, source_latest_version=2, promote_to_primary=True)
    assert (dst.id, dst.is_primary, dst.latest_version) == (source, True, 2)
    assert dst.number_of_instances == 3 + 2
    assert (src.id, src.is_primary, src.latest_version) == (conflicting, False, 2)
    assert set(sops(document(stores, ds, conflicting))) <= set(sops(document(stores, ds, source)))


def test_promotion_without_a_primary_makes_a_new_primary_image_set(stores: Stores, ds: str, source: str,
                                                                   conflicting: str) -> None:
    delete_image_set(stores, ds, source)
    _, dst = copy_image_set(stores, ds, conflicting, source_latest_version=1, promote_to_primary=True)
    assert dst.id not in (source, conflicting)
    assert (dst.is_primary, dst.latest_version, dst.workflow_status) == (True, 1, ImageSetWorkflowStatus.COPIED)
    assert dst.patient_id == "WRONG"  # no other primary in the study to agree with
    _, version = get_image_set_version(stores, ds, dst.id, None)
    assert version.is_primary


def test_a_new_primary_series_must_agree_with_the_study_unless_forced(stores: Stores, ds: str,
                                                                      source: str) -> None:
    # a second series of the study whose instances carry another accession number
    other_series = make_image_set(stores, ds, study=uid("study"), series=uid("series", 2), count=1,
                                  accession="ACC-X")
    assert not retrieve.get_image_set(stores, ds, other_series).is_primary
    with pytest.raises(Conflict, match=r"Study\.AccessionNumber"):
        copy_image_set(stores, ds, other_series, source_latest_version=1, promote_to_primary=True)
    _, dst = copy_image_set(stores, ds, other_series, source_latest_version=1, promote_to_primary=True,
                            force=True)
    assert (dst.is_primary, dst.accession_number, dst.series_instance_uid) == (True, "ACC1", uid("series", 2))


def test_a_primary_image_set_cannot_be_promoted(stores: Stores, ds: str, source: str) -> None:
    with pytest.raises(InvalidInput, match="primary already"):
        copy_image_set(stores, ds, source, source_latest_version=1, promote_to_primary=True)


def test_promotion_into_a_named_destination_needs_a_primary_one(stores: Stores, ds: str, source: str,
                                                                conflicting: str) -> None:
    _, copy = copy_image_set(stores, ds, source, source_latest_version=1)
    with pytest.raises(InvalidInput, match="is not primary"):
        copy_image_set(stores, ds, conflicting, source_latest_version=1, promote_to_primary=True,
                       destination_image_set_id=copy.id, destination_latest_version=1)
