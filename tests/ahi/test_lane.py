"""GetImageFrame takes a short path in `tessel serve` (lane.py): its answers (bytes, headers, errors),
access decisions and audit records must be those of the routed request.

The routed request compared with is the same request with its JSON body padded with whitespace past
what the lane takes (routes.MAX_FRAME_BODY): the whole stack serves it, and the JSON means the same.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time
import uuid
from typing import Any, Iterator

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tessel.ahi.routes import MAX_FRAME_BODY
from tessel.auth import KeyStore
from tessel.catalog import Catalog
from tessel.config import Settings
from tessel.stores import data_keys
from tests.ahi.conftest import KEY_ID, SECRET, Server, import_folder, make_client, server_env
from tests.factory import make_series

UNKNOWN = "0" * 32
# Headers that differ between any two requests.
PER_REQUEST = frozenset({"date", "x-amzn-requestid"})


@pytest.fixture(scope="module")
def frames(client: Any, server: Server) -> Iterator[tuple[str, str, list[str]]]:
    """(datastore, image set, its frame ids): one instance of 2 frames in a datastore of its own."""
    datastore = client.create_datastore(datastoreName=f"lane-{uuid.uuid4().hex[:8]}")["datastoreId"]
    folder = server.new_folder()
    make_series(folder, 1, frames=2, rows=16, columns=16)
    import_folder(client, server, datastore, folder)
    (summary,) = client.search_image_sets(datastoreId=datastore)["imageSetsMetadataSummaries"]
    image_set = summary["imageSetId"]
    doc = json.loads(gzip.decompress(client.get_image_set_metadata(
        datastoreId=datastore, imageSetId=image_set)["imageSetMetadataBlob"].read()))
    ids = [f["ID"] for s in doc["Study"]["Series"].values() for i in s["Instances"].values()
           for f in i["ImageFrames"]]
    assert len(ids) == 2
    yield datastore, image_set, ids


@pytest.fixture(scope="module")
def keys(server: Server) -> Iterator[KeyStore]:
    catalog = Catalog.open(server.catalog_url)
    yield KeyStore(catalog, data_keys(Settings(data_dir=server.data_dir, master_key_file=server.master_key_file),
                                      catalog))
    catalog.close()


def get_frame(server: Server, datastore: str, image_set: str, body: Any, *, routed: bool,
              key: tuple[str, str] = (KEY_ID, SECRET)) -> httpx.Response:
    """POST getImageFrame signed with `key`; `routed`: padded past the lane's limit."""
    data = (body if isinstance(body, bytes) else json.dumps(body).encode())
    if routed:
        data += b" " * (MAX_FRAME_BODY + 1 - len(data))
    url = f"{server.url}/datastore/{datastore}/imageSet/{image_set}/getImageFrame"
    request = AWSRequest(method="POST", url=url, data=data, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(*key), "medical-imaging", "us-east-1").add_auth(request)
    return httpx.post(url, content=data, headers=dict(request.headers.items()), timeout=60)


def assert_same(lane: httpx.Response, routed: httpx.Response) -> None:
    assert lane.status_code == routed.status_code
    assert lane.content == routed.content
    assert ({k: v for k, v in lane.headers.items() if k not in PER_REQUEST}
            == {k: v for k, v in routed.headers.items() if k not in PER_REQUEST})
    assert lane.headers["x-amzn-requestid"] and lane.headers["x-amzn-requestid"] != routed.headers["x-amzn-requestid"]


def both(server: Server, datastore: str, image_set: str, body: Any, **kwargs: Any) -> httpx.Response:
    lane = get_frame(server, datastore, image_set, body, routed=False, **kwargs)
    assert_same(lane, get_frame(server, datastore, image_set, body, routed=True, **kwargs))
    return lane


def test_a_frame_is_the_routed_answer_byte_for_byte(server: Server, client: Any,
                                                   frames: tuple[str, str, list[str]]) -> None:
    datastore, image_set, ids = frames
    answers = [both(server, datastore, image_set, {"imageFrameId": frame}) for frame in ids]
    for frame, answer in zip(ids, answers):
        assert answer.status_code == 200
        expected = client.get_image_frame(datastoreId=datastore, imageSetId=image_set,
                                          imageFrameInformation={"imageFrameId": frame})
        assert answer.headers["content-type"] == expected["contentType"]
        assert answer.content == expected["imageFrameBlob"].read()
    assert answers[0].content != answers[1].content  # two frames: two answers


@pytest.mark.parametrize("case", ["frame", "image set", "datastore", "invalid id", "no id", "not an object"])
def test_errors_are_the_routed_ones(server: Server, frames: tuple[str, str, list[str]], case: str) -> None:
    datastore, image_set, ids = frames
    target, body, expected = {
        "frame": ((datastore, image_set), {"imageFrameId": UNKNOWN}, (404, "ResourceNotFoundException")),
        "image set": ((datastore, UNKNOWN), {"imageFrameId": ids[0]}, (404, "ResourceNotFoundException")),
        "datastore": ((UNKNOWN, image_set), {"imageFrameId": ids[0]}, (404, "ResourceNotFoundException")),
        "invalid id": ((datastore, image_set), {"imageFrameId": "not/an-id"}, (400, "ValidationException")),
        "no id": ((datastore, image_set), {}, (400, "ValidationException")),
        "not an object": ((datastore, image_set), [ids[0]], (400, "ValidationException")),
    }[case]
    answer = both(server, *target, body)
    assert (answer.status_code, answer.headers["x-amzn-errortype"]) == expected, answer.text
    assert answer.json()["message"]


def test_a_wrong_secret_and_a_denying_policy_are_refused_as_routed(
        server: Server, keys: KeyStore, frames: tuple[str, str, list[str]]) -> None:
    datastore, image_set, ids = frames
    body = {"imageFrameId": ids[0]}
    stranger = both(server, datastore, image_set, body, key=(KEY_ID, "wrong-secret-0123456789abcdefghijklmno"))
    assert stranger.status_code == 403 and stranger.headers["x-amzn-errortype"] == "AccessDeniedException"
    policy = {"Statement": [
        {"Effect": "Allow", "Action": "medical-imaging:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "medical-imaging:GetImageFrame",
         "Resource": f"arn:aws:medical-imaging:*:*:datastore/{datastore}/imageset/{image_set}"}]}
    key = keys.create(f"lane-{uuid.uuid4().hex[:6]}", policy=policy)
    reader = (key.access_key_id, key.secret.reveal())
    denied = both(server, datastore, image_set, body, key=reader)
    assert denied.status_code in (403, 404) and denied.content  # refused, in botocore's shape
    assert "imageFrameBlob" not in denied.text and denied.headers["content-type"] == "application/json"
    # The key itself works (GetImageSet is allowed): the refusal is the policy's GetImageFrame denial.
    reading = make_client(server.url, *reader)
    assert reading.get_image_set(datastoreId=datastore, imageSetId=image_set)["imageSetId"] == image_set


def audit_rows(server: Server, datastore: str) -> list[dict[str, Any]]:
    out = subprocess.run([sys.executable, "-m", "tessel.cli.main", "audit", "--json", "--data-dir",
                          str(server.data_dir)], env=server_env(**server.env), capture_output=True, text=True,
                         check=True)
    return [row for row in map(json.loads, out.stdout.splitlines()) if row.get("datastore_id") == datastore]


def test_every_request_is_audited_as_the_routed_one_is(server: Server, frames: tuple[str, str, list[str]]) -> None:
    datastore, image_set, ids = frames
    before = len(audit_rows(server, datastore))
    cases = [(image_set, {"imageFrameId": ids[1]}, (KEY_ID, SECRET)),
             (image_set, {"imageFrameId": UNKNOWN}, (KEY_ID, SECRET)),
             (UNKNOWN, {"imageFrameId": ids[1]}, (KEY_ID, SECRET)),
             (image_set, {"imageFrameId": "not/an-id"}, (KEY_ID, SECRET)),
             (image_set, {"imageFrameId": ids[1]}, (KEY_ID, "wrong-secret-0123456789abcdefghijklmno"))]
    statuses = [get_frame(server, datastore, target, body, routed=routed, key=key).status_code
                for routed in (False, True) for target, body, key in cases]
    assert statuses == [200, 404, 404, 400, 403] * 2
    deadline = time.monotonic() + 30  # the audit writer flushes every quarter second
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline and len(rows) < 2 * len(cases):
        time.sleep(0.3)
        rows = audit_rows(server, datastore)[before:]
    assert len(rows) == 2 * len(cases)
    keys = ("action", "status", "outcome", "principal", "auth", "interface", "datastore_id", "image_set_id",
            "bytes_out", "detail", "patient_id", "principal_name")
    lane, routed = ([{k: r.get(k) for k in keys} for r in half] for half in (rows[:len(cases)], rows[len(cases):]))
    assert lane == routed
    assert [r["status"] for r in lane] == statuses[:len(cases)]
    assert {r["action"] for r in lane} == {"medical-imaging:GetImageFrame"}
    assert lane[0]["outcome"] == "allowed" and lane[-1]["outcome"] == "denied"
    # The routed requests did carry the padded bodies (past the lane's limit); the lane's did not.
    assert all(r["bytes_in"] < MAX_FRAME_BODY for r in rows[:len(cases)] if r["status"] != 403)
    assert all(r["bytes_in"] > MAX_FRAME_BODY for r in rows[len(cases):] if r["status"] != 403)
