"""An S3-compatible server for tests: moto's server mode on a loopback port, one per session.

Registered as a pytest plugin in tests/conftest.py, so any test can ask for `s3_server`
and get a real HTTP endpoint that boto3 (and worker processes) reach like AWS S3.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Iterator

import pytest

from tessel.config import Secret, Settings

ACCESS_KEY_ID = "tessel-test-key"
SECRET_ACCESS_KEY = "tessel-test-secret"


@dataclass
class S3Server:
    endpoint_url: str
    _names: Iterator[int] = field(default_factory=itertools.count)

    def settings(self, **changes: Any) -> Settings:
        """Settings pointing s3:// URLs at this server (plus any other fields given)."""
        return Settings(s3_endpoint_url=self.endpoint_url, s3_access_key_id=ACCESS_KEY_ID,
                        s3_secret_access_key=Secret(SECRET_ACCESS_KEY), **changes)

    def client(self) -> Any:
        from tessel.blobs.s3 import s3_client

        return s3_client(self.settings())

    def new_bucket(self, stem: str = "tessel-test") -> str:
        """A fresh, empty bucket: tests never see each other's objects."""
        name = f"{stem}-{next(self._names)}"
        self.client().create_bucket(Bucket=name)
        return name


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)  # port 0: the OS picks a free one
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield S3Server(endpoint_url=f"http://{host}:{port}")
    finally:
        server.stop()
