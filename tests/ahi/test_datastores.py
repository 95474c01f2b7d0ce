"""Datastores and tags through boto3 against the real server."""

from __future__ import annotations

import subprocess
import sys
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError, ParamValidationError

from tests.ahi.conftest import Server, server_env

UNKNOWN = "0" * 32


def code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def test_create_datastore_honours_every_input(client: Any, server: Server) -> None:
    token = uuid.uuid4().hex
    kms = "arn:aws:kms:us-east-1:123456789012:key/12345678-1234-1234-1234-123456789012"
    lam = "arn:aws:lambda:us-east-1:123456789012:function:authorizer"
    # kmsKeyArn names the master key that wraps the datastore's data key: it must exist.
    with pytest.raises(ClientError) as caught:
        client.create_datastore(datastoreName="no-key", kmsKeyArn=kms)
    assert code(caught) == "ValidationException" and "tessel master-key create" in str(caught.value)
    subprocess.run([sys.executable, "-m", "tessel.cli.main", "master-key", "create",
                    "12345678-1234-1234-1234-123456789012", "--data-dir", str(server.data_dir)],
                   check=True, capture_output=True, env=server_env(**server.env))  # the stack's key file
    out = client.create_datastore(datastoreName="full.set/#-1", clientToken=token, tags={"team": "radiology"},
                                  kmsKeyArn=kms, lambdaAuthorizerArn=lam, losslessStorageFormat="JPEG_2000_LOSSLESS")
    assert out["datastoreStatus"] == "ACTIVE" and len(out["datastoreId"]) == 32
    assert out["ResponseMetadata"]["RequestId"]
    props = client.get_datastore(datastoreId=out["datastoreId"])["datastoreProperties"]
    assert props["datastoreName"] == "full.set/#-1"
    assert props["kmsKeyArn"] == kms and props["lambdaAuthorizerArn"] == lam
    assert props["losslessStorageFormat"] == "JPEG_2000_LOSSLESS"
    assert props["datastoreArn"] == f"arn:aws:medical-imaging:us-east-1:000000000000:datastore/{out['datastoreId']}"
    assert props["createdAt"].timestamp() > 1.7e9 and props["updatedAt"] >= props["createdAt"]
    assert client.list_tags_for_resource(resourceArn=props["datastoreArn"])["tags"] == {"team": "radiology"}
    # The same clientToken is the same datastore; with other parameters it is a conflict.
    again = client.create_datastore(datastoreName="full.set/#-1", clientToken=token, kmsKeyArn=kms,
                                    lambdaAuthorizerArn=lam, losslessStorageFormat="JPEG_2000_LOSSLESS")
    assert again["datastoreId"] == out["datastoreId"]
    for changed in ({"datastoreName": "other"}, {"lambdaAuthorizerArn": lam.replace("authorizer", "other")},
                    {"tags": {"team": "cardiology"}}):
        with pytest.raises(ClientError) as caught:
            client.create_datastore(**{"datastoreName": "full.set/#-1", "clientToken": token, "kmsKeyArn": kms,
                                       "lambdaAuthorizerArn": lam, "losslessStorageFormat": "JPEG_2000_LOSSLESS",
                                       **changed})
        assert code(caught) == "ConflictException", changed


def test_a_datastore_defaults_to_htj2k(client: Any, datastore: str) -> None:
    assert client.get_datastore(datastoreId=datastore)["datastoreProperties"]["losslessStorageFormat"] == "HTJ2K"


def test_list_datastores_pages_with_changing_tokens(client: Any) -> None:
    made = {client.create_datastore(datastoreName=f"page-{i}")["datastoreId"] for i in range(7)}
    tokens = []
    seen: list[str] = []
    for page in client.get_paginator("list_datastores").paginate(PaginationConfig={"PageSize": 3}):
        assert len(page["datastoreSummaries"]) <= 3
        seen += [d["datastoreId"] for d in page["datastoreSummaries"]]
        if "nextToken" in page:
            tokens.append(page["nextToken"])
    assert made <= set(seen) and len(seen) == len(set(seen))
    assert len(tokens) >= 2 and len(set(tokens)) == len(tokens)
    summary = next(d for d in client.list_datastores(maxResults=50)["datastoreSummaries"])
    assert set(summary) == {"datastoreId", "datastoreName", "datastoreStatus", "datastoreArn", "createdAt",
                            "updatedAt"}


def test_list_datastores_filters_by_status(client: Any, datastore: str) -> None:
    client.delete_datastore(datastoreId=datastore)
    active = [d["datastoreId"] for d in client.get_paginator("list_datastores").paginate(
        datastoreStatus="ACTIVE").build_full_result()["datastoreSummaries"]]
    deleted = [d["datastoreId"] for d in client.get_paginator("list_datastores").paginate(
        datastoreStatus="DELETED").build_full_result()["datastoreSummaries"]]
    everything = [d["datastoreId"] for d in client.get_paginator("list_datastores").paginate(
        ).build_full_result()["datastoreSummaries"]]
    assert datastore in deleted and datastore not in active and datastore not in everything


def test_deleting_an_empty_datastore_makes_it_unknown(client: Any, datastore: str) -> None:
    out = client.delete_datastore(datastoreId=datastore)
    assert out == {**out, "datastoreId": datastore, "datastoreStatus": "DELETED"}
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_datastore(datastoreId=datastore)
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.delete_datastore(datastoreId=datastore)


@pytest.mark.parametrize(("call", "kwargs", "expected"), [
    ("get_datastore", {"datastoreId": UNKNOWN}, "ResourceNotFoundException"),
    ("delete_datastore", {"datastoreId": UNKNOWN}, "ResourceNotFoundException"),
    ("get_datastore", {"datastoreId": "Not-A-Datastore-Id"}, "ValidationException"),
    ("list_datastores", {"maxResults": 100}, "ValidationException"),
    ("list_datastores", {"datastoreStatus": "SLEEPING"}, "ValidationException"),
    ("list_datastores", {"nextToken": "not-a-token"}, "ValidationException"),
    ("create_datastore", {"datastoreName": "bad name with spaces"}, "ValidationException"),
    ("create_datastore", {"datastoreName": "x", "losslessStorageFormat": "PNG"}, "ValidationException"),
    ("create_datastore", {"datastoreName": "x", "kmsKeyArn": "not-an-arn"}, "ValidationException"),
    ("list_tags_for_resource", {"resourceArn": f"arn:aws:medical-imaging:us-east-1:000000000000:datastore/{UNKNOWN}"},
     "ResourceNotFoundException"),
    ("list_tags_for_resource", {"resourceArn": f"arn:aws:medical-imaging:eu-west-1:000000000000:datastore/{UNKNOWN}"},
     "ResourceNotFoundException"),
    ("list_tags_for_resource", {"resourceArn": "arn:aws:s3:::bucket"}, "ValidationException"),
])
def test_documented_errors(client: Any, call: str, kwargs: dict[str, Any], expected: str) -> None:
    with pytest.raises(ClientError) as caught:
        getattr(client, call)(**kwargs)
    assert code(caught) == expected
    assert caught.value.response["Error"]["Message"]
    status = {"ValidationException": 400, "ResourceNotFoundException": 404}[expected]
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == status


def test_validation_messages_name_the_field(client: Any) -> None:
    with pytest.raises(client.exceptions.ValidationException) as caught:
        client.list_datastores(maxResults=100)
    assert "'maxResults'" in str(caught.value) and "less than or equal to 50" in str(caught.value)
    with pytest.raises(ParamValidationError):  # botocore's own check (min) stays client-side
        client.list_datastores(maxResults=0)


def test_tags_on_a_datastore(client: Any, datastore: str) -> None:
    arn = client.get_datastore(datastoreId=datastore)["datastoreProperties"]["datastoreArn"]
    client.tag_resource(resourceArn=arn, tags={"a": "1", "b": "2", "c": ""})
    client.tag_resource(resourceArn=arn, tags={"a": "changed"})
    assert client.list_tags_for_resource(resourceArn=arn)["tags"] == {"a": "changed", "b": "2", "c": ""}
    client.untag_resource(resourceArn=arn, tagKeys=["b", "c", "never-set"])
    assert client.list_tags_for_resource(resourceArn=arn)["tags"] == {"a": "changed"}
    client.untag_resource(resourceArn=arn, tagKeys=[])  # travels as no query parameter at all
    assert client.list_tags_for_resource(resourceArn=arn)["tags"] == {"a": "changed"}
    with pytest.raises(client.exceptions.ValidationException):
        client.tag_resource(resourceArn=arn, tags={"aws:reserved": "x"})
    with pytest.raises(client.exceptions.ValidationException):
        client.tag_resource(resourceArn=arn, tags={f"k{i}": "v" for i in range(50)})


def test_an_unknown_path_is_a_botocore_shaped_404(server: Server) -> None:
    import httpx

    response = httpx.post(f"{server.url}/no/such/operation")
    assert response.status_code == 404
    assert response.headers["x-amzn-ErrorType"] == "UnknownOperationException"
    assert response.json()["message"]
