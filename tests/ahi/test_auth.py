"""Authentication and authorization on the real server: every request is SigV4-checked."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tessel.auth import KeyStatus, KeyStore
from tessel.catalog import Catalog
from tessel.config import Settings
from tessel.stores import data_keys
from tests.ahi.conftest import KEY_ID, SECRET, Server, make_client, server_env, start_server, stop_server


def signed(server: Server, method: str, path: str, body: bytes = b"", *, secret: str = SECRET,
           headers: dict[str, str] | None = None) -> httpx.Request:
    request = AWSRequest(method=method, url=server.url + path, data=body, headers=headers or {})
    SigV4Auth(Credentials(KEY_ID, secret), "medical-imaging", "us-east-1").add_auth(request)
    return httpx.Request(method, server.url + path, content=body, headers=dict(request.headers.items()))


def assert_denied(response: httpx.Response, fragment: str = "") -> None:
    assert response.status_code == 403, response.text
    assert response.headers["x-amzn-ErrorType"] == "AccessDeniedException"
    assert fragment in response.json()["message"]


@pytest.fixture(scope="module")
def keys(server: Server) -> Any:
    catalog = Catalog.open(server.catalog_url)
    yield KeyStore(catalog, data_keys(Settings(data_dir=server.data_dir, master_key_file=server.master_key_file), catalog))
    catalog.close()


def test_health_and_metrics_need_no_signature(server: Server) -> None:
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    assert httpx.get(f"{server.url}/metrics").status_code == 200


def test_an_unsigned_request_is_denied(server: Server) -> None:
    assert_denied(httpx.get(f"{server.url}/datastore"), "not signed")
    assert_denied(httpx.post(f"{server.url}/datastore", json={"clientToken": "x"}), "not signed")
    assert_denied(httpx.get(f"{server.url}/datastore", auth=(KEY_ID, SECRET)))  # no Basic on this API


def test_a_signed_request_passes(server: Server) -> None:
    with httpx.Client() as http:
        assert http.send(signed(server, "GET", "/datastore?maxResults=1")).status_code == 200


def test_a_wrong_secret_or_unknown_key_is_denied(server: Server) -> None:
    for client in (server.client(secret="wrong-secret"), make_client(server.url, "TSLNOSUCHKEY00000000", SECRET)):
        with pytest.raises(ClientError) as caught:
            client.list_datastores()
        assert caught.value.response["Error"]["Code"] == "AccessDeniedException"
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_a_body_altered_after_signing_is_denied(server: Server) -> None:
    request = signed(server, "POST", "/datastore", b'{"clientToken": "a1", "datastoreName": "one"}')
    tampered = httpx.Request("POST", request.url, content=b'{"clientToken": "a1", "datastoreName": "two"}',
                             headers={k: v for k, v in request.headers.items() if k.lower() != "content-length"})
    with httpx.Client() as http:
        assert_denied(http.send(tampered), "signature")


def test_an_expired_signature_is_denied(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    import botocore.auth

    past = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(minutes=20)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: past)
    with httpx.Client() as http:
        assert_denied(http.send(signed(server, "GET", "/datastore")), "expired")


def test_a_literal_payload_hash_header_is_honoured_as_curl_sends_it(server: Server) -> None:
    body = json.dumps({"clientToken": "curl-style-1", "datastoreName": "curl"}).encode()
    with httpx.Client() as http:
        ok = http.send(signed(server, "POST", "/datastore", body,
                              headers={"x-amz-content-sha256": hashlib.sha256(body).hexdigest(),
                                       "Content-Type": "application/json"}))
        assert ok.status_code == 200, ok.text
        lying = signed(server, "POST", "/datastore", body,
                       headers={"x-amz-content-sha256": hashlib.sha256(b"other").hexdigest()})
        assert_denied(http.send(lying), "does not match the request body")


def test_a_disabled_key_is_denied(server: Server, keys: KeyStore) -> None:
    key = keys.create("temporary")
    client = make_client(server.url, key.access_key_id, key.secret.reveal())
    client.list_datastores()
    keys.set_status(key.access_key_id, KeyStatus.DISABLED)
    time.sleep(keys.ttl)  # the server caches key lookups this long
    with pytest.raises(client.exceptions.AccessDeniedException):
        client.list_datastores()


def test_a_key_policy_limits_actions_and_resources(server: Server, keys: KeyStore, client: Any,
                                                   datastore: str) -> None:
    other = client.create_datastore(datastoreName="not-readable")["datastoreId"]
    policy = {"Statement": [
        {"Effect": "Allow", "Action": ["medical-imaging:Get*", "medical-imaging:ListDatastores"],
         "Resource": "*"},
        {"Effect": "Deny", "Action": "medical-imaging:*",
         "Resource": f"arn:aws:medical-imaging:*:*:datastore/{other}*"}]}
    key = keys.create("reader", policy=policy)
    reader = make_client(server.url, key.access_key_id, key.secret.reveal())
    assert reader.get_datastore(datastoreId=datastore)["datastoreProperties"]["datastoreId"] == datastore
    reader.list_datastores()
    with pytest.raises(reader.exceptions.AccessDeniedException) as caught:
        reader.create_datastore(datastoreName="nope")
    assert "medical-imaging:CreateDatastore" in str(caught.value)
    with pytest.raises(reader.exceptions.ResourceNotFoundException):  # denied everything: as if absent
        reader.get_datastore(datastoreId=other)
    client.delete_datastore(datastoreId=other)


def test_a_generated_administrator_key_is_printed_once_and_works(tmp_path: Path) -> None:
    data = tmp_path / "fresh"
    proc, port = start_server(data, server_env())
    out, _ = stop_server(proc, data)
    lines = dict(line.strip().split("=", 1) for line in out.splitlines() if line.strip().startswith("AWS_"))
    key_id, secret = lines["AWS_ACCESS_KEY_ID"], lines["AWS_SECRET_ACCESS_KEY"]
    assert key_id.startswith("TSL") and len(secret) >= 40
    proc, port = start_server(data, server_env())
    try:
        client = make_client(f"http://127.0.0.1:{port}", key_id, secret)
        assert client.list_datastores()["datastoreSummaries"] == []
    finally:
        out_again, _ = stop_server(proc, data)
    assert out_again.count(secret) == 1  # serve.out accumulates: the secret appeared on the first start only
