"""The life cycle on image sets made by a real import job from Part 10 files."""

from __future__ import annotations

import zlib
from pathlib import Path

import pydicom
import pytest

from tessel import retrieve
from tessel.catalog import query
from tessel.catalog.search import SearchCriteria, SearchFilter, search_image_sets
from tessel.errors import InvalidInput
from tessel.ingest import jobs
from tessel.lifecycle.datastores import create_datastore
from tessel.lifecycle.imagesets import copy_image_set, delete_image_set, update_image_set_metadata
from tessel.stores import Stores
from tests.factory import make_instance, make_series

V = 1.1


def imported(stores: Stores, ds: str, folder: Path, out: Path) -> list[str]:
    job = jobs.start_import_job(stores, ds, folder.as_uri(), out.as_uri())
    return [s["imageSetId"] for s in jobs.run_import_job(stores, job.id).image_sets]


def test_update_copy_and_delete_an_imported_series(stores: Stores, tmp_path: Path) -> None:
    ds = create_datastore(stores, "t").id
    files = make_series(tmp_path / "in", 3, extra={"SeriesDescription": "AX", "ImageComments": "raw"})
    (image_set_id,) = imported(stores, ds, tmp_path / "in", tmp_path / "out")
    doc = retrieve.get_metadata(stores, ds, image_set_id)
    (series_uid, series), = doc["Study"]["Series"].items()
    sop = next(iter(series["Instances"]))

    # Patient, series and instance attributes as import placed them
    with pytest.raises(InvalidInput, match="series-level attribute"):
        update_image_set_metadata(stores, ds, image_set_id, latest_version_id=1, updatable={
            "SchemaVersion": V, "Study": {"DICOM": {"SeriesDescription": "X"}}})
    result = update_image_set_metadata(stores, ds, image_set_id, latest_version_id=1, updatable={
        "SchemaVersion": V, "Patient": {"DICOM": {"PatientName": "Roe^Jane"}},
        "Study": {"Series": {series_uid: {"DICOM": {"SeriesDescription": "CORONAL"},
                                          "Instances": {sop: {"DICOM": {"ImageComments": "checked"}}}}}}})
    assert (result.latest_version, result.patient_name) == (2, "Roe^Jane")
    doc = retrieve.get_metadata(stores, ds, image_set_id)
    assert doc["Study"]["Series"][series_uid]["DICOM"]["SeriesDescription"] == "CORONAL"
    assert doc["Study"]["Series"][series_uid]["Instances"][sop]["DICOM"]["ImageComments"] == "checked"

    # a copy shares the frames; they still decode to the source pixels
    _, copy = copy_image_set(stores, ds, image_set_id, source_latest_version=2)
    copy_doc = retrieve.get_metadata(stores, ds, copy.id)
    for path in files:
        source = pydicom.dcmread(path)
        node = copy_doc["Study"]["Series"][series_uid]["Instances"][source.SOPInstanceUID]
        frame = retrieve.get_image_frame(stores, ds, copy.id, node["ImageFrames"][0]["ID"])
        pixels = retrieve.decode_stored_frame(frame.data, node)
        assert zlib.crc32(pixels.tobytes()) == zlib.crc32(source.pixel_array.tobytes())

    by_series = SearchCriteria((SearchFilter("EQUAL", "DICOMSeriesInstanceUID", (series_uid,)),))
    found = search_image_sets(stores.catalog, ds, by_series, limit=10, cursor=None).image_sets
    assert {s.id for s in found} == {image_set_id, copy.id}
    delete_image_set(stores, ds, copy.id)
    found = search_image_sets(stores.catalog, ds, by_series, limit=10, cursor=None).image_sets
    assert [s.id for s in found] == [image_set_id]


def test_a_conflicting_import_is_fixed_and_promoted(stores: Stores, tmp_path: Path) -> None:
    ds = create_datastore(stores, "t").id
    study, series = "1.2.826.0.1.3680043.10.9999.1", "1.2.826.0.1.3680043.10.9999.1.1"
    make_series(tmp_path / "a", 2, study=study, series=series)
    (primary,) = imported(stores, ds, tmp_path / "a", tmp_path / "out")
    make_instance(tmp_path / "b" / "x.dcm", study=study, series=series, patient_id="TYPO", instance_number=9,
                  seed=9)
    (non_primary,) = imported(stores, ds, tmp_path / "b", tmp_path / "out")
    assert non_primary != primary and not retrieve.get_image_set(stores, ds, non_primary).is_primary
    update_image_set_metadata(stores, ds, non_primary, latest_version_id=1, force=True, updatable={
        "SchemaVersion": V, "Patient": {"DICOM": {"PatientID": "P1"}}})
    _, destination = copy_image_set(stores, ds, non_primary, source_latest_version=2, promote_to_primary=True)
    assert (destination.id, destination.is_primary, destination.number_of_instances) == (primary, True, 3)
    # later imports of the corrected data keep going to the primary image set
    make_instance(tmp_path / "c" / "y.dcm", study=study, series=series, instance_number=10, seed=10)
    assert imported(stores, ds, tmp_path / "c", tmp_path / "out") == [primary]


def test_the_dicom_query_index_follows_updates_promotions_and_deletes(stores: Stores, tmp_path: Path) -> None:
    ds = create_datastore(stores, "t").id
    study, series = "1.2.826.0.1.3680043.10.9999.2", "1.2.826.0.1.3680043.10.9999.2.1"
    make_series(tmp_path / "a", 2, study=study, series=series)
    (primary,) = imported(stores, ds, tmp_path / "a", tmp_path / "out")

    def studies(**keys: str) -> list[dict[str, object]]:
        return query.query(stores.catalog, ds, "STUDY", keys)

    update_image_set_metadata(stores, ds, primary, latest_version_id=1, updatable={
        "SchemaVersion": V, "Patient": {"DICOM": {"PatientName": "Roe^Jane"}}})
    assert [s["StudyInstanceUID"] for s in studies(PatientName="Roe^Jane")] == [study]
    assert studies(PatientName="Doe^John") == []

    make_instance(tmp_path / "b" / "x.dcm", study=study, series=series, patient_id="TYPO", instance_number=9,
                  seed=9)
    (non_primary,) = imported(stores, ds, tmp_path / "b", tmp_path / "out")
    assert len(query.query(stores.catalog, ds, "IMAGE", {"StudyInstanceUID": study})) == 2  # primary only
    update_image_set_metadata(stores, ds, non_primary, latest_version_id=1, force=True, updatable={
        "SchemaVersion": V, "Patient": {"DICOM": {"PatientID": "P1", "PatientName": "Roe^Jane"}}})
    copy_image_set(stores, ds, non_primary, source_latest_version=2, promote_to_primary=True)
    assert len(query.query(stores.catalog, ds, "IMAGE", {"StudyInstanceUID": study})) == 3

    delete_image_set(stores, ds, primary)
    assert studies(StudyInstanceUID=study) == []
