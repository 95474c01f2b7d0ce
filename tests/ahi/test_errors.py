"""Every error the model lists for an operation, provoked through boto3 against a real server:
AccessDenied, Validation, ResourceNotFound and Throttling on all 18 operations; Conflict on locked
image sets; the four ServiceQuotaExceeded cases (402); GetImageFrame's NotAcceptable (406) and
BadRequest; every error carries x-amzn-RequestId, and InternalServerException never appears
(the session server's log is checked for it when the session ends)."""

from __future__ import annotations

import gzip
import json
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tessel.auth import KeyStore
from tessel.catalog import Catalog, edits
from tessel.catalog.models import ImageSetWorkflowStatus
from tessel.config import Settings
from tessel.stores import data_keys
from tests.ahi.conftest import (KEY_ID, ROLE_ARN, SECRET, Server, import_folder, make_client, server_env,
                                start_server, stop_server)
from tests.factory import make_instance, make_series

UNKNOWN = "0" * 32
ARN = f"arn:aws:medical-imaging:us-east-1:000000000000:datastore/{UNKNOWN}"


def error(exc: pytest.ExceptionInfo[ClientError] | ClientError) -> tuple[str, int, str]:
    """(code, HTTP status, message) of an error response, which must carry a request id."""
    response = (exc if isinstance(exc, ClientError) else exc.value).response
    request_id = response["ResponseMetadata"].get("RequestId", "")
    assert request_id, "every error carries x-amzn-RequestId"
    assert response["Error"]["Message"]
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Message"]


def manifest_image_sets(job: dict[str, Any]) -> list[dict[str, Any]]:
    result = Path(job["outputS3Uri"].removeprefix("file://"))
    sets: list[dict[str, Any]] = json.loads((result / "job-output-manifest.json").read_text())["jobSummary"][
        "imageSetsSummary"]
    return sets


@pytest.fixture(scope="module")
def keys(server: Server) -> Iterator[KeyStore]:
    catalog = Catalog.open(server.catalog_url)
    yield KeyStore(catalog, data_keys(Settings(data_dir=server.data_dir, master_key_file=server.master_key_file), catalog))
    catalog.close()


@pytest.fixture(scope="module")
def imported(client: Any, server: Server) -> tuple[str, str, str]:
    """(datastore, image set, one of its frame ids)."""
    datastore = client.create_datastore(datastoreName="error-matrix")["datastoreId"]
    folder = server.new_folder()
    make_series(folder, 2)
    (entry,) = manifest_image_sets(import_folder(client, server, datastore, folder))
    doc = json.loads(gzip.decompress(client.get_image_set_metadata(
        datastoreId=datastore, imageSetId=entry["imageSetId"])["imageSetMetadataBlob"].read()))
    frame = next(node["ImageFrames"][0]["ID"] for series in doc["Study"]["Series"].values()
                 for node in series["Instances"].values())
    return datastore, entry["imageSetId"], frame


def every_operation(datastore: str, image_set: str, folder: str) -> dict[str, dict[str, Any]]:
    """Well-formed arguments for each of the 18 operations (writes aimed at nothing that exists)."""
    return {
        "create_datastore": {"datastoreName": "bad name", "clientToken": "matrix"},
        "get_datastore": {"datastoreId": datastore},
        "list_datastores": {},
        "delete_datastore": {"datastoreId": UNKNOWN},
        "start_dicom_import_job": {"datastoreId": UNKNOWN, "dataAccessRoleArn": ROLE_ARN, "inputS3Uri": folder,
                                   "outputS3Uri": folder},
        "get_dicom_import_job": {"datastoreId": datastore, "jobId": UNKNOWN},
        "list_dicom_import_jobs": {"datastoreId": datastore},
        "search_image_sets": {"datastoreId": datastore},
        "get_image_set": {"datastoreId": datastore, "imageSetId": image_set},
        "get_image_set_metadata": {"datastoreId": datastore, "imageSetId": image_set},
        "get_image_frame": {"datastoreId": datastore, "imageSetId": image_set,
                            "imageFrameInformation": {"imageFrameId": UNKNOWN}},
        "list_image_set_versions": {"datastoreId": datastore, "imageSetId": image_set},
        "update_image_set_metadata": {"datastoreId": datastore, "imageSetId": UNKNOWN, "latestVersionId": "1",
                                      "updateImageSetMetadataUpdates": {"revertToVersionId": "1"}},
        "copy_image_set": {"datastoreId": datastore, "sourceImageSetId": UNKNOWN,
                           "copyImageSetInformation": {"sourceImageSet": {"latestVersionId": "1"}}},
        "delete_image_set": {"datastoreId": datastore, "imageSetId": UNKNOWN},
        "tag_resource": {"resourceArn": ARN, "tags": {"k": "v"}},
        "untag_resource": {"resourceArn": ARN, "tagKeys": ["k"]},
        "list_tags_for_resource": {"resourceArn": ARN},
    }


def test_the_matrix_names_all_18_operations(client: Any) -> None:
    assert set(every_operation("d", "i", "f")) == set(client.meta.method_to_api_mapping)
    assert len(client.meta.method_to_api_mapping) == 18


def test_access_denied_on_every_operation(server: Server, keys: KeyStore, imported: tuple[str, str, str]) -> None:
    datastore, image_set, _ = imported
    # A key that may look at the datastore but do nothing else: every operation is AccessDenied.
    key = keys.create("denied-everything", policy={"Statement": [
        {"Effect": "Allow", "Action": "medical-imaging:GetDICOMInstanceMetadata", "Resource": "*"},
        {"Effect": "Deny", "NotAction": "medical-imaging:GetDICOMInstanceMetadata", "Resource": "*"}]})
    denied = make_client(server.url, key.access_key_id, key.secret.reveal())
    calls = every_operation(datastore, image_set, server.imports.as_uri() + "/")
    calls["create_datastore"] = {"datastoreName": "never-made"}  # well-formed: checked after the policy
    for call, kwargs in calls.items():
        with pytest.raises(ClientError) as caught:
            getattr(denied, call)(**kwargs)
        code, status, message = error(caught)
        api = denied.meta.method_to_api_mapping[call]
        assert (code, status) == ("AccessDeniedException", 403), (call, message)
        assert f"medical-imaging:{api}" in message
    # A key denied everything cannot see the datastore at all: its resources answer as if absent
    # (docs/security.md), the account-level operations AccessDenied.
    key = keys.create("blind", policy={"Statement": [{"Effect": "Deny", "Action": "medical-imaging:*",
                                                      "Resource": "*"}]})
    blind = make_client(server.url, key.access_key_id, key.secret.reveal())
    for call, kwargs in calls.items():
        with pytest.raises(ClientError) as caught:
            getattr(blind, call)(**kwargs)
        code, status, message = error(caught)
        expected = ("AccessDeniedException", 403) if call in ("create_datastore", "list_datastores") else \
            ("ResourceNotFoundException", 404)
        assert (code, status) == expected, (call, message)


def test_not_found_on_every_operation_that_lists_it(client: Any, server: Server,
                                                    imported: tuple[str, str, str]) -> None:
    datastore, image_set, _ = imported
    folder = server.new_folder().as_uri() + "/"
    calls = every_operation(UNKNOWN, UNKNOWN, folder)
    calls["create_datastore"] = {"datastoreName": "x", "kmsKeyArn": "not-an-arn"}  # no NotFound case
    calls["list_datastores"] = {}
    for call, kwargs in calls.items():
        if call in ("create_datastore", "list_datastores"):
            continue  # the model gives ListDatastores no ResourceNotFoundException; CreateDatastore names none
        with pytest.raises(ClientError) as caught:
            getattr(client, call)(**kwargs)
        code, status, message = error(caught)
        assert (code, status) == ("ResourceNotFoundException", 404), (call, message)
    # an existing datastore, but no such image set / frame / job
    for call, kwargs in [("get_image_set", {"imageSetId": UNKNOWN}),
                         ("get_image_frame", {"imageSetId": image_set,
                                              "imageFrameInformation": {"imageFrameId": UNKNOWN}}),
                         ("get_dicom_import_job", {"jobId": UNKNOWN})]:
        with pytest.raises(client.exceptions.ResourceNotFoundException):
            getattr(client, call)(datastoreId=datastore, **kwargs)



def test_a_frame_asked_for_under_another_datastore_is_not_found(client: Any, imported: tuple[str, str, str]) -> None:
    """The frame lookup is scoped to the datastore in the path: an image set of datastore A asked for
    under datastore B answers exactly like an image set that does not exist."""
    datastore, image_set, frame = imported
    other = client.create_datastore(datastoreName="error-matrix-other")["datastoreId"]
    assert client.get_image_frame(datastoreId=datastore, imageSetId=image_set,
                                  imageFrameInformation={"imageFrameId": frame})["imageFrameBlob"].read()
    answers = []
    for asked in (image_set, UNKNOWN):
        with pytest.raises(ClientError) as caught:
            client.get_image_frame(datastoreId=other, imageSetId=asked, imageFrameInformation={"imageFrameId": frame})
        answers.append(error(caught))
    (code, status, message), (_, _, unknown_message) = answers
    assert (code, status) == ("ResourceNotFoundException", 404), message
    assert message == unknown_message.replace(UNKNOWN, image_set)

@pytest.mark.parametrize(("call", "kwargs", "field"), [
    ("create_datastore", {"datastoreName": "x", "lambdaAuthorizerArn": "arn:aws:lambda:nowhere"},
     "lambdaAuthorizerArn"),
    ("get_datastore", {"datastoreId": "UPPERCASE0123456789ABCDEF0123456"}, "datastoreId"),
    ("list_datastores", {"maxResults": 51}, "maxResults"),
    ("delete_datastore", {"datastoreId": "short"}, "datastoreId"),
    ("start_dicom_import_job", {"datastoreId": UNKNOWN, "dataAccessRoleArn": ROLE_ARN, "jobName": "bad name!",
                                "inputS3Uri": "s3://b/in/", "outputS3Uri": "s3://b/out/"}, "jobName"),
    ("get_dicom_import_job", {"datastoreId": UNKNOWN, "jobId": "x" * 33}, "jobId"),
    ("list_dicom_import_jobs", {"datastoreId": UNKNOWN, "jobStatus": "DONE"}, "jobStatus"),
    ("search_image_sets", {"datastoreId": UNKNOWN, "maxResults": 51}, "maxResults"),
    ("get_image_set", {"datastoreId": UNKNOWN, "imageSetId": UNKNOWN, "versionId": "v1"}, "versionId"),
    ("get_image_set_metadata", {"datastoreId": UNKNOWN, "imageSetId": UNKNOWN, "versionId": "-1"}, "versionId"),
    ("get_image_frame", {"datastoreId": UNKNOWN, "imageSetId": UNKNOWN,
                         "imageFrameInformation": {"imageFrameId": "frame"}}, "imageFrameId"),
    ("list_image_set_versions", {"datastoreId": UNKNOWN, "imageSetId": UNKNOWN, "nextToken": "x" * 8193},
     "nextToken"),
    ("update_image_set_metadata", {"datastoreId": UNKNOWN, "imageSetId": UNKNOWN, "latestVersionId": "one",
                                   "updateImageSetMetadataUpdates": {"revertToVersionId": "1"}}, "latestVersionId"),
    ("copy_image_set", {"datastoreId": UNKNOWN, "sourceImageSetId": UNKNOWN, "copyImageSetInformation": {
        "sourceImageSet": {"latestVersionId": "1"}, "destinationImageSet": {"imageSetId": "bad",
                                                                           "latestVersionId": "1"}}},
     "copyImageSetInformation.destinationImageSet.imageSetId"),
    ("delete_image_set", {"datastoreId": UNKNOWN, "imageSetId": "Not-An-Id"}, "imageSetId"),
    ("tag_resource", {"resourceArn": ARN, "tags": {"aws:reserved": "v"}}, "tags"),
    ("untag_resource", {"resourceArn": ARN, "tagKeys": [f"k{i}" for i in range(201)]}, "tagKeys"),
    ("list_tags_for_resource", {"resourceArn": "arn:aws:medical-imaging:us-east-1:1:datastore/x"}, "resourceArn"),
])
def test_validation_on_every_operation_names_the_field(server: Server, call: str, kwargs: dict[str, Any],
                                                       field: str) -> None:
    unchecked = server.client(parameter_validation=False)  # botocore would refuse some of these itself
    with pytest.raises(ClientError) as caught:
        getattr(unchecked, call)(**kwargs)
    code, status, message = error(caught)
    assert (code, status) == ("ValidationException", 400), message
    assert field in message


def test_a_locked_image_set_refuses_every_write(client: Any, server: Server, imported: tuple[str, str, str]) -> None:
    """What a write under way (or one cut short by a crash, until it is released) looks like."""
    datastore, image_set, _ = imported
    catalog = Catalog.open(server.catalog_url)
    try:
        with catalog.write() as conn:
            assert edits.lock(conn, image_set, 1, ImageSetWorkflowStatus.UPDATING, time.time())
        props = client.get_image_set(datastoreId=datastore, imageSetId=image_set)
        assert (props["imageSetState"], props["imageSetWorkflowStatus"]) == ("LOCKED", "UPDATING")
        update = {"DICOMUpdates": {"updatableAttributes": json.dumps(
            {"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyDescription": "X"}}}).encode()}}
        for call, kwargs in [
                ("update_image_set_metadata", {"imageSetId": image_set, "latestVersionId": "1",
                                               "updateImageSetMetadataUpdates": update}),
                ("copy_image_set", {"sourceImageSetId": image_set,
                                    "copyImageSetInformation": {"sourceImageSet": {"latestVersionId": "1"}}}),
                ("delete_image_set", {"imageSetId": image_set})]:
            with pytest.raises(ClientError) as caught:
                getattr(client, call)(datastoreId=datastore, **kwargs)
            code, status, message = error(caught)
            assert (code, status) == ("ConflictException", 409) and "locked" in message, call
        # reads go on
        assert client.get_image_set_metadata(datastoreId=datastore, imageSetId=image_set)["contentEncoding"] == "gzip"
    finally:
        with catalog.write() as conn:
            edits.unlock(conn, image_set, ImageSetWorkflowStatus.CREATED, None)
        catalog.close()


def test_an_update_payload_over_10_kb_exceeds_the_quota(client: Any, imported: tuple[str, str, str]) -> None:
    datastore, image_set, _ = imported
    big = json.dumps({"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyDescription": "x" * 11_000}}}).encode()
    with pytest.raises(ClientError) as caught:
        client.update_image_set_metadata(datastoreId=datastore, imageSetId=image_set, latestVersionId="1",
                                         updateImageSetMetadataUpdates={"DICOMUpdates": {"updatableAttributes": big}})
    code, status, message = error(caught)
    assert (code, status) == ("ServiceQuotaExceededException", 402) and "10240 bytes" in message
    assert client.get_image_set(datastoreId=datastore, imageSetId=image_set)["versionId"] == "1"


def test_a_copy_of_more_than_1000_frames_exceeds_the_quota(client: Any, server: Server, datastore: str) -> None:
    folder = server.new_folder()
    make_instance(folder / "many.dcm", study="1.2.826.0.1.3680043.10.3.1", series="1.2.826.0.1.3680043.10.3.1.1",
                  frames=1001, rows=4, columns=4)
    (entry,) = manifest_image_sets(import_folder(client, server, datastore, folder))
    with pytest.raises(ClientError) as caught:
        client.copy_image_set(datastoreId=datastore, sourceImageSetId=entry["imageSetId"],
                              copyImageSetInformation={"sourceImageSet": {"latestVersionId": "1"}})
    code, status, message = error(caught)
    assert (code, status) == ("ServiceQuotaExceededException", 402) and "1001 image frames" in message


def test_get_image_frame_answers_406_to_an_accept_header_that_excludes_the_frame(
        server: Server, imported: tuple[str, str, str]) -> None:
    datastore, image_set, frame = imported
    client = server.client()
    accept = {"value": "image/png"}

    def add_accept(request: Any, **_: Any) -> None:
        request.headers["Accept"] = accept["value"]

    client.meta.events.register("before-sign.medical-imaging.GetImageFrame", add_accept)
    kwargs = {"datastoreId": datastore, "imageSetId": image_set, "imageFrameInformation": {"imageFrameId": frame}}
    with pytest.raises(ClientError) as caught:
        client.get_image_frame(**kwargs)
    code, status, message = error(caught)
    assert (code, status) == ("NotAcceptableException", 406) and "image/jph" in message
    for value in ("image/jph", "image/*", "*/*", "image/png, image/jph;q=0.5"):
        accept["value"] = value
        assert client.get_image_frame(**kwargs)["contentType"] == "image/jph"


def test_get_image_frame_answers_bad_request_to_a_malformed_body(server: Server,
                                                                imported: tuple[str, str, str]) -> None:
    datastore, image_set, _ = imported
    url = f"{server.url}/datastore/{datastore}/imageSet/{image_set}/getImageFrame"
    request = AWSRequest(method="POST", url=url, data=b'{"imageFrameId": ', headers={})
    SigV4Auth(Credentials(KEY_ID, SECRET), "medical-imaging", "us-east-1").add_auth(request)
    response = httpx.post(url, content=b'{"imageFrameId": ', headers=dict(request.headers.items()))
    assert response.status_code == 400
    assert response.headers["x-amzn-ErrorType"] == "BadRequestException" and response.headers["x-amzn-RequestId"]
    assert "not valid JSON" in response.json()["message"]


def test_import_options_tessel_cannot_honour_are_refused_by_name(client: Any, server: Server, datastore: str) -> None:
    folder = server.new_folder()
    make_series(folder, 1)
    common = {"datastoreId": datastore, "dataAccessRoleArn": ROLE_ARN, "inputS3Uri": folder.as_uri() + "/",
              "outputS3Uri": server.new_folder("out").as_uri() + "/"}
    with pytest.raises(ClientError) as caught:
        client.start_dicom_import_job(**common, inputOwnerAccountId="123456789012")
    assert error(caught)[0] == "ValidationException" and "'inputOwnerAccountId'" in error(caught)[2]
    with pytest.raises(ClientError) as caught:
        client.start_dicom_import_job(**common, importConfiguration={"dicomJsonMetadataImportConfiguration": {
            "dicomMetadataMappings": [{"studyInstanceUID": "1.2.3", "metadataFilePath": "study.json"}]}})
    assert error(caught)[0] == "ValidationException" and "'importConfiguration'" in error(caught)[2]
    assert client.list_dicom_import_jobs(datastoreId=datastore)["jobSummaries"] == []


# -- a server with small limits: TESSEL_MAX_DATASTORES, TESSEL_MAX_IMPORT_JOBS, TESSEL_RATE_LIMIT --------


def _server_with(tmp_path_factory: pytest.TempPathFactory, name: str, **limits: str) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp(name) / "data"
    proc, port = start_server(data_dir, server_env(TESSEL_ACCESS_KEY_ID=KEY_ID, TESSEL_SECRET_ACCESS_KEY=SECRET,
                                                   **limits))
    try:
        yield Server(url=f"http://127.0.0.1:{port}", port=port, data_dir=data_dir, proc=proc)
    finally:
        _, err = stop_server(proc, data_dir)
        assert "InternalServerException" not in err and "Traceback" not in err, err


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _server_with(tmp_path_factory, "limited", TESSEL_MAX_DATASTORES="2", TESSEL_MAX_IMPORT_JOBS="1",
                            TESSEL_RATE_LIMIT="1")


def patient(limited: Server) -> Any:
    """A client that waits out ThrottlingException as the SDKs do by default (the rate is 1/s here)."""
    return make_client(limited.url, KEY_ID, SECRET, retries={"mode": "standard", "max_attempts": 10})


def test_every_operation_is_throttled_past_its_rate(limited: Server) -> None:
    catalog = Catalog.open(limited.catalog_url)
    try:
        key = KeyStore(catalog, data_keys(Settings(data_dir=limited.data_dir, master_key_file=limited.master_key_file), catalog)).create(
            f"hasty-{uuid.uuid4().hex[:6]}")
    finally:
        catalog.close()
    hasty = make_client(limited.url, key.access_key_id, key.secret.reveal())
    for call, kwargs in every_operation(UNKNOWN, UNKNOWN, limited.imports.as_uri() + "/").items():
        codes = []
        for _ in range(6):  # 1 request/s, bursts of 2: six in a row cannot all pass
            try:
                getattr(hasty, call)(**kwargs)
                codes.append("OK")
            except ClientError as exc:
                code, status, message = error(exc)
                codes.append(code)
                if code == "ThrottlingException":
                    assert status == 429
                    assert f"Rate exceeded for {hasty.meta.method_to_api_mapping[call]}: at most 1 per second" \
                        in message
                    break
        assert codes[0] != "ThrottlingException" and "ThrottlingException" in codes, (call, codes)
    # the SDK's own retry waits it out
    assert patient(limited).list_datastores()["datastoreSummaries"] is not None


def test_the_datastore_quota(limited: Server) -> None:
    client = patient(limited)
    made = [client.create_datastore(datastoreName=f"q{i}")["datastoreId"] for i in range(2)]
    with pytest.raises(ClientError) as caught:
        client.create_datastore(datastoreName="one-too-many")
    code, status, message = error(caught)
    assert (code, status) == ("ServiceQuotaExceededException", 402) and "TESSEL_MAX_DATASTORES" in message
    client.delete_datastore(datastoreId=made[0])
    made[0] = client.create_datastore(datastoreName="fits-again")["datastoreId"]
    for datastore in made:
        client.delete_datastore(datastoreId=datastore)


@pytest.fixture(scope="module")
def one_job(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """TESSEL_MAX_IMPORT_JOBS=1 without a rate limit: the three starts come within milliseconds, so the
    first job is still running (throttled calls a second apart outlived a fast import)."""
    yield from _server_with(tmp_path_factory, "one-job", TESSEL_MAX_IMPORT_JOBS="1")


def test_the_concurrent_import_job_quota(one_job: Server) -> None:
    client = one_job.client()
    datastore = client.create_datastore(datastoreName="jobs")["datastoreId"]
    folder = one_job.new_folder()
    make_series(folder, 120, rows=128, columns=128)  # the first job still runs when the next ones come
    started, refused = [], []
    for _ in range(3):
        try:
            started.append(client.start_dicom_import_job(
                datastoreId=datastore, dataAccessRoleArn=ROLE_ARN, inputS3Uri=folder.as_uri() + "/",
                outputS3Uri=one_job.new_folder("out").as_uri() + "/")["jobId"])
        except ClientError as exc:
            refused.append(exc.response)
    assert len(started) == 1 and len(refused) == 2
    assert {(r["Error"]["Code"], r["ResponseMetadata"]["HTTPStatusCode"]) for r in refused} == {
        ("ServiceQuotaExceededException", 402)}
    assert "TESSEL_MAX_IMPORT_JOBS" in refused[0]["Error"]["Message"]
    deadline = time.monotonic() + 180
    while client.get_dicom_import_job(datastoreId=datastore, jobId=started[0])["jobProperties"]["jobStatus"] not in (
            "COMPLETED", "FAILED"):
        assert time.monotonic() < deadline
        time.sleep(1)
    # with the first job done, the next one is taken
    assert client.start_dicom_import_job(datastoreId=datastore, dataAccessRoleArn=ROLE_ARN,
                                         inputS3Uri=folder.as_uri() + "/",
                                         outputS3Uri=one_job.new_folder("out").as_uri() + "/")["jobStatus"] == \
        "SUBMITTED"
