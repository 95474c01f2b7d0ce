"""`tessel demo` (what `make demo` runs): generated studies in, server up, every printed address works."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import boto3
import httpx
import pytest
from botocore.config import Config
from pynetdicom import AE

from tessel import viewer

from tests.cli.test_serve import free_port


class Demo:
    def __init__(self, data: Path) -> None:
        self.data = data
        self.port, self.dicom_port = free_port(), free_port()
        env = {**os.environ, "TESSEL_WORKERS": "2"}
        env.pop("TESSEL_ACCESS_KEY_ID", None)
        env.pop("TESSEL_SECRET_ACCESS_KEY", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tessel.cli.main", "demo", "--data-dir", str(data), "--port", str(self.port),
             "--dicom-port", str(self.dicom_port)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: list[str] = []
        self.ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if "Ctrl-C stops the server" in line:
                self.ready.set()

    def wait_ready(self, timeout: float = 900) -> str:
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.5):
            assert self.proc.poll() is None, "\n".join(self.lines)
            assert time.monotonic() < deadline, "\n".join(self.lines)
        return "\n".join(self.lines)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    running = Demo(tmp_path / "data")
    try:
        yield running
    finally:
        running.stop()


def value(output: str, pattern: str) -> str:
    found = re.search(pattern, output)
    assert found, f"{pattern!r} not in:\n{output}"
    return found.group(1)


def test_demo_imports_the_samples_serves_and_prints_every_address_and_the_key(demo: Demo) -> None:
    output = demo.wait_ready()
    base = f"http://127.0.0.1:{demo.port}"
    assert "94 of 94 files imported into 5 image sets, 0 failed" in output
    key_id = value(output, r"AWS_ACCESS_KEY_ID=(\S+)")
    secret = value(output, r"AWS_SECRET_ACCESS_KEY=(\S+)")
    assert value(output, r"AWS HealthImaging API\s+(\S+)") == base
    dicomweb = value(output, r"DICOMweb \(demo\)\s+(\S+)")
    assert value(output, r"viewer\s+(\S+)") == f"{base}/viewer/"
    if viewer.is_built():  # `make test` builds it
        link = value(output, r"signed in \(12 h\)\s+(\S+)")
        assert link.startswith(f"{base}/viewer/#token=")
        token = link.split("#token=", 1)[1]
        assert httpx.get(f"{base}/viewer/api/datastores",
                         headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert f"AE title TESSEL on 127.0.0.1 port {demo.dicom_port}" in output

    assert httpx.get(f"{base}/healthz").status_code == 200
    hi = boto3.client("medical-imaging", endpoint_url=base, region_name="us-east-1", aws_access_key_id=key_id,
                      aws_secret_access_key=secret, config=Config(inject_host_prefix=False))
    (datastore,) = [d for d in hi.list_datastores()["datastoreSummaries"] if d["datastoreName"] == "demo"]
    assert dicomweb == f"{base}/datastore/{datastore['datastoreId']}"
    found = hi.search_image_sets(datastoreId=datastore["datastoreId"])["imageSetsMetadataSummaries"]
    names = {s["DICOMTags"]["DICOMPatientName"] for s in found}
    assert len(found) == 5 and "Yamada^Tarou=山田^太郎=やまだ^たろう" in names and "Hong^Gildong=洪^吉洞=홍^길동" in names

    studies = httpx.get(f"{dicomweb}/studies", auth=(key_id, secret), headers={"Accept": "application/dicom+json"})
    assert studies.status_code == 200 and len(studies.json()) == 5

    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context("1.2.840.10008.1.1")
    association = ae.associate("127.0.0.1", demo.dicom_port, ae_title="TESSEL")
    assert association.is_established
    status = association.send_c_echo()
    association.release()
    assert status.Status == 0x0000

    # Ctrl-C ends the demo cleanly; again, the samples are not imported twice and the same key is shown.
    demo.stop()
    assert demo.proc.returncode == 0, "\n".join(demo.lines)
    again = Demo(demo.data)
    try:
        output = again.wait_ready()
        assert "already imported" in output and "generating" not in output
        assert value(output, r"AWS_SECRET_ACCESS_KEY=(\S+)") == secret
    finally:
        again.stop()
