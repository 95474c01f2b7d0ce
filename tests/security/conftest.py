"""One real `tessel serve` holding two datastores, and the principals of the security matrix.

    A: study 1.2.826.0.1.9001 (two series: one image set tagged project=alpha, one untagged)
       study 1.2.826.0.1.9002 (one series, tagged project=alpha)
    B: study 1.2.826.0.1.9003 (one series)

Principals: the administrator (bootstrap key), a read-only key, a key scoped to datastore A,
a tag-scoped key (project=alpha), a disabled key; plus wrong secrets and expired credentials.
DIMSE callers are mapped to them in dicom-access.json.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import boto3
import httpx
import pydicom
import pytest
from botocore.config import Config

from tests.factory import make_instance

ADMIN_ID = "TSLSECURITYADMIN0001"
ADMIN_SECRET = "security-matrix-admin-secret-0123456789"
REGION = "us-east-1"
ACCOUNT = "arn:aws:medical-imaging:us-east-1:000000000000"
STUDY_A1, STUDY_A2, STUDY_B = "1.2.826.0.1.9001", "1.2.826.0.1.9002", "1.2.826.0.1.9003"
SERIES = {"a1_tagged": "1.2.826.0.1.9001.1", "a1_untagged": "1.2.826.0.1.9001.2",
          "a2_tagged": "1.2.826.0.1.9002.1", "b": "1.2.826.0.1.9003.1"}
PATIENT_NAME = "Quixote^Zebulon"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Key:
    name: str
    key_id: str
    secret: str


@dataclass
class World:
    url: str
    dicom_port: int
    data_dir: Path
    proc: subprocess.Popen[bytes]
    a: str = ""
    b: str = ""
    image_sets: dict[str, str] = field(default_factory=dict)  # series label -> image set id
    instances: dict[str, str] = field(default_factory=dict)   # series label -> SOP instance UID
    frames: dict[str, str] = field(default_factory=dict)      # series label -> frame id
    keys: dict[str, Key] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    # Every request the tests make: (interface, principal, action or None, status), for the audit check.
    calls: list[tuple[str, str, str | None, int]] = field(default_factory=list)
    provider: Any = None  # the OpenID Connect provider the server trusts (Provider)

    def tessel(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tessel.cli.main", *args, "--data-dir", str(self.data_dir)],
                              env=server_env(), capture_output=True, text=True, check=check)

    def ahi(self, key: Key | None = None, *, secret: str | None = None) -> Any:
        key = key or self.keys["admin"]
        client = boto3.client("medical-imaging", endpoint_url=self.url, region_name=REGION,
                              aws_access_key_id=key.key_id, aws_secret_access_key=secret or key.secret,
                              config=Config(inject_host_prefix=False, retries={"max_attempts": 1}))

        def after_call(http_response: Any, model: Any, **_: Any) -> None:
            self.calls.append(("ahi", key.key_id, f"medical-imaging:{model.name}", http_response.status_code))

        client.meta.events.register("after-call.medical-imaging", after_call)
        return client

    def http(self) -> httpx.Client:
        def on_response(response: httpx.Response) -> None:
            self.calls.append((interface_of(response.request.url.path), http_principal(response), None,
                               response.status_code))

        return httpx.Client(base_url=self.url, timeout=60, event_hooks={"response": [on_response]})


def interface_of(path: str) -> str:
    parts = path.strip("/").split("/")
    return "dicomweb" if len(parts) >= 3 and parts[2] in ("studies", "series", "instances") else "ahi"


def http_principal(response: httpx.Response) -> str:
    """Who the audit trail should name for a request: the key (also when its credentials fail)."""
    import base64

    import jwt

    scheme, _, value = response.request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        return base64.b64decode(value).decode().partition(":")[0]
    if scheme.lower() == "bearer":
        if response.status_code == 401:
            return "bearer-token"  # not authenticated: the token names no one the server trusts
        return str(jwt.decode(value, options={"verify_signature": False})["sub"])
    return "anonymous"


def server_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TESSEL_", "AWS_"))}
    env.update(TESSEL_ACCESS_KEY_ID=ADMIN_ID, TESSEL_SECRET_ACCESS_KEY=ADMIN_SECRET, **extra)
    return env


def _create_key(world: World, name: str, policy: dict[str, Any] | None) -> Key:
    args = ["keys", "create", name]
    if policy is not None:
        path = world.data_dir.parent / f"{name}.policy.json"
        path.write_text(json.dumps(policy))
        args += ["--policy", str(path)]
    out = world.tessel(*args).stdout
    values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return Key(name, values["AWS_ACCESS_KEY_ID"], values["AWS_SECRET_ACCESS_KEY"])


def policies(a: str) -> dict[str, dict[str, Any]]:
    return {
        "reader": {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": ["medical-imaging:Get*", "medical-imaging:Search*", "medical-imaging:List*"],
            "Resource": "*"}]},
        "one_datastore": {"Statement": [
            {"Effect": "Allow", "Action": "medical-imaging:*", "Resource": [
                f"{ACCOUNT}:datastore/{a}", f"{ACCOUNT}:datastore/{a}/*"]},
            {"Effect": "Allow", "Action": "medical-imaging:ListDatastores", "Resource": "*"}]},
        "tagged": {"Statement": [
            {"Effect": "Allow", "Action": "medical-imaging:*", "Resource": "*",
             "Condition": {"StringEquals": {"aws:ResourceTag/project": "alpha"}}},
            {"Effect": "Allow", "Action": "medical-imaging:ListDatastores", "Resource": "*"}]},
    }


def _store(world: World, datastore_id: str, paths: list[Path]) -> None:
    boundary = "matrix-boundary"
    body = b"".join(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + p.read_bytes() + b"\r\n"
                    for p in paths) + f"--{boundary}--\r\n".encode()
    with world.http() as http:
        r = http.post(f"/datastore/{datastore_id}/studies", content=body, auth=(ADMIN_ID, ADMIN_SECRET),
                      headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                               "Accept": "application/dicom+json"})
    assert r.status_code == 200, r.text


def _build(world: World, tmp: Path) -> None:
    admin = world.keys["admin"] = Key("admin", ADMIN_ID, ADMIN_SECRET)
    hi = world.ahi(admin)
    world.a = hi.create_datastore(datastoreName="matrix-a")["datastoreId"]
    world.b = hi.create_datastore(datastoreName="matrix-b")["datastoreId"]
    layout = {"a1_tagged": (world.a, STUDY_A1, 1), "a1_untagged": (world.a, STUDY_A1, 2),
              "a2_tagged": (world.a, STUDY_A2, 1), "b": (world.b, STUDY_B, 1)}
    for label, (ds, study, number) in layout.items():
        path = make_instance(tmp / f"{label}.dcm", study=study, series=SERIES[label], series_number=number,
                             patient_name=PATIENT_NAME, patient_id=f"MRN-{study[-4:]}", seed=number, rows=64, columns=64)
        world.files[label] = path
        world.instances[label] = str(pydicom.dcmread(path).SOPInstanceUID)
        _store(world, ds, [path])
    for label, (ds, _, _) in layout.items():
        found = hi.search_image_sets(datastoreId=ds, searchCriteria={"filters": [
            {"operator": "EQUAL", "values": [{"DICOMSeriesInstanceUID": SERIES[label]}]}]})
        (summary,) = found["imageSetsMetadataSummaries"]
        world.image_sets[label] = summary["imageSetId"]
        doc = json.loads(__import__("gzip").decompress(hi.get_image_set_metadata(
            datastoreId=ds, imageSetId=summary["imageSetId"])["imageSetMetadataBlob"].read()))
        (series,) = doc["Study"]["Series"].values()
        (node,) = series["Instances"].values()
        world.frames[label] = node["ImageFrames"][0]["ID"]
    for label in ("a1_tagged", "a2_tagged"):
        hi.tag_resource(resourceArn=f"{ACCOUNT}:datastore/{world.a}/imageset/{world.image_sets[label]}",
                        tags={"project": "alpha"})
    for name, policy in policies(world.a).items():
        world.keys[name] = _create_key(world, name, policy)
    world.keys["disabled"] = _create_key(world, "disabled", None)
    world.tessel("keys", "disable", world.keys["disabled"].key_id)
    access = {"callers": {
        "ADMIN": {"datastore": world.a},
        "READER": {"access_key": world.keys["reader"].key_id, "datastore": world.a},
        "ONEDS_A": {"access_key": world.keys["one_datastore"].key_id, "datastore": world.a},
        "ONEDS_B": {"access_key": world.keys["one_datastore"].key_id, "datastore": world.b},
        "TAGGED": {"policy": policies(world.a)["tagged"], "datastore": world.a},
        "GONE": {"access_key": world.keys["disabled"].key_id, "datastore": world.a},
    }}
    (world.data_dir / "dicom-access.json").write_text(json.dumps(access))


class Provider:
    """A stand-in OpenID Connect provider: an RSA key pair, its JWKS and discovery document on a
    loopback port, and tokens signed with it."""

    AUDIENCE = "tessel-tests"

    def __init__(self) -> None:
        import http.server
        import threading

        import jwt
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update(kid="test-key-1", use="sig", alg="RS256")
        port = free_port()
        self.issuer = f"http://127.0.0.1:{port}"
        documents = {"/.well-known/openid-configuration": {"issuer": self.issuer,
                                                           "jwks_uri": f"{self.issuer}/jwks.json"},
                     "/jwks.json": {"keys": [jwk]}}

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                body = json.dumps(documents.get(self.path, {})).encode()
                self.send_response(200 if self.path in documents else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, *, groups: list[str], sub: str = "user-1", ttl: int = 300, audience: str | None = None,
              key: Any = None, kid: str = "test-key-1", issued: float | None = None) -> str:
        import jwt

        now = int(issued if issued is not None else time.time())
        claims = {"iss": self.issuer, "sub": sub, "aud": audience or self.AUDIENCE, "iat": now, "exp": now + ttl,
                  "groups": groups, "preferred_username": f"{sub}@hospital"}
        return jwt.encode(claims, key or self.key, algorithm="RS256", headers={"kid": kid})

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("security")
    data_dir = base / "data"
    port, dicom_port = free_port(), free_port()
    provider = Provider()
    roles = base / "oidc-policies.json"
    roles.write_text(json.dumps({"claim": "groups", "policies": {
        "readers": policies("*")["reader"], "alpha-team": policies("*")["tagged"]}, "default": None}))
    env = server_env(TESSEL_OIDC_ISSUER=provider.issuer, TESSEL_OIDC_AUDIENCE=Provider.AUDIENCE,
                     TESSEL_OIDC_POLICY_FILE=str(roles))
    with open(base / "serve.out", "ab") as out, open(base / "serve.err", "ab") as err:
        proc = subprocess.Popen([sys.executable, "-m", "tessel.cli.main", "serve", "--data-dir", str(data_dir),
                                 "--port", str(port), "--dicom-port", str(dicom_port), "--workers", "1"],
                                env=env, stdout=out, stderr=err)
    world = World(url=f"http://127.0.0.1:{port}", dicom_port=dicom_port, data_dir=data_dir, proc=proc,
                  provider=provider)
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise AssertionError((base / "serve.err").read_text())
            try:
                if httpx.get(f"{world.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("server did not become healthy")
            time.sleep(0.1)
        _build(world, base)
        yield world
    finally:
        provider.stop()
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        err, out = (base / "serve.err").read_text(), (base / "serve.out").read_text()
        assert "Traceback" not in err, err
        for text in (err, out):  # no PHI values in application logs
            assert PATIENT_NAME not in text and "MRN-" not in text
