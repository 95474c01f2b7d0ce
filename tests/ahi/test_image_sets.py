"""The image-set life cycle through boto3: import -> search -> metadata -> every frame pixel-exact
-> update -> revert -> copy/merge -> tags -> delete."""

from __future__ import annotations

import gzip
import json
import urllib.parse
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from botocore.exceptions import ClientError

from tessel.retrieve import decode_stored_frame
from tests.ahi.conftest import Server, import_folder
from tests.factory import make_instance, make_series

STUDY, SERIES = "1.2.826.0.1.3680043.10.1.1", "1.2.826.0.1.3680043.10.1.1.1"


def manifest_entry(job: dict[str, Any]) -> dict[str, Any]:
    """The one image set an import job made, from its manifest."""
    result = Path(urllib.parse.unquote(job["outputS3Uri"].removeprefix("file://")))
    (entry,) = json.loads((result / "job-output-manifest.json").read_text())["jobSummary"]["imageSetsSummary"]
    return dict(entry)


def metadata(client: Any, datastore: str, image_set: str, **kwargs: Any) -> dict[str, Any]:
    out = client.get_image_set_metadata(datastoreId=datastore, imageSetId=image_set, **kwargs)
    assert out["contentType"] == "application/json" and out["contentEncoding"] == "gzip"
    raw = out["imageSetMetadataBlob"].read()
    assert int(out["ResponseMetadata"]["HTTPHeaders"]["content-length"]) == len(raw)
    doc: dict[str, Any] = json.loads(gzip.decompress(raw))
    return doc


def instances(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {sop: node for series in doc["Study"]["Series"].values() for sop, node in series["Instances"].items()}


def copiable(sops: list[str], series: str = SERIES) -> str:
    return json.dumps({"SchemaVersion": "1.1",
                       "Study": {"Series": {series: {"Instances": {sop: {} for sop in sops}}}}})


def source_frames(path: Path) -> list[np.ndarray]:
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array
    return list(pixels) if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1 else [pixels]


def test_the_full_life_cycle(client: Any, server: Server, datastore: str) -> None:
    folder = server.new_folder()
    files = make_series(folder, 4, study=STUDY, series=SERIES, extra={"StudyDescription": "original"})
    files.append(make_instance(folder / "multi.dcm", study=STUDY, series=SERIES, instance_number=9, seed=9,
                               frames=3, rows=16, columns=24, extra={"StudyDescription": "original"}))
    sources = {pydicom.dcmread(p).SOPInstanceUID: p for p in files}

    # import -> manifest
    job = import_folder(client, server, datastore, folder)
    result = Path(urllib.parse.unquote(job["outputS3Uri"].removeprefix("file://")))
    summary = json.loads((result / "job-output-manifest.json").read_text())["jobSummary"]
    (entry,) = summary["imageSetsSummary"]
    image_set = entry["imageSetId"]
    assert entry["numberOfMatchedSOPInstances"] == 5

    # search -> summary
    found = client.search_image_sets(datastoreId=datastore, searchCriteria={"filters": [
        {"operator": "EQUAL", "values": [{"DICOMSeriesInstanceUID": SERIES}]}]})
    (hit,) = found["imageSetsMetadataSummaries"]
    assert hit["imageSetId"] == image_set and hit["version"] == 1 and hit["isPrimary"] is True
    tags = hit["DICOMTags"]
    assert tags["DICOMPatientId"] == "P1" and tags["DICOMStudyInstanceUID"] == STUDY
    assert tags["DICOMNumberOfStudyRelatedInstances"] == 5 and tags["DICOMSeriesModality"] == "CT"
    assert tags["DICOMStudyDate"] == "20240101"

    # GetImageSet
    props = client.get_image_set(datastoreId=datastore, imageSetId=image_set)
    assert props["versionId"] == "1" and props["imageSetState"] == "ACTIVE"
    assert props["imageSetArn"] == (f"arn:aws:medical-imaging:us-east-1:000000000000:datastore/{datastore}"
                                    f"/imageset/{image_set}")
    assert props["isPrimary"] is True and props["storageTier"] == "FREQUENT_ACCESS"

    # metadata -> every frame, decoded, equals the source pixels
    doc = metadata(client, datastore, image_set)
    assert doc["ImageSetID"] == image_set and doc["DatastoreID"] == datastore
    nodes = instances(doc)
    assert set(nodes) == set(sources)
    frames_seen = 0
    for sop, node in nodes.items():
        expected = source_frames(sources[sop])
        assert len(node["ImageFrames"]) == len(expected)
        for frame, pixels in zip(node["ImageFrames"], expected):
            out = client.get_image_frame(datastoreId=datastore, imageSetId=image_set,
                                         imageFrameInformation={"imageFrameId": frame["ID"]})
            assert out["contentType"] == "image/jph"
            decoded = decode_stored_frame(out["imageFrameBlob"].read(), node)
            assert decoded.shape == pixels.shape and np.array_equal(decoded, pixels)
            frames_seen += 1
    assert frames_seen == 7

    # update -> version 2
    update = {"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyDescription": "updated"}}}
    out = client.update_image_set_metadata(
        datastoreId=datastore, imageSetId=image_set, latestVersionId="1",
        updateImageSetMetadataUpdates={"DICOMUpdates": {"updatableAttributes": json.dumps(update).encode()}})
    assert out["latestVersionId"] == "2" and out["imageSetId"] == image_set
    assert out["imageSetState"] == "ACTIVE" and out["imageSetWorkflowStatus"] == "UPDATED"
    assert metadata(client, datastore, image_set)["Study"]["DICOM"]["StudyDescription"] == "updated"
    assert metadata(client, datastore, image_set, versionId="1")["Study"]["DICOM"]["StudyDescription"] == "original"
    with pytest.raises(client.exceptions.ConflictException):  # stale latestVersion
        client.update_image_set_metadata(
            datastoreId=datastore, imageSetId=image_set, latestVersionId="1",
            updateImageSetMetadataUpdates={"DICOMUpdates": {"updatableAttributes": json.dumps(update).encode()}})

    # revert -> version 3 has version 1's content
    out = client.update_image_set_metadata(datastoreId=datastore, imageSetId=image_set, latestVersionId="2",
                                           updateImageSetMetadataUpdates={"revertToVersionId": "1"})
    assert out["latestVersionId"] == "3"
    assert metadata(client, datastore, image_set)["Study"]["DICOM"]["StudyDescription"] == "original"
    v2 = client.get_image_set(datastoreId=datastore, imageSetId=image_set, versionId="2")
    assert v2["versionId"] == "2" and v2["imageSetWorkflowStatus"] == "UPDATED"

    # versions, paged one at a time
    pages = list(client.get_paginator("list_image_set_versions").paginate(
        datastoreId=datastore, imageSetId=image_set, PaginationConfig={"PageSize": 1}))
    listed = [v for p in pages for v in p["imageSetPropertiesList"]]
    assert [v["versionId"] for v in listed] == ["3", "2", "1"]
    assert all("ImageSetWorkflowStatus" in v and "imageSetWorkflowStatus" not in v for v in listed)
    assert len({p.get("nextToken") for p in pages}) == len(pages)

    # copy two instances to a new image set, then merge a third into it
    sops = sorted(nodes)
    copied = client.copy_image_set(datastoreId=datastore, sourceImageSetId=image_set, copyImageSetInformation={
        "sourceImageSet": {"latestVersionId": "3", "DICOMCopies": {"copiableAttributes": copiable(sops[:2])}}})
    destination = copied["destinationImageSetProperties"]
    assert copied["sourceImageSetProperties"]["imageSetId"] == image_set
    assert destination["imageSetId"] != image_set and destination["latestVersionId"] == "1"
    assert destination["imageSetArn"].endswith(f"/imageset/{destination['imageSetId']}")
    assert set(instances(metadata(client, datastore, destination["imageSetId"]))) == set(sops[:2])
    merged = client.copy_image_set(datastoreId=datastore, sourceImageSetId=image_set, copyImageSetInformation={
        "sourceImageSet": {"latestVersionId": "3", "DICOMCopies": {"copiableAttributes": copiable(sops[2:3])}},
        "destinationImageSet": {"imageSetId": destination["imageSetId"], "latestVersionId": "1"}})
    assert merged["destinationImageSetProperties"]["latestVersionId"] == "2"
    copy_doc = metadata(client, datastore, destination["imageSetId"])
    copy_nodes = instances(copy_doc)
    assert set(copy_nodes) == set(sops[:3])
    for sop, node in copy_nodes.items():  # the copy's frames are readable under its own id
        frame = node["ImageFrames"][0]
        out = client.get_image_frame(datastoreId=datastore, imageSetId=destination["imageSetId"],
                                     imageFrameInformation={"imageFrameId": frame["ID"]})
        assert np.array_equal(decode_stored_frame(out["imageFrameBlob"].read(), node),
                              source_frames(sources[sop])[0])

    # tags on an image set (its ARN travels percent-encoded)
    arn = destination["imageSetArn"]
    client.tag_resource(resourceArn=arn, tags={"purpose": "teaching"})
    assert client.list_tags_for_resource(resourceArn=arn)["tags"] == {"purpose": "teaching"}
    client.untag_resource(resourceArn=arn, tagKeys=["purpose"])
    assert client.list_tags_for_resource(resourceArn=arn)["tags"] == {}

    # delete
    with pytest.raises(client.exceptions.ConflictException):
        client.delete_datastore(datastoreId=datastore)
    for target in (destination["imageSetId"], image_set):
        out = client.delete_image_set(datastoreId=datastore, imageSetId=target)
        assert out["imageSetId"] == target and out["imageSetState"] == "DELETED"
        assert client.get_image_set(datastoreId=datastore, imageSetId=target)["imageSetState"] == "DELETED"
        with pytest.raises(client.exceptions.ResourceNotFoundException):
            client.get_image_set_metadata(datastoreId=datastore, imageSetId=target)
    assert client.search_image_sets(datastoreId=datastore)["imageSetsMetadataSummaries"] == []
    assert client.delete_datastore(datastoreId=datastore)["datastoreStatus"] == "DELETED"


def test_a_jpeg_2000_datastore_stores_and_serves_j2k_frames(client: Any, server: Server) -> None:
    datastore = client.create_datastore(datastoreName="j2k",
                                        losslessStorageFormat="JPEG_2000_LOSSLESS")["datastoreId"]
    folder = server.new_folder()
    (path,) = make_series(folder, 1)
    job = import_folder(client, server, datastore, folder)
    result = Path(urllib.parse.unquote(job["outputS3Uri"].removeprefix("file://")))
    (entry,) = json.loads((result / "job-output-manifest.json").read_text())["jobSummary"]["imageSetsSummary"]
    (node,) = instances(metadata(client, datastore, entry["imageSetId"])).values()
    assert node["StoredTransferSyntaxUID"] == "1.2.840.10008.1.2.4.90"
    out = client.get_image_frame(datastoreId=datastore, imageSetId=entry["imageSetId"],
                                 imageFrameInformation={"imageFrameId": node["ImageFrames"][0]["ID"]})
    assert np.array_equal(decode_stored_frame(out["imageFrameBlob"].read(), node), pydicom.dcmread(path).pixel_array)


@pytest.fixture(scope="module")
def imported(client: Any, server: Server) -> tuple[str, str]:
    """A datastore with one imported single-instance image set (for error cases); (datastore, image set)."""
    datastore = client.create_datastore(datastoreName="errors")["datastoreId"]
    folder = server.new_folder()
    make_series(folder, 1)
    job = import_folder(client, server, datastore, folder)
    result = Path(urllib.parse.unquote(job["outputS3Uri"].removeprefix("file://")))
    (entry,) = json.loads((result / "job-output-manifest.json").read_text())["jobSummary"]["imageSetsSummary"]
    return datastore, entry["imageSetId"]


UNKNOWN = "0" * 32


@pytest.mark.parametrize(("call", "kwargs", "expected"), [
    ("get_image_set", {"imageSetId": UNKNOWN}, "ResourceNotFoundException"),
    ("get_image_set", {"versionId": "99"}, "ResourceNotFoundException"),
    ("get_image_set", {"versionId": "one"}, "ValidationException"),
    ("get_image_set", {"imageSetId": "BAD"}, "ValidationException"),
    ("get_image_set_metadata", {"imageSetId": UNKNOWN}, "ResourceNotFoundException"),
    ("get_image_set_metadata", {"versionId": "99"}, "ResourceNotFoundException"),
    ("get_image_set_metadata", {"versionId": "0"}, "ResourceNotFoundException"),
    ("get_image_set", {"versionId": "0"}, "ResourceNotFoundException"),
    ("get_image_frame", {"imageFrameInformation": {"imageFrameId": UNKNOWN}}, "ResourceNotFoundException"),
    ("get_image_frame", {"imageFrameInformation": {"imageFrameId": "not-a-frame"}}, "ValidationException"),
    ("list_image_set_versions", {"imageSetId": UNKNOWN}, "ResourceNotFoundException"),
    ("list_image_set_versions", {"maxResults": 100}, "ValidationException"),
    ("list_image_set_versions", {"nextToken": "garbage!"}, "ValidationException"),
    ("delete_image_set", {"imageSetId": UNKNOWN}, "ResourceNotFoundException"),
    ("update_image_set_metadata", {"latestVersionId": "7", "updateImageSetMetadataUpdates": {
        "DICOMUpdates": {"updatableAttributes": b'{"SchemaVersion": 1.1}'}}}, "ConflictException"),
    ("update_image_set_metadata", {"latestVersionId": "1", "updateImageSetMetadataUpdates": {
        "DICOMUpdates": {"updatableAttributes": b"not json"}}}, "ValidationException"),
    ("copy_image_set", {"copyImageSetInformation": {"sourceImageSet": {"latestVersionId": "5"}}},
     "ConflictException"),
    ("copy_image_set", {"copyImageSetInformation": {"sourceImageSet": {
        "latestVersionId": "1", "DICOMCopies": {"copiableAttributes": "{not json"}}}}, "ValidationException"),
    ("copy_image_set", {"copyImageSetInformation": {"sourceImageSet": {"latestVersionId": "1"},
                                                    "destinationImageSet": {"imageSetId": UNKNOWN,
                                                                            "latestVersionId": "1"}}},
     "ResourceNotFoundException"),
])
def test_image_set_errors(client: Any, imported: tuple[str, str], call: str, kwargs: dict[str, Any],
                          expected: str) -> None:
    datastore, image_set = imported
    kwargs = {"datastoreId": datastore, **kwargs}
    kwargs.setdefault("sourceImageSetId" if call == "copy_image_set" else "imageSetId", image_set)
    with pytest.raises(ClientError) as caught:
        getattr(client, call)(**kwargs)
    assert caught.value.response["Error"]["Code"] == expected, caught.value.response["Error"]


def test_the_unknown_datastore_is_not_found_on_every_image_set_operation(client: Any,
                                                                        imported: tuple[str, str]) -> None:
    _, image_set = imported
    calls: list[tuple[str, dict[str, Any]]] = [
        ("get_image_set", {}), ("get_image_set_metadata", {}), ("list_image_set_versions", {}),
        ("get_image_frame", {"imageFrameInformation": {"imageFrameId": UNKNOWN}}), ("search_image_sets", {})]
    for call, kwargs in calls:
        if call != "search_image_sets":
            kwargs["imageSetId"] = image_set
        with pytest.raises(client.exceptions.ResourceNotFoundException):
            getattr(client, call)(datastoreId=UNKNOWN, **kwargs)


def test_the_server_refuses_a_union_with_two_members(server: Server, imported: tuple[str, str]) -> None:
    datastore, image_set = imported
    unchecked = server.client(parameter_validation=False)  # botocore would refuse it client-side
    with pytest.raises(unchecked.exceptions.ValidationException) as caught:
        unchecked.update_image_set_metadata(
            datastoreId=datastore, imageSetId=image_set, latestVersionId="1",
            updateImageSetMetadataUpdates={"revertToVersionId": "1",
                                           "DICOMUpdates": {"updatableAttributes": b'{"SchemaVersion": 1.1}'}})
    assert "updateImageSetMetadataUpdates" in str(caught.value)
    with pytest.raises(unchecked.exceptions.ValidationException) as caught:
        unchecked.list_image_set_versions(datastoreId=datastore, imageSetId=image_set, maxResults=0)
    assert "'maxResults'" in str(caught.value)


def test_a_merge_that_does_not_fit_leaves_a_copy_failed_version_with_its_reason(client: Any, server: Server,
                                                                               datastore: str) -> None:
    """As AHI does: the call is accepted, the destination's history records the failure and why."""
    first, second = server.new_folder(), server.new_folder()
    make_series(first, 1, study=STUDY, series=SERIES)
    make_series(second, 1, study="1.2.826.0.1.3680043.10.4.2", series="1.2.826.0.1.3680043.10.4.2.1",
                patient_id="SOMEONE-ELSE")
    source = manifest_entry(import_folder(client, server, datastore, first))["imageSetId"]
    target = manifest_entry(import_folder(client, server, datastore, second))["imageSetId"]
    out = client.copy_image_set(datastoreId=datastore, sourceImageSetId=source, copyImageSetInformation={
        "sourceImageSet": {"latestVersionId": "1"},
        "destinationImageSet": {"imageSetId": target, "latestVersionId": "1"}})
    destination = out["destinationImageSetProperties"]
    assert (destination["imageSetState"], destination["imageSetWorkflowStatus"], destination["latestVersionId"]) == (
        "ACTIVE", "COPY_FAILED", "2")
    props = client.get_image_set(datastoreId=datastore, imageSetId=target)
    assert props["imageSetWorkflowStatus"] == "COPY_FAILED"
    assert props["message"].startswith("INVALID_REQUEST: ") and "Patient.PatientID" in props["message"]
    versions = client.list_image_set_versions(datastoreId=datastore, imageSetId=target)["imageSetPropertiesList"]
    assert [(v["versionId"], v["ImageSetWorkflowStatus"]) for v in versions] == [("2", "COPY_FAILED"),
                                                                                 ("1", "CREATED")]
    assert versions[0]["message"] == props["message"]
    assert len(instances(metadata(client, datastore, target))) == 1  # nothing was merged
    # forced, the copy goes through (the destination keeps its own Patient/Study/Series metadata)
    forced = client.copy_image_set(datastoreId=datastore, sourceImageSetId=source, force=True,
                                   copyImageSetInformation={
                                       "sourceImageSet": {"latestVersionId": "1"},
                                       "destinationImageSet": {"imageSetId": target, "latestVersionId": "2"}})
    assert forced["destinationImageSetProperties"]["imageSetWorkflowStatus"] == "COPIED"
    assert client.get_image_set(datastoreId=datastore, imageSetId=target, versionId="3")["overrides"] == {
        "forced": True}
    assert len(instances(metadata(client, datastore, target))) == 2


def test_deleting_the_datastore_deletes_every_stored_byte(client: Any, server: Server) -> None:
    datastore = client.create_datastore(datastoreName="to-be-emptied")["datastoreId"]
    folder = server.new_folder()
    make_series(folder, 2)
    image_set = manifest_entry(import_folder(client, server, datastore, folder))["imageSetId"]
    assert server.stored_keys(f"ds/{datastore}/")
    assert client.delete_image_set(datastoreId=datastore, imageSetId=image_set)["imageSetState"] == "DELETED"
    assert client.delete_datastore(datastoreId=datastore)["datastoreStatus"] == "DELETED"
    assert server.stored_keys(f"ds/{datastore}/") == []
    assert datastore in [d["datastoreId"] for d in client.list_datastores(datastoreStatus="DELETED")[
        "datastoreSummaries"]]
