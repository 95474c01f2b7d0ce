"""The API against botocore's model: every operation routed and documented, every pattern usable,
and the server-side checks botocore leaves out (max, pattern, enum) derived from the model."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from botocore import xform_name
from botocore.model import ListShape, MapShape, Shape, StructureShape
from starlette.routing import Route

from tessel.ahi import build_router, routes
from tessel.ahi.errors import response_for
from tessel.ahi.protocol import operations, parse_request, service_model
from tessel.ahi.validation import ValidationError, compiled_pattern
from tessel.errors import (AlreadyExists, Conflict, Forbidden, InvalidInput, NotFound, QuotaExceeded, TesselError,
                           Unauthenticated, Unavailable, Unsupported)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "aws-cli.md"
DS = "0123456789abcdef0123456789abcdef"


def test_every_operation_of_the_model_has_a_route_and_a_function() -> None:
    router_routes = [r for r in build_router().routes if isinstance(r, Route)]
    model = service_model()
    assert len(model.operation_names) == 18
    for name in model.operation_names:
        http = model.operation_model(name).http
        (route,) = [r for r in router_routes if r.name == name]
        assert http["method"] in (route.methods or set())
        template = re.sub(r"\{(\w+)\}", "x", http["requestUri"])
        assert route.path.replace(":path", "") == http["requestUri"]
        assert route.path_regex.match(template)
        assert callable(getattr(routes, xform_name(name)))


def test_every_operation_is_documented() -> None:
    text = DOCS.read_text()
    for name in service_model().operation_names:
        assert f"`{name}`" in text, name
    assert "127.0.0.1 runtime-localhost" in text


def _shapes(shape: Shape, seen: set[str]) -> list[Shape]:
    if shape.name in seen:
        return []
    seen.add(shape.name)
    found = [shape]
    if isinstance(shape, StructureShape):
        for member in shape.members.values():
            found += _shapes(member, seen)
    elif isinstance(shape, ListShape):
        found += _shapes(shape.member, seen)
    elif isinstance(shape, MapShape):
        found += _shapes(shape.key, seen) + _shapes(shape.value, seen)
    return found


def test_every_pattern_in_the_model_compiles() -> None:
    seen: set[str] = set()
    for op in operations():
        for shape in _shapes(op.input_shape, seen):
            if "pattern" in shape.metadata:
                assert compiled_pattern(shape) is not None


def parse(name: str, raw_path: str, query: list[tuple[str, str]] | None = None,
          body: bytes = b"") -> dict[str, object]:
    (op,) = [o for o in operations() if o.name == name]
    return parse_request(op, raw_path=raw_path, path_params={}, query=query or [], body=body)


@pytest.mark.parametrize(("name", "path", "query", "body", "field"), [
    ("ListDatastores", "/datastore", [("maxResults", "100")], b"", "maxResults"),
    ("ListDatastores", "/datastore", [("maxResults", "0")], b"", "maxResults"),
    ("ListDatastores", "/datastore", [("datastoreStatus", "SLEEPING")], b"", "datastoreStatus"),
    ("GetDatastore", "/datastore/NOT-AN-ID", [], b"", "datastoreId"),
    ("CreateDatastore", "/datastore", [], b'{"clientToken": "t", "losslessStorageFormat": "PNG"}',
     "losslessStorageFormat"),
    ("CreateDatastore", "/datastore", [], b'{"clientToken": "t", "datastoreName": "' + b"n" * 257 + b'"}',
     "datastoreName"),
    ("CreateDatastore", "/datastore", [], b'{"clientToken": "t", "tags": {"aws:x": "v"}}', "tags.key"),
    ("CreateDatastore", "/datastore", [], b'{"datastoreName": "x"}', "clientToken"),
    ("SearchImageSets", f"/datastore/{DS}/searchImageSets", [],
     b'{"filters": [{"operator": "LIKE", "values": [{"DICOMPatientId": "p"}]}]}',
     "searchCriteria.filters.1.member.operator"),
    ("SearchImageSets", f"/datastore/{DS}/searchImageSets", [],
     b'{"sort": {"sortField": "patientName", "sortOrder": "ASC"}}', "searchCriteria.sort.sortField"),
    ("UpdateImageSetMetadata", f"/datastore/{DS}/imageSet/{DS}/updateImageSetMetadata", [("latestVersion", "1")],
     b'{"revertToVersionId": "1", "DICOMUpdates": {"updatableAttributes": "e30="}}',
     "updateImageSetMetadataUpdates"),
    ("UpdateImageSetMetadata", f"/datastore/{DS}/imageSet/{DS}/updateImageSetMetadata", [("latestVersion", "x")],
     b'{"revertToVersionId": "1"}', "latestVersionId"),
    ("CopyImageSet", f"/datastore/{DS}/imageSet/{DS}/copyImageSet", [("force", "yes")],
     b'{"sourceImageSet": {"latestVersionId": "1"}}', "force"),
    ("StartDICOMImportJob", f"/startDICOMImportJob/datastore/{DS}", [],
     b'{"clientToken": "t", "dataAccessRoleArn": "arn:aws:iam::123456789012:role/r", '
     b'"inputS3Uri": "http://example.com/", "outputS3Uri": "file:///tmp/out/"}', "inputS3Uri"),
])
def test_the_server_enforces_what_botocore_does_not(name: str, path: str, query: list[tuple[str, str]],
                                                     body: bytes, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse(name, path, query, body)
    assert caught.value.field == field
    assert f"'{field}'" in caught.value.message


def test_percent_encoded_arns_are_read_from_the_raw_path() -> None:
    arn = f"arn:aws:medical-imaging:us-east-1:000000000000:datastore/{DS}/imageset/{DS}"
    raw = "/tags/" + arn.replace(":", "%3A").replace("/", "%2F")
    assert parse("ListTagsForResource", raw)["resourceArn"] == arn
    params = parse("UntagResource", raw, [("tagKeys", "a"), ("tagKeys", "b")])
    assert params["tagKeys"] == ["a", "b"]


def test_blobs_inside_json_are_base64_and_timestamps_are_epoch_numbers() -> None:
    params = parse("UpdateImageSetMetadata", f"/datastore/{DS}/imageSet/{DS}/updateImageSetMetadata",
                   [("latestVersion", "3"), ("force", "true")],
                   b'{"DICOMUpdates": {"updatableAttributes": "eyJhIjogMX0="}}')
    assert params["updateImageSetMetadataUpdates"] == {"DICOMUpdates": {"updatableAttributes": b'{"a": 1}'}}
    assert params["force"] is True and params["latestVersionId"] == "3"
    search = parse("SearchImageSets", f"/datastore/{DS}/searchImageSets", [],
                   b'{"filters": [{"operator": "BETWEEN", "values": [{"createdAt": 1704067200}, '
                   b'{"createdAt": 1704067200.5}]}]}')
    values = search["searchCriteria"]["filters"][0]["values"]  # type: ignore[index]
    assert values == [{"createdAt": 1704067200.0}, {"createdAt": 1704067200.5}]


@pytest.mark.parametrize(("error", "code", "status"), [
    (InvalidInput("x"), "ValidationException", 400),
    (Unsupported("x"), "ValidationException", 400),
    (NotFound("x"), "ResourceNotFoundException", 404),
    (Conflict("x"), "ConflictException", 409),
    (AlreadyExists("x"), "ConflictException", 409),
    (Forbidden("x"), "AccessDeniedException", 403),
    (Unauthenticated("x"), "AccessDeniedException", 403),
    (Unavailable("x"), "ThrottlingException", 429),
    (QuotaExceeded("x"), "ServiceQuotaExceededException", 402),
    (RuntimeError("a bug"), "InternalServerException", 500),
    (TesselError("unclassified"), "InternalServerException", 500),
])
def test_one_table_maps_errors_to_botocore_shapes(error: Exception, code: str, status: int,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    response = response_for(error, "req-1", "Op")
    assert response.status_code == status
    assert response.headers["x-amzn-ErrorType"] == code and response.headers["x-amzn-RequestId"] == "req-1"
    message = json.loads(bytes(response.body))["message"]
    assert message == ("x" if status < 500 else "internal error (request id req-1)")
    assert ("req-1" in caplog.text) == (status == 500)  # the unexpected are logged, once, at the edge


def test_botocore_reads_the_error_shape() -> None:
    """The same bytes, through botocore's own rest-json parser."""
    from botocore.parsers import RestJSONParser

    response = response_for(QuotaExceeded("too many datastores"), "req-2", "CreateDatastore")
    model = service_model().operation_model("CreateDatastore")
    parsed = RestJSONParser().parse({"status_code": response.status_code, "headers": dict(response.headers),
                                     "body": bytes(response.body)}, model.output_shape)
    assert parsed["Error"] == {"Code": "ServiceQuotaExceededException", "Message": "too many datastores"}
