"""Who may use DICOMweb: SigV4, HTTP Basic, Bearer tokens from `tessel token create`, key policies,
`--no-auth`, and CORS for browser viewers (preflight with Authorization)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pydicom
import pytest
from dicomweb_client import DICOMwebClient
from requests.exceptions import HTTPError

from tessel.auth import KeyStatus, KeyStore
from tessel.auth.tokens import TokenSigner
from tessel.catalog import Catalog
from tests.dicomweb.conftest import KEY_ID, SECRET, Server, start_server, stop_server
from tests.factory import make_series


@pytest.fixture(scope="module")
def keys(server: Server) -> Iterator[KeyStore]:
    catalog = Catalog.open(f"sqlite:///{server.data_dir / 'catalog.sqlite'}")
    yield KeyStore(catalog)
    catalog.close()


@pytest.fixture(scope="module")
def study(client: DICOMwebClient, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    (path,) = make_series(tmp_path_factory.mktemp("auth"), 1)
    client.store_instances([pydicom.dcmread(path)])
    ds = pydicom.dcmread(path)
    return ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID


def refused(client: DICOMwebClient) -> httpx.Response | Any:
    with pytest.raises(HTTPError) as info:
        client.search_for_studies()
    return info.value.response


@pytest.mark.parametrize("auth", ["basic", "sigv4"])
def test_each_credential_type_is_accepted_by_dicomweb_client(server: Server, datastore: str,
                                                              study: tuple[str, str, str], auth: str) -> None:
    client = server.dicomweb(datastore, auth=auth)
    assert [s["0020000D"]["Value"][0] for s in client.search_for_studies()] == [study[0]]
    assert client.retrieve_instance(*study).SOPInstanceUID == study[2]
    assert len(client.retrieve_instance_frames(*study, [1])) == 1


def test_a_token_from_tessel_token_create_is_accepted(server: Server, datastore: str,
                                                      study: tuple[str, str, str]) -> None:
    token = server.token("--ttl", "10m")
    assert token.count(".") == 2  # a JWT
    client = server.dicomweb(datastore, auth=f"bearer:{token}")
    assert client.retrieve_study_metadata(study[0])[0]["00080018"]["Value"] == [study[2]]


def test_missing_credentials_are_refused_with_a_challenge(server: Server, datastore: str) -> None:
    response = refused(server.dicomweb(datastore, auth=None))
    assert response.status_code == 401
    assert "Basic" in response.headers["WWW-Authenticate"] and "Bearer" in response.headers["WWW-Authenticate"]
    assert "credentials required" in response.json()["message"]
    with httpx.Client() as http:  # every resource, not only searches
        for path in ("/studies/1.2.3/metadata", "/studies/1.2.3/series/4/instances/5/frames/1",
                     "/studies/1.2.3/thumbnail"):
            assert http.get(f"{server.url}/datastore/{datastore}{path}").status_code == 401
        assert http.post(f"{server.url}/datastore/{datastore}/studies", content=b"x",
                         headers={"Content-Type": "application/dicom"}).status_code == 401


@pytest.mark.parametrize("auth, message", [
    ((KEY_ID, "wrong-secret"), "wrong secret"),
    (("TSLNOSUCHKEY00000000", SECRET), "unknown access key"),
    ("bearer:not.a.token", "invalid"),
])
def test_wrong_credentials_are_refused(server: Server, datastore: str, auth: Any, message: str) -> None:
    response = refused(server.dicomweb(datastore, auth=auth))
    assert response.status_code == 401
    assert message in response.json()["message"]


def test_a_wrong_sigv4_secret_is_refused(server: Server, datastore: str) -> None:
    from tests.dicomweb.conftest import SigV4

    response = refused(server.dicomweb(datastore, auth=SigV4(KEY_ID, "wrong-secret")))
    assert response.status_code == 401
    assert "signature" in response.json()["message"]


def test_expired_and_foreign_tokens_are_refused(server: Server, datastore: str, tmp_path: Path) -> None:
    expired = TokenSigner(server.data_dir).create(KEY_ID, 60, now=time.time() - 3600)
    response = refused(server.dicomweb(datastore, auth=f"bearer:{expired}"))
    assert response.status_code == 401 and "expired" in response.json()["message"]
    foreign = TokenSigner(tmp_path).create(KEY_ID, 600)  # signed with another server's secret
    assert refused(server.dicomweb(datastore, auth=f"bearer:{foreign}")).status_code == 401


def test_a_token_stops_working_when_its_key_is_disabled(server: Server, datastore: str, keys: KeyStore) -> None:
    key = keys.create("viewer-user")
    token = server.token("--key", key.access_key_id)
    keys.set_status(key.access_key_id, KeyStatus.DISABLED)  # the server has never looked this key up
    response = refused(server.dicomweb(datastore, auth=f"bearer:{token}"))
    assert response.status_code == 401 and "disabled" in response.json()["message"]


def test_a_key_policy_decides_what_a_caller_may_do(server: Server, datastore: str, keys: KeyStore,
                                                   study: tuple[str, str, str]) -> None:
    policy = {"Statement": [
        {"Effect": "Allow", "Action": ["medical-imaging:SearchDICOM*", "medical-imaging:GetDICOM*"],
         "Resource": "*"},
        {"Effect": "Deny", "Action": "medical-imaging:GetDICOMInstanceFrames", "Resource": "*"}]}
    key = keys.create("reader", policy=policy)
    reader = server.dicomweb(datastore, auth=(key.access_key_id, key.secret.reveal()))
    assert len(reader.search_for_studies()) == 1
    assert reader.retrieve_instance_metadata(*study)["00080018"]["Value"] == [study[2]]
    with pytest.raises(HTTPError) as info:
        reader.retrieve_instance_frames(*study, [1])
    assert info.value.response.status_code == 403
    assert "GetDICOMInstanceFrames" in info.value.response.json()["message"]
    with pytest.raises(HTTPError) as info:
        reader.store_instances([pydicom.dcmread(make_series(server.data_dir.parent / "denied", 1)[0])])
    assert info.value.response.status_code == 403


# -- a server with --no-auth and configured CORS origins --------------------------------------------

@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp("no-auth") / "data"
    proc, port = start_server(data_dir, "--no-auth",
                              env={"TESSEL_CORS_ORIGINS": "https://viewer.example,https://ohif.example"})
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        err = stop_server(proc, data_dir)
        assert "--no-auth" in err  # said loudly, on stderr
        assert "Traceback" not in err


def test_no_auth_lets_anonymous_callers_in_but_still_checks_given_credentials(open_server: str) -> None:
    datastore = httpx.post(f"{open_server}/datastore", json={"datastoreName": "open"},
                           auth=None).status_code  # the AHI API keeps SigV4: --no-auth is DICOMweb only
    assert datastore == 403
    import boto3
    from botocore.config import Config

    ahi = boto3.client("medical-imaging", endpoint_url=open_server, region_name="us-east-1",
                       aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET,
                       config=Config(inject_host_prefix=False))
    datastore_id = ahi.create_datastore(datastoreName="open")["datastoreId"]
    anonymous = DICOMwebClient(f"{open_server}/datastore/{datastore_id}")
    assert anonymous.search_for_studies() == []
    wrong = DICOMwebClient(f"{open_server}/datastore/{datastore_id}")
    wrong._session.auth = (KEY_ID, "wrong-secret")
    with pytest.raises(HTTPError) as info:
        wrong.search_for_studies()
    assert info.value.response.status_code == 401


def test_cors_preflight_allows_authorization_from_configured_origins(open_server: str) -> None:
    url = f"{open_server}/datastore/{'0' * 32}/studies/1.2.3/series/4/instances/5/frames/1"
    preflight = httpx.options(url, headers={"Origin": "https://ohif.example", "Access-Control-Request-Method": "GET",
                                            "Access-Control-Request-Headers": "authorization, accept"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://ohif.example"
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert "GET" in preflight.headers["access-control-allow-methods"]
    answer = httpx.get(f"{open_server}/datastore/{'0' * 32}/studies", headers={"Origin": "https://viewer.example"})
    assert answer.headers["access-control-allow-origin"] == "https://viewer.example"
    assert "content-type" in answer.headers["access-control-expose-headers"].lower()
    stranger = httpx.options(url, headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET",
                                           "Access-Control-Request-Headers": "authorization"})
    assert stranger.status_code == 400
    assert "access-control-allow-origin" not in stranger.headers


def test_cors_default_allows_any_origin(server: Server, datastore: str) -> None:
    preflight = httpx.options(f"{server.url}/datastore/{datastore}/studies",
                              headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "GET",
                                       "Access-Control-Request-Headers": "authorization"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] in ("*", "http://localhost:3000")
