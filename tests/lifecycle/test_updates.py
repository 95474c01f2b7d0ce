"""UpdateImageSetMetadata: versions, revert, validation, force rules, removals, study-wide updates."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from tessel import retrieve
from tessel.catalog import edits
from tessel.catalog.models import ImageSetWorkflowStatus
from tessel.catalog.sql.tables import frames, instances
from tessel.errors import Conflict, InvalidInput, NotFound
from tessel.ingest.assemble import assemble
from tessel.lifecycle.datastores import create_datastore
from tessel.lifecycle.imagesets import (delete_image_set, get_image_set_version,
                                        update_image_set_metadata)
from tessel.stores import Stores
from tests.lifecycle import document, make_image_set, sops, staged, uid

V = 1.1


@pytest.fixture
def ds(stores: Stores) -> str:
    return create_datastore(stores, "t").id


@pytest.fixture
def primary(stores: Stores, ds: str) -> str:
    return make_image_set(stores, ds, study=uid("study"), series=uid("series"), count=3, frames=2)


@pytest.fixture
def non_primary(stores: Stores, ds: str, primary: str) -> str:
    """Same series as `primary` but another PatientID: import makes it a non-primary image set."""
    image_set_id = make_image_set(stores, ds, study=uid("study"), series=uid("series"), count=2, frames=2,
                                  patient_id="OTHER")
    assert image_set_id != primary
    assert not retrieve.get_image_set(stores, ds, image_set_id).is_primary
    return image_set_id


def update(stores: Stores, ds: str, image_set_id: str, updatable: dict[str, Any] | None = None,
           removable: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    version = kwargs.pop("latest_version_id", None) or retrieve.get_image_set(stores, ds, image_set_id).latest_version
    return update_image_set_metadata(stores, ds, image_set_id, latest_version_id=version,
                                     updatable=updatable, removable=removable, **kwargs)


def instance_path(doc: dict[str, Any], index: int = 0) -> tuple[str, str]:
    (series_uid, series), = doc["Study"]["Series"].items()
    return series_uid, list(series["Instances"])[index]


def instance_update(doc: dict[str, Any], attributes: dict[str, Any], vrs: dict[str, str] | None = None,
                    index: int = 0) -> dict[str, Any]:
    series_uid, sop = instance_path(doc, index)
    node: dict[str, Any] = {"DICOM": attributes}
    if vrs is not None:
        node["DICOMVRs"] = vrs
    return {"SchemaVersion": V, "Study": {"Series": {series_uid: {"Instances": {sop: node}}}}}


def rows(stores: Stores, image_set_id: str) -> tuple[dict[str, Any], list[Any]]:
    with stores.catalog.read() as conn:
        instance_rows = edits.instance_rows(conn, image_set_id)
        frame_rows = list(conn.execute(sa.select(frames).where(frames.c.image_set_id == image_set_id)))
    return instance_rows, frame_rows


# -- versions ---------------------------------------------------------------------------------


def test_update_makes_version_2_and_keeps_version_1(stores: Stores, ds: str, primary: str) -> None:
    v1 = document(stores, ds, primary)
    result = update(stores, ds, primary, {"SchemaVersion": V, "Patient": {"DICOM": {"PatientName": "Roe^Jane"}},
                                          "Study": {"DICOM": {"AccessionNumber": "ACC9"}}})
    assert result.latest_version == 2
    assert result.workflow_status == ImageSetWorkflowStatus.UPDATED
    assert (result.patient_name, result.accession_number) == ("Roe^Jane", "ACC9")  # search columns follow
    v2 = document(stores, ds, primary)
    assert v2["Patient"]["DICOM"]["PatientName"] == "Roe^Jane"
    assert document(stores, ds, primary, 1) == v1
    _, version = get_image_set_version(stores, ds, primary, 2)
    assert (version.workflow_status, version.forced) == (ImageSetWorkflowStatus.UPDATED, False)


def test_revert_makes_a_new_version_with_the_old_content(stores: Stores, ds: str, primary: str) -> None:
    v1 = document(stores, ds, primary)
    update(stores, ds, primary, {"SchemaVersion": V, "Study": {"DICOM": {"StudyDescription": "HEAD"}}})
    result = update_image_set_metadata(stores, ds, primary, latest_version_id=2, revert_to_version_id=1)
    assert result.latest_version == 3
    assert document(stores, ds, primary) == v1
    assert result.study_description == "CHEST"
    assert document(stores, ds, primary, 2)["Study"]["DICOM"]["StudyDescription"] == "HEAD"


def test_revert_brings_back_removed_instances_and_their_frame_rows(stores: Stores, ds: str,
                                                                   primary: str) -> None:
    before_instances, before_frames = rows(stores, primary)
    doc = document(stores, ds, primary)
    series_uid, sop = instance_path(doc)
    update(stores, ds, primary, removable={"SchemaVersion": V, "Study": {"Series": {series_uid: {
        "Instances": {sop: {}}}}}}, force=True)
    assert sop not in rows(stores, primary)[0]
    result = update_image_set_metadata(stores, ds, primary, latest_version_id=2, revert_to_version_id=1)
    after_instances, after_frames = rows(stores, primary)
    assert set(after_instances) == set(before_instances)
    assert sorted(map(tuple, after_frames)) == sorted(map(tuple, before_frames))
    assert result.number_of_instances == 3
    frame_id = doc["Study"]["Series"][series_uid]["Instances"][sop]["ImageFrames"][1]["ID"]
    assert retrieve.get_image_frame(stores, ds, primary, frame_id).data == f"{sop}/1".encode()


def test_a_stale_latest_version_is_a_conflict_naming_both(stores: Stores, ds: str, primary: str) -> None:
    update(stores, ds, primary, {"SchemaVersion": V, "Study": {"DICOM": {"StudyDescription": "HEAD"}}})
    with pytest.raises(Conflict, match="at version 2, not version 1"):
        update_image_set_metadata(stores, ds, primary, latest_version_id=1, updatable={
            "SchemaVersion": V, "Study": {"DICOM": {"StudyDescription": "LEG"}}})
    assert retrieve.get_image_set(stores, ds, primary).latest_version == 2


@pytest.mark.parametrize("kwargs", [
    {"revert_to_version_id": 1, "updatable": {"SchemaVersion": V}},
    {},
    {"revert_to_version_id": 5},
    {"revert_to_version_id": 0},
])
def test_invalid_update_requests(stores: Stores, ds: str, primary: str, kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        update_image_set_metadata(stores, ds, primary, latest_version_id=1, **kwargs)


def test_missing_image_set_or_datastore_is_not_found(stores: Stores, ds: str, primary: str) -> None:
    payload = {"SchemaVersion": V, "Study": {"DICOM": {"StudyDescription": "X"}}}
    with pytest.raises(NotFound):
        update_image_set_metadata(stores, ds, "0" * 32, latest_version_id=1, updatable=payload)
    with pytest.raises(NotFound):
        update_image_set_metadata(stores, "0" * 32, primary, latest_version_id=1, updatable=payload)


def test_a_deleted_image_set_cannot_be_updated(stores: Stores, ds: str, primary: str) -> None:
    delete_image_set(stores, ds, primary)
    with pytest.raises(Conflict, match="deleted"):
        update_image_set_metadata(stores, ds, primary, latest_version_id=1, updatable={
            "SchemaVersion": V, "Study": {"DICOM": {"StudyDescription": "X"}}})


# -- payload validation -----------------------------------------------------------------------


@pytest.mark.parametrize("payload, message", [
    ({"Patient": {"DICOM": {"PatientName": "X"}}}, "SchemaVersion is required"),
    ({"SchemaVersion": 2, "Patient": {"DICOM": {"PatientName": "X"}}}, "SchemaVersion must be 1.1"),
    ({"SchemaVersion": V, "Series": {}}, "unknown key 'Series'"),
    ({"SchemaVersion": V, "DatastoreID": "x"}, "DatastoreID is generated"),
    ({"SchemaVersion": V, "ImageSetID": "x"}, "ImageSetID is generated"),
    ({"SchemaVersion": V, "Patient": {"Study": {}}}, "Patient: unknown key 'Study'"),
    ({"SchemaVersion": V, "Patient": {"DICOM": {"StudyDescription": "X"}}},
     "Patient.DICOM.StudyDescription: StudyDescription is a study-level attribute"),
    ({"SchemaVersion": V, "Study": {"DICOM": {"PatientName": "X"}}},
     "Study.DICOM.PatientName: PatientName is a patient-level attribute"),
    ({"SchemaVersion": V, "Study": {"DICOM": {"Modality": "MR"}}}, "Modality is a series-level attribute"),
    ({"SchemaVersion": V, "Study": {"DICOM": {"NotAKeyword": "X"}}}, "NotAKeyword is not a DICOM keyword"),
    ({"SchemaVersion": V, "Study": {"Series": {"1.2.3": {"DICOM": {"SeriesDescription": "X"}}}}},
     "series 1.2.3 is not in the image set"),
    ({"SchemaVersion": V, "Patient": {"DICOM": {"PatientName": {"Alphabetic": "X"}}}},
     "a value is a string, number, list or null"),
])
def test_malformed_payloads_are_refused_naming_the_problem(stores: Stores, ds: str, primary: str,
                                                           payload: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace(".", r"\.")):
        update(stores, ds, primary, payload, force=True)
    assert retrieve.get_image_set(stores, ds, primary).latest_version == 1


@pytest.mark.parametrize("key", ["PixelData", "Checksum", "Width", "Height", "MinPixelValue",
                                 "MaxPixelValue", "FrameSizeInBytes", "SchemaVersion", "ImageSetID"])
def test_generated_attributes_are_never_updatable(stores: Stores, ds: str, primary: str, key: str) -> None:
    doc = document(stores, ds, primary)
    with pytest.raises(InvalidInput, match=f"{key} is generated"):
        update(stores, ds, primary, instance_update(doc, {key: 1}), force=True)


def test_generated_instance_node_keys_are_never_updatable(stores: Stores, ds: str, primary: str) -> None:
    doc = document(stores, ds, primary)
    series_uid, sop = instance_path(doc)
    payload = {"SchemaVersion": V, "Study": {"Series": {series_uid: {"Instances": {sop: {"ImageFrames": []}}}}}}
    with pytest.raises(InvalidInput, match="ImageFrames is generated"):
        update(stores, ds, primary, payload, force=True)


def test_file_meta_information_is_never_updatable(stores: Stores, ds: str, primary: str) -> None:
    doc = document(stores, ds, primary)
    with pytest.raises(InvalidInput, match="file meta"):
        update(stores, ds, primary, instance_update(doc, {"TransferSyntaxUID": "1.2.840.10008.1.2"}),
               force=True)


def test_the_target_instance_must_exist(stores: Stores, ds: str, primary: str) -> None:
    doc = document(stores, ds, primary)
    series_uid, _ = instance_path(doc)
    payload = {"SchemaVersion": V, "Study": {"Series": {series_uid: {"Instances": {"1.2.3": {
        "DICOM": {"ImageComments": "x"}}}}}}}
    with pytest.raises(InvalidInput, match="instance 1.2.3 is not in that series"):
        update(stores, ds, primary, payload)


def test_a_hex_tag_of_a_public_attribute_means_its_keyword(stores: Stores, ds: str, primary: str) -> None:
    update(stores, ds, primary, {"SchemaVersion": "1.1", "Patient": {"DICOM": {"00100010": "Hex^Name"}}})
    assert document(stores, ds, primary)["Patient"]["DICOM"]["PatientName"] == "Hex^Name"


def test_values_take_the_shape_import_gives_them(stores: Stores, ds: str, primary: str) -> None:
    doc = document(stores, ds, primary)
    series_uid, _ = instance_path(doc)
    update(stores, ds, primary, {"SchemaVersion": V, "Study": {"Series": {series_uid: {
        "DICOM": {"SoftwareVersions": "2.0", "SeriesDescription": ["AX"]}}}}})
    series = document(stores, ds, primary)["Study"]["Series"][series_uid]["DICOM"]
    assert series["SoftwareVersions"] == ["2.0"]  # VM 1-n: always a list
    assert series["SeriesDescription"] == "AX"  # VM 1: a scalar


# -- force ------------------------------------------------------------------------------------


def _force_cases(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any] | None, dict[str, Any] | None, str]]:
    series_uid, sop = instance_path(doc)
    return [
        ("study id", {"SchemaVersion": V, "Study": {"DICOM": {"StudyID": "77"}}}, None, "changing StudyID"),
        ("private tag", instance_update(doc, {"00091001": "NEW"}), None, "private or unknown"),
        ("new private tag", instance_update(doc, {"001910F9": "97"}, {"001910F9": "DS"}), None,
         "private or unknown"),
        ("sequence", instance_update(doc, {"ReferencedImageSequence": [{"ReferencedSOPClassUID": "1.2"}]}),
         None, "sequence"),
        ("multi-valued", instance_update(doc, {"ImageType": ["DERIVED", "SECONDARY"]}), None,
         "multi-valued"),
        ("vr misfit", instance_update(doc, {"SliceThickness": "thick"}), None, "does not fit its VR"),
        ("date misfit", {"SchemaVersion": V, "Study": {"DICOM": {"StudyDate": "2024-01-01"}}}, None,
         "does not fit its VR"),
        ("number misfit", instance_update(doc, {"LargestImagePixelValue": "big"}), None, "does not fit its VR"),
        ("pixel description", instance_update(doc, {"Rows": 4}), None, "describes the stored pixels"),
        ("sop uid", instance_update(doc, {"SOPInstanceUID": "1.2.3.4"}), None, "changing SOPInstanceUID"),
        ("series uid", {"SchemaVersion": V, "Study": {"Series": {series_uid: {
            "DICOM": {"SeriesInstanceUID": "1.2.3.5"}}}}}, None, "changing SeriesInstanceUID"),
        ("study uid", {"SchemaVersion": V, "Study": {"DICOM": {"StudyInstanceUID": "1.2.3.6"}}}, None,
         "changing StudyInstanceUID"),
        ("remove instance", None, {"SchemaVersion": V, "Study": {"Series": {series_uid: {
            "Instances": {sop: {}}}}}}, "removing an instance"),
        ("remove private", None, instance_update(doc, {"00091001": None}), "private or unknown"),
        ("remove sequence", None, instance_update(doc, {"ReferencedImageSequence": None}), "sequence"),
    ]


@pytest.mark.parametrize("case", range(15))
def test_protected_changes_need_force_and_forced_versions_say_so(stores: Stores, ds: str, non_primary: str,
                                                                 case: int) -> None:
    doc = document(stores, ds, non_primary)
    name, updatable, removable, message = _force_cases(doc)[case]
    with pytest.raises(InvalidInput, match="needs force=true") as refused:
        update(stores, ds, non_primary, updatable, removable)
    assert message in refused.value.message, name
    assert retrieve.get_image_set(stores, ds, non_primary).latest_version == 1
    result = update(stores, ds, non_primary, updatable, removable, force=True)
    assert result.latest_version == 2
    _, version = get_image_set_version(stores, ds, non_primary, None)
    assert version.forced


def test_unprotected_changes_need_no_force(stores: Stores, ds: str, primary: str) -> None:
    doc = document(stores, ds, primary)
    result = update(stores, ds, primary, instance_update(doc, {"ImageComments": "better", "SliceThickness": "2.5"}))
    assert result.latest_version == 2
    node = document(stores, ds, primary)["Study"]["Series"][instance_path(doc)[0]]["Instances"][instance_path(doc)[1]]
    assert node["DICOM"]["ImageComments"] == "better"


@pytest.mark.parametrize("which", ["study", "series", "sop"])
def test_uids_of_a_primary_image_set_never_change_even_with_force(stores: Stores, ds: str, primary: str,
                                                                  which: str) -> None:
    doc = document(stores, ds, primary)
    series_uid, _ = instance_path(doc)
    payload = {
        "study": {"SchemaVersion": V, "Study": {"DICOM": {"StudyInstanceUID": "1.2.3.6"}}},
        "series": {"SchemaVersion": V, "Study": {"Series": {series_uid: {"DICOM": {"SeriesInstanceUID": "1.2.3.5"}}}}},
        "sop": instance_update(doc, {"SOPInstanceUID": "1.2.3.4"}),
    }[which]
    with pytest.raises(InvalidInput, match="primary image set cannot change, even with force"):
        update(stores, ds, primary, payload, force=True)


def test_a_new_private_attribute_needs_its_vr(stores: Stores, ds: str, non_primary: str) -> None:
    doc = document(stores, ds, non_primary)
    with pytest.raises(InvalidInput, match="give the VR"):
        update(stores, ds, non_primary, instance_update(doc, {"001910F9": "97"}), force=True)
    update(stores, ds, non_primary, instance_update(doc, {"001910F9": "97"}, {"001910F9": "DS"}), force=True)
    series_uid, sop = instance_path(doc)
    node = document(stores, ds, non_primary)["Study"]["Series"][series_uid]["Instances"][sop]
    assert (node["DICOM"]["001910F9"], node["DICOMVRs"]["001910F9"]) == ("97", "DS")


def test_an_invalid_uid_is_refused_even_with_force(stores: Stores, ds: str, non_primary: str) -> None:
    doc = document(stores, ds, non_primary)
    with pytest.raises(InvalidInput, match="not a valid UID"):
        update(stores, ds, non_primary, instance_update(doc, {"SOPInstanceUID": "1.02.x"}), force=True)


# -- removals and moved instances --------------------------------------------------------------


def test_removing_an_attribute_needs_its_stored_value_or_null(stores: Stores, ds: str, primary: str) -> None:
    with pytest.raises(InvalidInput, match="does not match the stored value"):
        update(stores, ds, primary, removable={"SchemaVersion": V, "Study": {"DICOM": {"StudyDescription": "HEAD"}}})
    update(stores, ds, primary, removable={"SchemaVersion": V, "Study": {"DICOM": {"StudyDescription": "CHEST"}}})
    assert "StudyDescription" not in document(stores, ds, primary)["Study"]["DICOM"]
    assert retrieve.get_image_set(stores, ds, primary).study_description is None
    update(stores, ds, primary, removable={"SchemaVersion": V, "Study": {"DICOM": {"AccessionNumber": None}}})
    assert "AccessionNumber" not in document(stores, ds, primary)["Study"]["DICOM"]
    with pytest.raises(InvalidInput, match="not in the image set metadata"):
        update(stores, ds, primary, removable={"SchemaVersion": V, "Study": {"DICOM": {"AccessionNumber": None}}})


def test_the_identifying_uids_cannot_be_removed(stores: Stores, ds: str, non_primary: str) -> None:
    with pytest.raises(InvalidInput, match="identifies the study"):
        update(stores, ds, non_primary, removable={"SchemaVersion": V, "Study": {"DICOM": {
            "StudyInstanceUID": None}}}, force=True)


def test_removed_then_updated_attribute_ends_updated(stores: Stores, ds: str, primary: str) -> None:
    update(stores, ds, primary, {"SchemaVersion": V, "Study": {"DICOM": {"StudyDescription": "NEW"}}},
           {"SchemaVersion": V, "Study": {"DICOM": {"StudyDescription": None}}})
    assert document(stores, ds, primary)["Study"]["DICOM"]["StudyDescription"] == "NEW"


def test_removing_an_instance_removes_its_instance_and_frame_rows(stores: Stores, ds: str, primary: str) -> None:
    doc = document(stores, ds, primary)
    series_uid, sop = instance_path(doc)
    frame_id = doc["Study"]["Series"][series_uid]["Instances"][sop]["ImageFrames"][0]["ID"]
    result = update(stores, ds, primary, removable={"SchemaVersion": V, "Study": {"Series": {series_uid: {
        "Instances": {sop: {}}}}}}, force=True)
    assert result.number_of_instances == 2
    instance_rows, frame_rows = rows(stores, primary)
    assert sop not in instance_rows and len(instance_rows) == 2
    assert {r.sop_instance_uid for r in frame_rows} == set(instance_rows)
    with pytest.raises(NotFound):
        retrieve.get_image_frame(stores, ds, primary, frame_id)
    assert sop not in sops(document(stores, ds, primary))


def test_removing_every_instance_is_refused(stores: Stores, ds: str, primary: str) -> None:
    series_uid, _ = instance_path(document(stores, ds, primary))
    with pytest.raises(InvalidInput, match="DeleteImageSet"):
        update(stores, ds, primary, removable={"SchemaVersion": V, "Study": {"Series": {series_uid: {}}}},
               force=True)


def test_a_changed_sop_instance_uid_moves_its_rows(stores: Stores, ds: str, non_primary: str) -> None:
    doc = document(stores, ds, non_primary)
    series_uid, sop = instance_path(doc)
    frame_ids = [f["ID"] for f in doc["Study"]["Series"][series_uid]["Instances"][sop]["ImageFrames"]]
    update(stores, ds, non_primary, instance_update(doc, {"SOPInstanceUID": "1.2.3.4"}), force=True)
    new_doc = document(stores, ds, non_primary)
    node = new_doc["Study"]["Series"][series_uid]["Instances"]["1.2.3.4"]
    assert sop not in sops(new_doc)
    assert node["DICOM"]["MediaStorageSOPInstanceUID"] == "1.2.3.4"
    instance_rows, frame_rows = rows(stores, non_primary)
    assert "1.2.3.4" in instance_rows and sop not in instance_rows
    assert sorted((r.frame_number, r.frame_id) for r in frame_rows if r.sop_instance_uid == "1.2.3.4") == \
        sorted(enumerate(frame_ids, 1))
    location = stores.catalog.get_frame(ds, non_primary, frame_ids[0])
    assert location is not None and location.sop_instance_uid == "1.2.3.4"


def test_a_duplicate_sop_instance_uid_is_refused(stores: Stores, ds: str, non_primary: str) -> None:
    doc = document(stores, ds, non_primary)
    _, other = instance_path(doc, 1)
    with pytest.raises(InvalidInput, match="twice"):
        update(stores, ds, non_primary, instance_update(doc, {"SOPInstanceUID": other}), force=True)


def test_changed_study_and_series_uids_move_rows_and_columns(stores: Stores, ds: str, non_primary: str) -> None:
    series_uid, _ = instance_path(document(stores, ds, non_primary))
    result = update(stores, ds, non_primary, {"SchemaVersion": V, "Study": {
        "DICOM": {"StudyInstanceUID": "1.2.3.6"},
        "Series": {series_uid: {"DICOM": {"SeriesInstanceUID": "1.2.3.5"}}}}}, force=True)
    assert (result.study_instance_uid, result.series_instance_uid) == ("1.2.3.6", "1.2.3.5")
    instance_rows, _ = rows(stores, non_primary)
    assert {(r["study_instance_uid"], r["series_instance_uid"]) for r in instance_rows.values()} == \
        {("1.2.3.6", "1.2.3.5")}
    assert list(document(stores, ds, non_primary)["Study"]["Series"]) == ["1.2.3.5"]


def test_unchanged_instances_keep_their_rows(stores: Stores, ds: str, primary: str) -> None:
    before, _ = rows(stores, primary)
    doc = document(stores, ds, primary)
    update(stores, ds, primary, instance_update(doc, {"ImageComments": "x"}))
    after, _ = rows(stores, primary)
    _, changed = instance_path(doc)
    assert {k: v for k, v in after.items() if k != changed} == {k: v for k, v in before.items() if k != changed}
    assert after[changed]["version_added"] == 2 and after[changed]["digest"] != before[changed]["digest"]


# -- study-wide updates ------------------------------------------------------------------------


@pytest.fixture
def study(stores: Stores, ds: str) -> dict[str, Any]:
    """Three primary series of one study, one non-primary image set of it, and another study."""
    study_uid = uid("multi")
    primaries = [make_image_set(stores, ds, study=study_uid, series=uid("multi", n), count=1) for n in range(3)]
    other = make_image_set(stores, ds, study=study_uid, series=uid("multi", 0), count=1, patient_id="OTHER")
    unrelated = make_image_set(stores, ds, study=uid("unrelated"), series=uid("unrelated", 0), count=1)
    return {"primaries": primaries, "non_primary": other, "unrelated": unrelated}


def test_include_study_image_sets_reaches_every_image_set_of_the_study(stores: Stores, ds: str,
                                                                       study: dict[str, Any]) -> None:
    target, *others = study["primaries"]
    result = update(stores, ds, target, {"SchemaVersion": V, "Patient": {"DICOM": {"PatientName": "Study^Wide"}},
                                         "Study": {"DICOM": {"StudyDescription": "ALL"}}},
                    include_study_image_sets=True)
    assert result.latest_version == 2
    for image_set_id in [target, *others, study["non_primary"]]:
        image_set = retrieve.get_image_set(stores, ds, image_set_id)
        assert (image_set.latest_version, image_set.workflow_status) == (2, ImageSetWorkflowStatus.UPDATED)
        assert (image_set.patient_name, image_set.study_description) == ("Study^Wide", "ALL")
        doc = document(stores, ds, image_set_id)
        assert doc["Study"]["DICOM"]["StudyDescription"] == "ALL"
    assert retrieve.get_image_set(stores, ds, study["unrelated"]).latest_version == 1


def test_a_study_change_on_one_of_several_primaries_needs_include_study(stores: Stores, ds: str,
                                                                        study: dict[str, Any]) -> None:
    target = study["primaries"][0]
    with pytest.raises(InvalidInput, match="includeStudyImageSets"):
        update(stores, ds, target, {"SchemaVersion": V, "Study": {"DICOM": {"StudyDescription": "ONE"}}})
    # series and instance changes concern this image set alone
    series_uid, _ = instance_path(document(stores, ds, target))
    update(stores, ds, target, {"SchemaVersion": V, "Study": {"Series": {series_uid: {
        "DICOM": {"SeriesDescription": "AX"}}}}})
    # the only primary image set of its study may change alone
    update(stores, ds, study["unrelated"], {"SchemaVersion": V, "Study": {"DICOM": {"StudyDescription": "ONE"}}})


def test_include_study_is_all_or_nothing(stores: Stores, ds: str, study: dict[str, Any]) -> None:
    # The study-wide StudyInstanceUID change is refused on the primary image sets, so nothing changes.
    with pytest.raises(InvalidInput, match="primary image set cannot change"):
        update(stores, ds, study["non_primary"], {"SchemaVersion": V, "Study": {"DICOM": {
            "StudyInstanceUID": "1.2.3.6"}}}, force=True, include_study_image_sets=True)
    for image_set_id in [*study["primaries"], study["non_primary"]]:
        assert retrieve.get_image_set(stores, ds, image_set_id).latest_version == 1


def test_a_locked_image_set_of_the_study_is_a_conflict(stores: Stores, ds: str, study: dict[str, Any]) -> None:
    with stores.catalog.write() as conn:
        stores.catalog.update_image_set(conn, study["primaries"][2], {"state": "LOCKED"})
    with pytest.raises(Conflict, match="locked"):
        update(stores, ds, study["primaries"][0], {"SchemaVersion": V, "Study": {"DICOM": {
            "StudyDescription": "ALL"}}}, include_study_image_sets=True)
    assert retrieve.get_image_set(stores, ds, study["primaries"][0]).latest_version == 1


def test_a_failed_update_rolls_back_and_leaves_no_blob_behind(stores: Stores, ds: str, study: dict[str, Any],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    before = sorted(stores.blobs.list(f"ds/{ds}/imagesets/"))
    real, calls = stores.catalog.insert_version, []

    def failing(conn: Any, version: Any) -> None:  # the third image set's commit breaks
        calls.append(version)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        real(conn, version)

    monkeypatch.setattr(stores.catalog, "insert_version", failing)
    with pytest.raises(RuntimeError):
        update(stores, ds, study["primaries"][0], {"SchemaVersion": V, "Study": {"DICOM": {
            "StudyDescription": "ALL"}}}, include_study_image_sets=True)
    assert sorted(stores.blobs.list(f"ds/{ds}/imagesets/")) == before
    for image_set_id in [*study["primaries"], study["non_primary"]]:
        assert retrieve.get_image_set(stores, ds, image_set_id).latest_version == 1
        assert document(stores, ds, image_set_id)["Study"]["DICOM"]["StudyDescription"] == "CHEST"


def test_a_re_import_of_an_updated_instance_file_replaces_it(stores: Stores, ds: str, primary: str) -> None:
    doc = document(stores, ds, primary)
    series_uid, sop = instance_path(doc)
    update(stores, ds, primary, instance_update(doc, {"ImageComments": "edited"}))
    again = staged(stores, ds, study=uid("study"), series=uid("series"), sop=sop, frames=2, instance_number=1)
    (placement,) = assemble(stores.catalog, stores.blobs, ds, [again])
    assert (placement.image_set_id, placement.version, placement.changed) == (primary, 3, True)
    node = document(stores, ds, primary)["Study"]["Series"][series_uid]["Instances"][sop]
    assert node["DICOM"]["ImageComments"] == "ok"


def test_instance_rows_keep_the_study_uid_index_consistent(stores: Stores, ds: str, non_primary: str) -> None:
    update(stores, ds, non_primary, {"SchemaVersion": V, "Study": {"DICOM": {"StudyInstanceUID": "1.2.3.6"}}},
           force=True)
    with stores.catalog.read() as conn:
        uids = {r.study_instance_uid for r in conn.execute(
            sa.select(instances.c.study_instance_uid).where(instances.c.image_set_id == non_primary))}
    assert uids == {"1.2.3.6"}
