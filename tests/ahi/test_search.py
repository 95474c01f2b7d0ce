"""SearchImageSets through boto3: every filter attribute and operator, sorts, pages, errors."""

from __future__ import annotations

import datetime as dt
import json
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.ahi.conftest import Server, import_folder
from tests.factory import make_series

BASE = "1.2.826.0.1.3680043.10.2"
SETS = {  # name -> (patient, accession, study id, study date, study time)
    "a": ("PA", "ACC-A", "S1", "20240101", "101500"),
    "b": ("PB", "ACC-B", "S2", "20230615", "080000"),
    "c": ("PA", "ACC-C", "S3", "20220301", "235959.5"),
}


@pytest.fixture(scope="module")
def searchable(client: Any, server: Server) -> dict[str, Any]:
    """Three image sets (three studies), imported one job each so their times differ."""
    datastore = client.create_datastore(datastoreName="search")["datastoreId"]
    ids: dict[str, str] = {}
    uids: dict[str, tuple[str, str]] = {}
    for i, (name, (patient, accession, study_id, date, time)) in enumerate(SETS.items()):
        folder = server.new_folder(name)
        study, series = f"{BASE}.{i + 1}", f"{BASE}.{i + 1}.1"
        make_series(folder, 2, study=study, series=series, patient_id=patient,
                    extra={"AccessionNumber": accession, "StudyID": study_id, "StudyDate": date,
                           "StudyTime": time})
        job = import_folder(client, server, datastore, folder)
        result = Path(urllib.parse.unquote(job["outputS3Uri"].removeprefix("file://")))
        (entry,) = json.loads((result / "job-output-manifest.json").read_text())["jobSummary"]["imageSetsSummary"]
        ids[name] = entry["imageSetId"]
        uids[name] = (study, series)
    return {"datastore": datastore, "ids": ids, "uids": uids}


def search(client: Any, datastore: str, *filters: dict[str, Any], sort: dict[str, str] | None = None) -> list[str]:
    criteria: dict[str, Any] = {}
    if filters:
        criteria["filters"] = list(filters)
    if sort:
        criteria["sort"] = sort
    pages = client.get_paginator("search_image_sets").paginate(datastoreId=datastore, searchCriteria=criteria)
    return [s["imageSetId"] for p in pages for s in p["imageSetsMetadataSummaries"]]


def equal(field: str, value: Any) -> dict[str, Any]:
    return {"operator": "EQUAL", "values": [{field: value}]}


def between(field: str, low: Any, high: Any) -> dict[str, Any]:
    return {"operator": "BETWEEN", "values": [{field: low}, {field: high}]}


def names(found: list[str], ids: dict[str, str]) -> list[str]:
    by_id = {v: k for k, v in ids.items()}
    return [by_id[i] for i in found]


def test_every_equal_attribute(client: Any, searchable: dict[str, Any]) -> None:
    ds, ids, uids = searchable["datastore"], searchable["ids"], searchable["uids"]
    assert sorted(names(search(client, ds, equal("DICOMPatientId", "PA")), ids)) == ["a", "c"]
    assert names(search(client, ds, equal("DICOMAccessionNumber", "ACC-B")), ids) == ["b"]
    assert names(search(client, ds, equal("DICOMStudyId", "S3")), ids) == ["c"]
    assert names(search(client, ds, equal("DICOMStudyInstanceUID", uids["a"][0])), ids) == ["a"]
    assert names(search(client, ds, equal("DICOMSeriesInstanceUID", uids["b"][1])), ids) == ["b"]
    assert sorted(names(search(client, ds, equal("isPrimary", True)), ids)) == ["a", "b", "c"]
    assert search(client, ds, equal("isPrimary", False)) == []
    assert search(client, ds, equal("DICOMPatientId", "nobody")) == []


def test_every_range_attribute(client: Any, searchable: dict[str, Any]) -> None:
    ds, ids = searchable["datastore"], searchable["ids"]
    created = {name: client.get_image_set(datastoreId=ds, imageSetId=i)["createdAt"] for name, i in ids.items()}
    # Bounds 1 ms wide of the values: timestamps travel as epoch floats, datetimes hold microseconds.
    ms = dt.timedelta(milliseconds=1)
    window = between("createdAt", created["b"] - ms, created["c"] + ms)
    assert sorted(names(search(client, ds, window), ids)) == ["b", "c"]
    everything = between("updatedAt", dt.datetime(2020, 1, 1), dt.datetime.now() + dt.timedelta(days=1))
    assert sorted(names(search(client, ds, everything), ids)) == ["a", "b", "c"]
    in_2023 = between("DICOMStudyDateAndTime", {"DICOMStudyDate": "20230101"},
                      {"DICOMStudyDate": "20231231", "DICOMStudyTime": "235959"})
    assert names(search(client, ds, in_2023), ids) == ["b"]
    # A missing time is 00:00:00, so an upper bound of 20220301 excludes c (23:59:59.5 that day).
    early = between("DICOMStudyDateAndTime", {"DICOMStudyDate": "20000101"}, {"DICOMStudyDate": "20220301"})
    assert search(client, ds, early) == []
    late = between("DICOMStudyDateAndTime", {"DICOMStudyDate": "20220301", "DICOMStudyTime": "235959.4"},
                   {"DICOMStudyDate": "20220301", "DICOMStudyTime": "235959.6"})
    assert names(search(client, ds, late), ids) == ["c"]


def test_two_filters_combine_with_and(client: Any, searchable: dict[str, Any]) -> None:
    ds, ids = searchable["datastore"], searchable["ids"]
    found = search(client, ds, equal("DICOMPatientId", "PA"),
                   between("DICOMStudyDateAndTime", {"DICOMStudyDate": "20230101"}, {"DICOMStudyDate": "20250101"}))
    assert names(found, ids) == ["a"]


def test_sorts(client: Any, searchable: dict[str, Any]) -> None:
    ds, ids = searchable["datastore"], searchable["ids"]
    assert names(search(client, ds), ids) == ["c", "b", "a"]  # default: updatedAt, newest first
    assert names(search(client, ds, sort={"sortField": "createdAt", "sortOrder": "ASC"}), ids) == ["a", "b", "c"]
    assert names(search(client, ds, sort={"sortField": "DICOMStudyDateAndTime", "sortOrder": "ASC"}), ids) == [
        "c", "b", "a"]
    assert names(search(client, ds, sort={"sortField": "DICOMStudyDateAndTime", "sortOrder": "DESC"}), ids) == [
        "a", "b", "c"]


def test_search_pages_carry_the_sort_and_new_tokens(client: Any, searchable: dict[str, Any]) -> None:
    ds = searchable["datastore"]
    sort = {"sortField": "createdAt", "sortOrder": "DESC"}
    pages = list(client.get_paginator("search_image_sets").paginate(
        datastoreId=ds, searchCriteria={"sort": sort}, PaginationConfig={"PageSize": 1}))
    assert [len(p["imageSetsMetadataSummaries"]) for p in pages] == [1, 1, 1]
    assert all(p["sort"] == sort for p in pages)
    tokens = [p["nextToken"] for p in pages if "nextToken" in p]
    assert len(tokens) == 2 and len(set(tokens)) == 2
    summary = pages[0]["imageSetsMetadataSummaries"][0]
    assert isinstance(summary["version"], int) and summary["version"] == 1
    assert summary["DICOMTags"]["DICOMNumberOfStudyRelatedSeries"] == 1
    full = client.get_paginator("search_image_sets").paginate(
        datastoreId=ds, searchCriteria={"sort": sort}, PaginationConfig={"PageSize": 1}).build_full_result()
    assert full["sort"] == sort and len(full["imageSetsMetadataSummaries"]) == 3


@pytest.mark.parametrize(("criteria", "max_results", "field"), [
    ({}, 51, "maxResults"),
    ({"filters": [between("DICOMPatientId", "A", "B")]}, None, "operator"),
    ({"filters": [{"operator": "EQUAL", "values": [{"DICOMPatientId": "A"}, {"DICOMPatientId": "B"}]}]}, None,
     "values"),
    ({"filters": [{"operator": "BETWEEN", "values": [{"createdAt": dt.datetime(2024, 1, 1)}]}]}, None, "values"),
    ({"filters": [equal("createdAt", dt.datetime(2024, 1, 1))]}, None, "operator"),
    ({"filters": [{"operator": "BETWEEN", "values": [{"createdAt": dt.datetime(2024, 1, 1)},
                                                     {"updatedAt": dt.datetime(2024, 2, 1)}]}]}, None, "values"),
    ({"filters": [between("createdAt", dt.datetime(2024, 2, 1), dt.datetime(2024, 1, 1))]}, None, "values"),
    ({"filters": [between("DICOMStudyDateAndTime", {"DICOMStudyDate": "2024-01-01"},
                          {"DICOMStudyDate": "20240102"})]}, None, "DICOMStudyDate"),
    ({"filters": [between("DICOMStudyDateAndTime", {"DICOMStudyDate": "20240101", "DICOMStudyTime": "25h"},
                          {"DICOMStudyDate": "20240102"})]}, None, "DICOMStudyTime"),
    ({"filters": [equal("DICOMStudyInstanceUID", "not a uid")]}, None, "DICOMStudyInstanceUID"),
    ({"filters": [equal("DICOMPatientId", "P")] * 3}, None, "filters"),
    ({"sort": {"sortField": "DICOMPatientId", "sortOrder": "ASC"}}, None, "sortField"),
    ({"sort": {"sortField": "createdAt", "sortOrder": "UP"}}, None, "sortOrder"),
])
def test_invalid_searches_name_the_field(client: Any, searchable: dict[str, Any], criteria: dict[str, Any],
                                          max_results: int | None, field: str) -> None:
    kwargs: dict[str, Any] = {"datastoreId": searchable["datastore"], "searchCriteria": criteria}
    if max_results is not None:
        kwargs["maxResults"] = max_results
    with pytest.raises(client.exceptions.ValidationException) as caught:
        client.search_image_sets(**kwargs)
    assert field in str(caught.value)


def test_a_token_is_only_good_for_its_own_search(client: Any, searchable: dict[str, Any]) -> None:
    ds = searchable["datastore"]
    first = client.search_image_sets(datastoreId=ds, maxResults=1)
    with pytest.raises(ClientError) as caught:
        client.search_image_sets(datastoreId=ds, maxResults=1, nextToken=first["nextToken"],
                                 searchCriteria={"filters": [equal("DICOMPatientId", "PA")]})
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(client.exceptions.ValidationException):
        client.search_image_sets(datastoreId=ds, nextToken="bm90IGEgdG9rZW4")
    extra = client.create_datastore(datastoreName="second")["datastoreId"]  # so that datastores page
    listed = client.list_datastores(maxResults=1)
    client.delete_datastore(datastoreId=extra)
    with pytest.raises(client.exceptions.ValidationException):  # a token of another operation
        client.search_image_sets(datastoreId=ds, nextToken=listed["nextToken"])
