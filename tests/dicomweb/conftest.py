"""A real `tessel serve` on loopback ports, reached with dicomweb-client, httpx and boto3.

One server per session (own data dir, a known bootstrap key); each test module
makes its own datastore, so tests never depend on each other's data.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import boto3
import httpx
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from dicomweb_client import DICOMwebClient

KEY_ID = "TSLDICOMWEBTEST00001"
SECRET = "tessel-dicomweb-secret-0123456789abcdef"
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SigV4(requests.auth.AuthBase):
    """requests auth that signs like botocore does (service medical-imaging)."""

    def __init__(self, key_id: str, secret: str) -> None:
        self.credentials = Credentials(key_id, secret)

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        body = r.body if isinstance(r.body, bytes) else (r.body or "").encode() if isinstance(r.body, str) else b""
        aws = AWSRequest(method=r.method, url=r.url, data=body,
                         headers={k: v for k, v in r.headers.items() if k.lower() in ("host", "content-type")})
        SigV4Auth(self.credentials, "medical-imaging", REGION).add_auth(aws)
        for name in ("Authorization", "X-Amz-Date"):
            r.headers[name] = aws.headers[name]
        return r


@dataclass
class Server:
    url: str
    port: int
    data_dir: Path
    proc: subprocess.Popen[bytes]

    def dicomweb(self, datastore_id: str, auth: Any = "basic", **kwargs: Any) -> DICOMwebClient:
        session = requests.Session()
        if auth == "basic":
            session.auth = (KEY_ID, SECRET)
        elif auth == "sigv4":
            session.auth = SigV4(KEY_ID, SECRET)
        elif isinstance(auth, str) and auth.startswith("bearer:"):
            session.headers["Authorization"] = f"Bearer {auth[7:]}"
        elif auth is not None:
            session.auth = auth
        return DICOMwebClient(f"{self.url}/datastore/{datastore_id}", session=session, timeout=120, **kwargs)

    def http(self, auth: Any = (KEY_ID, SECRET)) -> httpx.Client:
        return httpx.Client(base_url=self.url, auth=auth, timeout=120)

    def ahi(self) -> Any:
        return boto3.client("medical-imaging", endpoint_url=self.url, region_name=REGION,
                            aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET,
                            config=Config(inject_host_prefix=False, retries={"max_attempts": 1}))

    def token(self, *args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "tessel.cli.main", "token", "create", "--data-dir",
                              str(self.data_dir), *args], env=server_env(), capture_output=True, text=True,
                             check=True)
        return out.stdout.strip()


def server_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TESSEL_", "AWS_"))}
    env.update(TESSEL_ACCESS_KEY_ID=KEY_ID, TESSEL_SECRET_ACCESS_KEY=SECRET, **extra)
    return env


def start_server(data_dir: Path, *extra_args: str, timeout: float = 60,
                 env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(data_dir.parent / "serve.out", "ab") as out, open(data_dir.parent / "serve.err", "ab") as err:
        proc = subprocess.Popen([sys.executable, "-m", "tessel.cli.main", "serve", "--data-dir", str(data_dir),
                                 "--port", str(port), "--dicom-port", str(free_port()), "--workers", "2",
                                 *extra_args], env=server_env(**(env or {})), stdout=out, stderr=err)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early: {(data_dir.parent / 'serve.err').read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("server did not become healthy")


def stop_server(proc: subprocess.Popen[bytes], data_dir: Path) -> str:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return (data_dir.parent / "serve.err").read_text()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("dicomweb") / "data"
    proc, port = start_server(data_dir)
    try:
        yield Server(url=f"http://127.0.0.1:{port}", port=port, data_dir=data_dir, proc=proc)
    finally:
        err = stop_server(proc, data_dir)
        assert "Traceback" not in err, err  # unexpected failures are logged with one; none may happen


@pytest.fixture(scope="module")
def datastore(server: Server) -> str:
    out = server.ahi().create_datastore(datastoreName=f"dicomweb-{uuid.uuid4().hex[:8]}")
    return str(out["datastoreId"])


@pytest.fixture(scope="module")
def client(server: Server, datastore: str) -> DICOMwebClient:
    return server.dicomweb(datastore)
