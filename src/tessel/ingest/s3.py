"""Import sources and outputs in S3 (or an S3-compatible server): s3://bucket/prefix/.

Same surface as `FileLocation`: `files()` lists every object under the prefix as
("s3://bucket/key", size), workers fetch each object with `stage_object`, and the
job's manifests are written back with `write_bytes`.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, Iterator

from tessel.blobs import BlobStore
from tessel.blobs.s3 import S3Client, error_code, s3_errors, split_s3_uri
from tessel.errors import NotFound
from tessel.ingest.staging import StagingOptions, stage_bytes, stage_file

# Objects up to this size are staged from memory; larger ones go through a temp file so a
# worker never holds more than this (plus the decoded frames) in memory at once.
IN_MEMORY_LIMIT = 256 * 1024 * 1024
DOWNLOAD_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class S3Location:
    bucket: str
    prefix: str
    client: S3Client = field(repr=False, compare=False)

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def _folder(self) -> str:
        # "s3://b/in" names the folder in/ (not in2/...), as a file:// directory would.
        return self.prefix if not self.prefix or self.prefix.endswith("/") else self.prefix + "/"

    def exists(self) -> bool:
        """True if the bucket is reachable and the prefix names an object or holds any."""
        from botocore.exceptions import ClientError

        with s3_errors(self.uri):
            try:
                page = self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1)
            except ClientError as exc:
                if error_code(exc) == "NoSuchBucket":
                    return False
                raise
        return bool(page.get("KeyCount"))

    def files(self) -> Iterator[tuple[str, int]]:
        """("s3://bucket/key", size) of every object below the prefix, recursively, in key order."""
        if self.prefix and not self.prefix.endswith("/"):
            size = self._object_size(self.prefix)
            if size is not None:  # the URI names one object, as FileLocation accepts one file
                yield f"s3://{self.bucket}/{self.prefix}", size
                return
        paginator = self.client.get_paginator("list_objects_v2")
        with s3_errors(self.uri):
            # ListObjectsV2 returns keys in UTF-8 binary order: stable across runs and resumes.
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._folder()):
                for item in page.get("Contents", ()):
                    key = str(item["Key"])
                    if key.endswith("/") and not item["Size"]:
                        continue  # a console-made "folder" marker, not a file
                    yield f"s3://{self.bucket}/{key}", int(item["Size"])

    def _object_size(self, key: str) -> int | None:
        try:
            with s3_errors(f"s3://{self.bucket}/{key}"):
                return int(self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])
        except NotFound:
            return None

    def child(self, name: str) -> "S3Location":
        return S3Location(self.bucket, self._folder() + name.strip("/"), self.client)

    def write_bytes(self, relpath: str, data: bytes) -> None:
        key = self._folder() + relpath.lstrip("/")
        with s3_errors(f"s3://{self.bucket}/{key}"):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data)

    def read_bytes(self, uri: str) -> bytes:
        """The bytes of one object, named by its s3:// URI (as `files()` yields it)."""
        bucket, key = split_s3_uri(uri)
        with s3_errors(uri):
            body = self.client.get_object(Bucket=bucket, Key=key)["Body"]
            try:
                return bytes(body.read())
            finally:
                body.close()


def stage_object(uri: str, client: S3Client, blobs: BlobStore, options: StagingOptions) -> dict[str, Any]:
    """Fetch one source object and stage it: from memory when small, through a temp file when large."""
    bucket, key = split_s3_uri(uri)
    data: bytes | None = None
    with s3_errors(uri):
        response = client.get_object(Bucket=bucket, Key=key)
        body = response["Body"]
        try:
            if int(response["ContentLength"]) <= IN_MEMORY_LIMIT:
                data = bytes(body.read())
            else:
                spooled = _download(body)
        finally:
            body.close()
    if data is not None:
        return stage_bytes(data, blobs, options)
    try:
        return stage_file(spooled, blobs, options)
    finally:
        os.unlink(spooled)


def _download(body: Any) -> str:
    fd, path = tempfile.mkstemp(prefix="tessel-s3-", suffix=".dcm")
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in body.iter_chunks(DOWNLOAD_CHUNK):
                f.write(chunk)
    except BaseException:
        os.unlink(path)
        raise
    return path
