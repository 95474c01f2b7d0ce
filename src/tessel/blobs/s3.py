"""Blob store on S3 or any S3-compatible server (MinIO, Ceph, moto), through boto3.

S3 writes are atomic per object (PutObject, and CompleteMultipartUpload for large
blobs), so readers see a whole blob or none of it, as the port requires. Keys live
under `prefix/` in one bucket; the store never lists or touches anything outside it.
"""

from __future__ import annotations

import io
import re
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

from tessel.errors import InvalidInput, NotFound, Unavailable

if TYPE_CHECKING:
    from tessel.config import Settings

# boto3 ships no type information; the client is a dynamically generated class.
S3Client = Any

MULTIPART_THRESHOLD = 16 * 1024 * 1024
MULTIPART_CHUNK = 16 * 1024 * 1024

# The S3 URI pattern AWS HealthImaging's API model applies to inputS3Uri / outputS3Uri.
_S3_URI = re.compile(r"s3://[a-z0-9][\.\-a-z0-9]{1,61}[a-z0-9](/.*)?")
_MISSING_KEY = {"404", "NoSuchKey", "NotFound"}


def split_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/key` -> ("bucket", "some/key"); InvalidInput if it is not an S3 URI."""
    if not _S3_URI.fullmatch(uri):
        raise InvalidInput(f"{uri!r} is not a valid S3 URI: expected s3://bucket/prefix with a bucket name of "
                           "3-63 lowercase letters, digits, dots and hyphens")
    bucket, _, key = uri[len("s3://"):].partition("/")
    return bucket, key


def s3_client(settings: Settings | None = None) -> S3Client:
    """The one place an S3 client is built: endpoint and credentials from Settings, else AWS defaults."""
    import boto3
    from botocore.config import Config

    endpoint = settings.s3_endpoint_url if settings else None
    key_id = settings.s3_access_key_id if settings else None
    secret = settings.s3_secret_access_key if settings else None
    config = Config(
        retries={"mode": "standard", "max_attempts": 8},
        max_pool_connections=64,  # import workers and frame reads run many requests at once
        connect_timeout=10, read_timeout=60,
        # S3-compatible servers (MinIO, moto, Ceph) are reached by path, not bucket.host names.
        s3={"addressing_style": "path"} if endpoint else None,
    )
    credentials: dict[str, str] = {}
    if key_id and secret:
        credentials = {"aws_access_key_id": key_id, "aws_secret_access_key": secret.reveal()}
    # A session per client: boto3's default session is not safe to share across threads.
    return boto3.session.Session().client("s3", endpoint_url=endpoint or None, config=config, **credentials)


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    error = response.get("Error", {})
    return str(error.get("Code") or response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))


@contextmanager
def s3_errors(what: str) -> Iterator[None]:
    """Translate botocore failures into tessel errors; `what` names the object in the message."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        code = error_code(exc)
        if code == "NoSuchBucket":
            raise Unavailable(f"{what}: the bucket does not exist") from exc
        if code in _MISSING_KEY:
            raise NotFound(f"{what} does not exist") from None
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise Unavailable(f"{what}: access denied by the S3 endpoint ({code}); check the S3 credentials") \
                from exc
        raise Unavailable(f"{what}: S3 request failed ({code}): {exc}") from exc
    except BotoCoreError as exc:  # connection refused, timeouts after retries, no credentials, ...
        raise Unavailable(f"{what}: S3 is unreachable: {exc}") from exc
    except Boto3Error as exc:  # s3transfer's S3UploadFailedError wraps a failed multipart upload
        raise Unavailable(f"{what}: S3 upload failed: {exc}") from exc


class S3BlobStore:
    def __init__(self, bucket: str, prefix: str, client: S3Client) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client
        self._base = f"{self.prefix}/" if self.prefix else ""

    def __repr__(self) -> str:
        return f"S3BlobStore(s3://{self.bucket}/{self.prefix})"

    def _key(self, key: str) -> str:
        # Same rule as the file store, so a key valid for one backend is valid for all.
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise InvalidInput(f"blob key {key!r} is not a relative key")
        return self._base + key

    def _what(self, key: str) -> str:
        return f"blob {key}"

    def put(self, key: str, data: bytes) -> None:
        object_key = self._key(key)
        with s3_errors(self._what(key)):
            if len(data) > MULTIPART_THRESHOLD:
                from boto3.s3.transfer import TransferConfig

                transfer = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD,
                                          multipart_chunksize=MULTIPART_CHUNK, max_concurrency=4)
                # The object appears only when CompleteMultipartUpload succeeds; a failed upload
                # is aborted by s3transfer and leaves nothing visible.
                self.client.upload_fileobj(io.BytesIO(data), self.bucket, object_key, Config=transfer)
            else:
                self.client.put_object(Bucket=self.bucket, Key=object_key, Body=data)

    def get(self, key: str) -> bytes:
        with s3_errors(self._what(key)):
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
            try:
                return bytes(body.read())
            finally:
                body.close()

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise InvalidInput(f"blob {key}: invalid range offset={offset} length={length}")
        object_key = self._key(key)
        if length == 0:  # "bytes=a-(a-1)" is not a valid range; keep NotFound semantics
            if not self.exists(key):
                raise NotFound(f"blob {key} does not exist")
            return b""
        from botocore.exceptions import ClientError

        with s3_errors(self._what(key)):
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=object_key,
                                                  Range=f"bytes={offset}-{offset + length - 1}")
            except ClientError as exc:
                if error_code(exc) in ("InvalidRange", "416"):
                    return b""  # a range at or past the end reads nothing, as a file read does
                raise
            body = response["Body"]
            try:
                return bytes(body.read())
            finally:
                body.close()

    def exists(self, key: str) -> bool:
        try:
            with s3_errors(self._what(key)):
                self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except NotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        with s3_errors(self._what(key)):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def sync(self) -> None:
        """Nothing to flush: a PUT is durable once S3 has answered it."""

    def list(self, prefix: str) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        start = len(self._base)
        with s3_errors(f"blobs under {prefix!r}"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._base + prefix):
                for item in page.get("Contents", ()):
                    yield str(item["Key"])[start:]


def open_s3_blob_store(url: str, settings: Settings | None = None) -> S3BlobStore:
    bucket, prefix = split_s3_uri(url)
    return S3BlobStore(bucket, prefix, s3_client(settings))
