"""StartDICOMImportJob / GetDICOMImportJob / ListDICOMImportJobs through boto3."""

from __future__ import annotations

import json
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.ahi.conftest import (KEY_ID, ROLE_ARN, SECRET, Server, import_folder, make_client, server_env,
                                start_server, stop_server, wait_for_job)
from tests.factory import make_series
from tests.s3server import ACCESS_KEY_ID as S3_KEY
from tests.s3server import SECRET_ACCESS_KEY as S3_SECRET
from tests.s3server import S3Server


def start(client: Any, datastore: str, source: str, output: str, role: str = ROLE_ARN,
          **kwargs: Any) -> dict[str, Any]:
    out: dict[str, Any] = client.start_dicom_import_job(datastoreId=datastore, dataAccessRoleArn=role,
                                                        inputS3Uri=source, outputS3Uri=output, **kwargs)
    return out


def test_an_import_job_runs_to_completion_and_writes_its_manifest(client: Any, server: Server,
                                                                  datastore: str) -> None:
    folder = server.new_folder()
    make_series(folder, 3)
    (folder / "not-dicom.txt").write_text("hello")
    out = server.new_folder("out")
    job = start(client, datastore, folder.as_uri() + "/", out.as_uri() + "/", jobName="first-import")
    assert job["jobStatus"] == "SUBMITTED" and job["datastoreId"] == datastore
    assert len(job["jobId"]) == 32 and job["submittedAt"].timestamp() > 1.7e9
    props = wait_for_job(client, datastore, job["jobId"])
    assert props["jobStatus"] == "COMPLETED"
    assert props["jobName"] == "first-import" and props["dataAccessRoleArn"] == ROLE_ARN
    assert props["inputS3Uri"] == folder.as_uri() + "/"
    assert props["outputS3Uri"] == f"{out.as_uri()}/{datastore}-DicomImport-{job['jobId']}/"
    assert props["endedAt"] >= props["submittedAt"]
    result = Path(props["outputS3Uri"].removeprefix("file://"))
    manifest = json.loads((result / "job-output-manifest.json").read_text())["jobSummary"]
    assert manifest["numberOfScannedFiles"] == 4 and manifest["numberOfImportedFiles"] == 3
    assert manifest["numberOfFilesWithCustomerError"] == 1
    assert (result / "FAILURE" / "failure.ndjson").read_text().count("\n") == 1
    (image_set,) = manifest["imageSetsSummary"]
    assert image_set["numberOfMatchedSOPInstances"] == 3 and image_set["isPrimary"] is True


def test_the_client_token_makes_start_idempotent_and_jobs_get_a_name(client: Any, server: Server,
                                                                     datastore: str) -> None:
    folder = server.new_folder()
    make_series(folder, 1)
    token = uuid.uuid4().hex
    first = start(client, datastore, folder.as_uri() + "/", server.new_folder("out").as_uri() + "/",
                  clientToken=token)
    second = start(client, datastore, folder.as_uri() + "/", server.new_folder("out").as_uri() + "/",
                   clientToken=token)
    assert second["jobId"] == first["jobId"]
    props = wait_for_job(client, datastore, first["jobId"])
    assert props["jobName"]  # required in the output even when not given


def test_list_import_jobs_pages_newest_first_and_filters_by_status(client: Any, server: Server,
                                                                   datastore: str) -> None:
    folder = server.new_folder()
    make_series(folder, 1)
    ids = []
    for _ in range(5):
        ids.append(start(client, datastore, folder.as_uri() + "/", server.new_folder("out").as_uri() + "/")["jobId"])
    for job_id in ids:
        wait_for_job(client, datastore, job_id)
    pages = list(client.get_paginator("list_dicom_import_jobs").paginate(
        datastoreId=datastore, PaginationConfig={"PageSize": 2}))
    assert len(pages) == 3 and len({p.get("nextToken") for p in pages}) == 3
    listed = [j["jobId"] for p in pages for j in p["jobSummaries"]]
    assert listed == list(reversed(ids))
    summary = pages[0]["jobSummaries"][0]
    assert summary["jobStatus"] == "COMPLETED" and summary["datastoreId"] == datastore
    assert client.list_dicom_import_jobs(datastoreId=datastore, jobStatus="FAILED")["jobSummaries"] == []
    assert len(client.list_dicom_import_jobs(datastoreId=datastore, jobStatus="COMPLETED")["jobSummaries"]) == 5


def test_locations_outside_the_import_roots_are_refused(client: Any, server: Server, datastore: str) -> None:
    outside = Path("/var/lib/tessel-not-a-root/")
    inside = server.new_folder()
    make_series(inside, 1)
    for source, output, field in [(outside.as_uri() + "/", server.new_folder("out").as_uri() + "/", "inputS3Uri"),
                                  (inside.as_uri() + "/", outside.as_uri() + "/", "outputS3Uri"),
                                  (inside.as_uri() + "/.." * 16 + "/etc/", server.imports.as_uri(), "inputS3Uri")]:
        with pytest.raises(client.exceptions.ValidationException) as caught:
            start(client, datastore, source, output)
        assert f"'{field}'" in str(caught.value) and "import roots" in str(caught.value)


def test_the_system_temp_folder_is_an_import_root(client: Any, datastore: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        make_series(Path(tmp) / "in", 1)
        job = start(client, datastore, (Path(tmp) / "in").as_uri() + "/", (Path(tmp) / "out").as_uri() + "/")
        assert wait_for_job(client, datastore, job["jobId"])["jobStatus"] == "COMPLETED"


def test_import_job_errors(client: Any, server: Server, datastore: str) -> None:
    folder = server.new_folder()
    out = server.new_folder("out").as_uri() + "/"
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        start(client, "0" * 32, folder.as_uri() + "/", out)
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_dicom_import_job(datastoreId=datastore, jobId="0" * 32)
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.list_dicom_import_jobs(datastoreId="0" * 32)
    with pytest.raises(client.exceptions.ValidationException):  # does not exist
        start(client, datastore, (folder / "missing").as_uri() + "/", out)
    with pytest.raises(client.exceptions.ValidationException):
        start(client, datastore, "https://example.com/dicom/", out)
    with pytest.raises(client.exceptions.ValidationException):
        client.get_dicom_import_job(datastoreId=datastore, jobId="NOT_AN_ID")
    with pytest.raises(client.exceptions.ValidationException):
        client.list_dicom_import_jobs(datastoreId=datastore, jobStatus="DONE")
    with pytest.raises(client.exceptions.ValidationException):
        client.list_dicom_import_jobs(datastoreId=datastore, maxResults=51)
    with pytest.raises(ClientError) as caught:
        start(client, datastore, folder.as_uri() + "/", out, role="arn:aws:iam::1:role/xyz")
    assert caught.value.response["Error"]["Code"] == "ValidationException"


def test_a_deleted_datastore_takes_no_imports(client: Any, server: Server, datastore: str) -> None:
    folder = server.new_folder()
    make_series(folder, 1)
    client.delete_datastore(datastoreId=datastore)
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        start(client, datastore, folder.as_uri() + "/", server.new_folder("out").as_uri() + "/")


def test_an_imported_datastore_cannot_be_deleted(client: Any, server: Server, datastore: str) -> None:
    folder = server.new_folder()
    make_series(folder, 1)
    import_folder(client, server, datastore, folder)
    with pytest.raises(client.exceptions.ConflictException):
        client.delete_datastore(datastoreId=datastore)



def test_an_s3_import_through_the_api(s3_server: S3Server, tmp_path: Path) -> None:
    """s3:// input and output, read through TESSEL_S3_ENDPOINT_URL (a moto server here)."""
    bucket = s3_server.new_bucket("tessel-ahi")
    s3 = s3_server.client()
    for path in make_series(tmp_path / "series", 2):
        s3.put_object(Bucket=bucket, Key=f"in/{path.name}", Body=path.read_bytes())
    data = tmp_path / "s3-server" / "data"
    proc, port = start_server(data, server_env(
        TESSEL_ACCESS_KEY_ID=KEY_ID, TESSEL_SECRET_ACCESS_KEY=SECRET, TESSEL_S3_ENDPOINT_URL=s3_server.endpoint_url,
        TESSEL_S3_ACCESS_KEY_ID=S3_KEY, TESSEL_S3_SECRET_ACCESS_KEY=S3_SECRET))
    try:
        client = make_client(f"http://127.0.0.1:{port}", KEY_ID, SECRET)
        datastore = client.create_datastore(datastoreName="from-s3")["datastoreId"]
        job = start(client, datastore, f"s3://{bucket}/in/", f"s3://{bucket}/out/")
        props = wait_for_job(client, datastore, job["jobId"])
        assert props["jobStatus"] == "COMPLETED", props
        assert props["outputS3Uri"] == f"s3://{bucket}/out/{datastore}-DicomImport-{job['jobId']}/"
        key = props["outputS3Uri"].removeprefix(f"s3://{bucket}/") + "job-output-manifest.json"
        manifest = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())["jobSummary"]
        assert manifest["numberOfImportedFiles"] == 2
        with pytest.raises(client.exceptions.ValidationException):  # no such prefix
            start(client, datastore, f"s3://{bucket}/nothing-here/", f"s3://{bucket}/out/")
    finally:
        stop_server(proc, data)
