"""A real `tessel serve` on a loopback port, driven by boto3's `medical-imaging` client.

One server per session (its own data dir, a known bootstrap key); each test makes
its own datastores, so tests never depend on each other's data.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import boto3
import httpx
import pytest
from botocore.config import Config

from tessel.blobs import open_blob_store
from tessel.config import Settings, load_settings
from tests.stack import Stack

KEY_ID = "TSLTESTKEY0000000001"
SECRET = "tessel-test-secret-0123456789abcdefghij"
REGION = "us-east-1"
ROLE_ARN = "arn:aws:iam::123456789012:role/tessel-import"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    port: int
    data_dir: Path
    proc: subprocess.Popen[bytes]
    key_id: str = KEY_ID
    secret: str = SECRET
    env: dict[str, str] = field(default_factory=dict)  # the stack's TESSEL_* variables

    @property
    def catalog_url(self) -> str:
        return self.env.get("TESSEL_CATALOG_URL") or f"sqlite:///{self.data_dir / 'catalog.sqlite'}"

    @property
    def master_key_file(self) -> Path:
        return Path(self.env.get("TESSEL_MASTER_KEY_FILE") or self.data_dir / "master.key")

    def settings(self) -> Settings:
        """The server's settings (its data dir and the stack's TESSEL_* variables)."""
        return load_settings({"data_dir": self.data_dir}, self.env)

    def stored_keys(self, prefix: str) -> list[str]:
        """Blob keys under `prefix` in the server's blob store (files or the stack's bucket)."""
        settings = self.settings()
        return list(open_blob_store(settings.resolved_blob_url, settings).list(prefix))

    @property
    def imports(self) -> Path:
        """A folder under the default import roots (the data dir's imports/)."""
        return self.data_dir / "imports"

    def new_folder(self, stem: str = "in") -> Path:
        folder = self.imports / f"{stem}-{uuid.uuid4().hex[:8]}"
        folder.mkdir(parents=True)
        return folder

    def client(self, **kwargs: Any) -> Any:
        return make_client(self.url, kwargs.pop("key_id", self.key_id), kwargs.pop("secret", self.secret),
                           **kwargs)


def make_client(url: str, key_id: str, secret: str, **config: Any) -> Any:
    return boto3.client(
        "medical-imaging", endpoint_url=url, region_name=REGION,
        aws_access_key_id=key_id, aws_secret_access_key=secret,
        config=Config(inject_host_prefix=False, **{"retries": {"max_attempts": 1}, **config}))


def server_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TESSEL_", "AWS_"))}
    env.update(extra)
    return env


def start_server(data_dir: Path, env: dict[str, str], timeout: float = 180) -> tuple[subprocess.Popen[bytes], int]:
    """`tessel serve` in a subprocess; its output goes to data_dir/../serve.out and serve.err
    (files, not pipes: a full pipe would stall the server)."""
    port = free_port()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(data_dir.parent / "serve.out", "ab") as out, open(data_dir.parent / "serve.err", "ab") as err:
        proc = subprocess.Popen([sys.executable, "-m", "tessel.cli.main", "serve", "--data-dir", str(data_dir),
                                 "--port", str(port), "--dicom-port", str(free_port()), "--workers", "2"],
                                env=env, stdout=out, stderr=err)
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


def stop_server(proc: subprocess.Popen[bytes], data_dir: Path) -> tuple[str, str]:
    """Stop the server; (stdout, stderr) it wrote over its life."""
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return ((data_dir.parent / "serve.out").read_text(), (data_dir.parent / "serve.err").read_text())


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, stack: Stack) -> Iterator[Server]:
    """One server per stack (tests/stack.py): every test using it runs on both."""
    data_dir = tmp_path_factory.mktemp(f"ahi-{stack.name}") / "data"
    env = stack.env()
    proc, port = start_server(data_dir, server_env(TESSEL_ACCESS_KEY_ID=KEY_ID, TESSEL_SECRET_ACCESS_KEY=SECRET,
                                                   **env))
    try:
        yield Server(url=f"http://127.0.0.1:{port}", port=port, data_dir=data_dir, proc=proc, env=env)
    finally:
        _, err = stop_server(proc, data_dir)
        # The catch-all logs unexpected failures; none may happen in a test run.
        assert "InternalServerException" not in err and "Traceback" not in err, err


@pytest.fixture(scope="session")
def client(server: Server) -> Any:
    return server.client()


@pytest.fixture
def datastore(client: Any) -> Iterator[str]:
    """A fresh, empty, ACTIVE datastore (deleted afterwards if empty: the server has a quota)."""
    out = client.create_datastore(datastoreName=f"test-{uuid.uuid4().hex[:8]}")
    yield str(out["datastoreId"])
    try:
        client.delete_datastore(datastoreId=out["datastoreId"])
    except (client.exceptions.ConflictException, client.exceptions.ResourceNotFoundException):
        pass  # holds image sets, or the test deleted it


def wait_for_job(client: Any, datastore_id: str, job_id: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        props: dict[str, Any] = client.get_dicom_import_job(datastoreId=datastore_id, jobId=job_id)["jobProperties"]
        if props["jobStatus"] in ("COMPLETED", "FAILED"):
            return props
        time.sleep(0.2)
    raise AssertionError(f"import job {job_id} did not finish")


def import_folder(client: Any, server: Server, datastore_id: str, folder: Path) -> dict[str, Any]:
    """Run StartDICOMImportJob on `folder` and wait for it; returns the job's properties."""
    out = server.new_folder("out")
    job = client.start_dicom_import_job(datastoreId=datastore_id, dataAccessRoleArn=ROLE_ARN,
                                        inputS3Uri=folder.as_uri() + "/", outputS3Uri=out.as_uri() + "/")
    assert job["jobStatus"] == "SUBMITTED"
    props = wait_for_job(client, datastore_id, job["jobId"])
    assert props["jobStatus"] == "COMPLETED", props
    return props
