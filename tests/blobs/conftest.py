"""The `store` fixture: every blob store adapter, so one contract suite covers them all."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tessel.blobs import BlobStore
from tessel.blobs.file import FileBlobStore
from tessel.blobs.memory import MemoryBlobStore
from tessel.blobs.s3 import S3BlobStore
from tests.s3server import S3Server


@pytest.fixture(scope="session")
def s3_bucket(s3_server: S3Server) -> str:
    return s3_server.new_bucket("tessel-blobs")


@pytest.fixture
def s3_store(s3_server: S3Server, s3_bucket: str) -> S3BlobStore:
    # A fresh prefix per test in one bucket: isolation, and every test exercises the prefix.
    return S3BlobStore(s3_bucket, f"t/{uuid.uuid4().hex}", s3_server.client())


@pytest.fixture(params=["file", "memory", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "file":
        return FileBlobStore(tmp_path / "blobs")
    if request.param == "s3":
        s3: S3BlobStore = request.getfixturevalue("s3_store")
        return s3
    return MemoryBlobStore()
