"""S3BlobStore against a real S3-compatible server (moto): what the shared contract cannot show.

The contract suite in test_blob_stores.py runs over S3 too (`store` fixture); these tests
check the S3 specifics: ranged GETs, multipart uploads, pagination, prefixes, errors, client set-up.
"""

from __future__ import annotations

import concurrent.futures as cf
from typing import Any, Iterator

import boto3
import pytest
from botocore.config import Config

from tessel.blobs import open_blob_store
from tessel.blobs.s3 import MULTIPART_THRESHOLD, S3BlobStore, s3_client, split_s3_uri
from tessel.config import Secret, Settings
from tessel.errors import InvalidInput, NotFound, Unavailable
from tests.s3server import ACCESS_KEY_ID, SECRET_ACCESS_KEY, S3Server


class Requests:
    """Records the S3 operations (and their headers) a client sends."""

    def __init__(self, client: Any) -> None:
        self.sent: list[tuple[str, dict[str, str]]] = []
        client.meta.events.register("before-send.s3", self._record)

    def _record(self, request: Any, **kwargs: Any) -> None:
        operation = kwargs["event_name"].split(".")[-1]
        self.sent.append((operation, {k: v.decode() if isinstance(v, bytes) else str(v)
                                      for k, v in request.headers.items()}))

    def operations(self) -> list[str]:
        return [op for op, _ in self.sent]


@pytest.fixture
def recorded(s3_store: S3BlobStore) -> Iterator[tuple[S3BlobStore, Requests]]:
    yield s3_store, Requests(s3_store.client)


def test_get_range_sends_one_ranged_get_and_returns_only_that_slice(
        recorded: tuple[S3BlobStore, Requests]) -> None:
    store, requests = recorded
    data = bytes(i % 251 for i in range(1_000_000))
    store.put("frames/f", data)
    requests.sent.clear()
    assert store.get_range("frames/f", 123_456, 1000) == data[123_456:124_456]
    assert store.get_range("frames/f", 0, 1) == data[:1]
    assert store.get_range("frames/f", 999_990, 10) == data[-10:]
    ranges = [headers.get("Range") for op, headers in requests.sent if op == "GetObject"]
    assert ranges == ["bytes=123456-124455", "bytes=0-0", "bytes=999990-999999"]


def test_small_blob_is_written_with_one_put_object(recorded: tuple[S3BlobStore, Requests]) -> None:
    store, requests = recorded
    store.put("small", b"x" * 1024)
    assert requests.operations() == ["PutObject"]


def test_blob_above_16_mb_is_uploaded_in_parts_and_reads_back_whole(
        recorded: tuple[S3BlobStore, Requests]) -> None:
    store, requests = recorded
    data = bytes(range(256)) * ((MULTIPART_THRESHOLD + 5_000_000) // 256)
    assert len(data) > MULTIPART_THRESHOLD
    store.put("big", data)
    operations = requests.operations()
    assert operations[0] == "CreateMultipartUpload" and operations[-1] == "CompleteMultipartUpload"
    assert operations.count("UploadPart") == 2
    assert "PutObject" not in operations
    head = store.client.head_object(Bucket=store.bucket, Key=f"{store.prefix}/big")
    assert head["ContentLength"] == len(data)
    assert head["ETag"].strip('"').endswith("-2")  # the ETag of a 2-part multipart upload
    assert store.get("big") == data
    assert store.get_range("big", MULTIPART_THRESHOLD - 2, 4) == data[MULTIPART_THRESHOLD - 2:MULTIPART_THRESHOLD + 2]


@pytest.mark.slow
def test_listing_more_than_1000_keys_follows_the_continuation_pages(
        recorded: tuple[S3BlobStore, Requests]) -> None:
    store, requests = recorded
    names = [f"ds/1/frames/{i:05d}" for i in range(1205)]
    with cf.ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: store.put(k, b""), names))
    store.put("ds/2/other", b"")
    requests.sent.clear()
    assert sorted(store.list("ds/1/")) == names
    assert requests.operations() == ["ListObjectsV2", "ListObjectsV2"]


def test_missing_blob_is_not_found_on_every_read(s3_store: S3BlobStore) -> None:
    with pytest.raises(NotFound, match="blob absent"):
        s3_store.get("absent")
    with pytest.raises(NotFound):
        s3_store.get_range("absent", 0, 10)
    with pytest.raises(NotFound):
        s3_store.get_range("absent", 0, 0)
    assert not s3_store.exists("absent")
    s3_store.delete("absent")  # absent is not an error


def test_blobs_live_under_the_prefix_and_stores_on_other_prefixes_do_not_see_them(
        s3_server: S3Server, s3_bucket: str) -> None:
    client = s3_server.client()
    a = S3BlobStore(s3_bucket, "iso/a/", client)
    b = S3BlobStore(s3_bucket, "iso/ab", client)
    a.put("ds/1/k", b"a")
    b.put("ds/1/k", b"b")
    assert client.get_object(Bucket=s3_bucket, Key="iso/a/ds/1/k")["Body"].read() == b"a"
    assert (a.get("ds/1/k"), b.get("ds/1/k")) == (b"a", b"b")
    assert list(a.list("")) == ["ds/1/k"] and list(b.list("")) == ["ds/1/k"]
    a.delete("ds/1/k")
    assert b.exists("ds/1/k")


def test_a_store_at_the_bucket_root_uses_the_keys_as_they_are(s3_server: S3Server) -> None:
    bucket = s3_server.new_bucket("tessel-root")
    store = S3BlobStore(bucket, "", s3_server.client())
    store.put("ds/1/a", b"1")
    assert [o["Key"] for o in store.client.list_objects_v2(Bucket=bucket)["Contents"]] == ["ds/1/a"]
    assert list(store.list("ds/")) == ["ds/1/a"]


def test_s3_store_refuses_keys_that_are_not_relative(s3_store: S3BlobStore) -> None:
    for key in ("../outside", "/etc/passwd", "a/../../b", ""):
        with pytest.raises(InvalidInput):
            s3_store.put(key, b"x")


def test_a_missing_bucket_is_unavailable_not_not_found(s3_server: S3Server) -> None:
    store = S3BlobStore("tessel-no-such-bucket", "p", s3_server.client())
    with pytest.raises(Unavailable, match="bucket does not exist"):
        store.get("k")
    with pytest.raises(Unavailable):
        store.put("k", b"x")
    with pytest.raises(Unavailable, match="bucket does not exist"):
        store.put("big", bytes(MULTIPART_THRESHOLD + 1))  # the multipart path fails the same way
    with pytest.raises(Unavailable):
        list(store.list(""))


def test_a_multipart_upload_that_fails_midway_is_unavailable(
        s3_store: S3BlobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from boto3.exceptions import S3UploadFailedError

    def fail(*args: Any, **kwargs: Any) -> None:
        raise S3UploadFailedError("Failed to upload: An error occurred (InternalError) when calling UploadPart")

    monkeypatch.setattr(s3_store.client, "upload_fileobj", fail)
    with pytest.raises(Unavailable, match="upload failed"):
        s3_store.put("big", bytes(MULTIPART_THRESHOLD + 1))
    assert not s3_store.exists("big")


def test_an_unreachable_endpoint_is_unavailable() -> None:
    client = boto3.session.Session().client(
        "s3", endpoint_url="http://127.0.0.1:9", aws_access_key_id="k", aws_secret_access_key="s",
        region_name="us-east-1", config=Config(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=2))
    with pytest.raises(Unavailable, match="unreachable"):
        S3BlobStore("bucket", "p", client).get("k")


def test_s3_client_takes_endpoint_and_credentials_from_settings_with_retries_and_a_pool(
        s3_server: S3Server) -> None:
    client = s3_client(s3_server.settings())
    assert client.meta.endpoint_url == s3_server.endpoint_url
    # botocore reads max_attempts=8 as 8 retries: 9 attempts in all
    assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 9}
    assert client.meta.config.max_pool_connections == 64
    assert client.meta.config.s3 == {"addressing_style": "path"}
    credentials = client._request_signer._credentials
    assert (credentials.access_key, credentials.secret_key) == (ACCESS_KEY_ID, SECRET_ACCESS_KEY)


def test_s3_client_without_settings_uses_the_aws_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-the-environment")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    client = s3_client(Settings())
    assert client.meta.endpoint_url.startswith("https://s3.")
    assert client._request_signer._credentials.access_key == "from-the-environment"
    assert client.meta.config.s3 is None


def test_open_blob_store_opens_s3_urls_with_the_settings(s3_server: S3Server) -> None:
    bucket = s3_server.new_bucket("tessel-open")
    store = open_blob_store(f"s3://{bucket}/some/prefix", s3_server.settings())
    assert isinstance(store, S3BlobStore)
    assert (store.bucket, store.prefix) == (bucket, "some/prefix")
    store.put("k", b"v")
    assert open_blob_store(f"s3://{bucket}/some/prefix/", s3_server.settings()).get("k") == b"v"


def test_secrets_in_settings_do_not_appear_in_the_store_repr(s3_server: S3Server) -> None:
    settings = s3_server.settings().with_(s3_secret_access_key=Secret("very-secret"))
    store = open_blob_store("s3://tessel-repr/p", settings)
    assert "very-secret" not in repr(store) and "very-secret" not in repr(settings)


@pytest.mark.parametrize("url", ["s3://AB/x", "s3://ab/x", "s3://-bucket/x", "s3://bucket_1/x", "s3:/bucket/x"])
def test_malformed_s3_urls_are_invalid_input(url: str) -> None:
    with pytest.raises(InvalidInput, match="not a valid S3 URI"):
        split_s3_uri(url)


def test_s3_urls_split_into_bucket_and_key() -> None:
    assert split_s3_uri("s3://my.bucket-1/a/b/") == ("my.bucket-1", "a/b/")
    assert split_s3_uri("s3://bucket") == ("bucket", "")


def test_throttling_and_server_errors_are_retried_with_backoff_until_the_read_succeeds(
        s3_server: S3Server, s3_bucket: str) -> None:
    """A real client (tessel's retry settings) whose first answers are 503 SlowDown and 500."""
    import time

    from botocore.awsrequest import AWSResponse

    store = S3BlobStore(s3_bucket, "retries", s3_client(s3_server.settings()))
    store.put("k", b"payload")
    attempts: list[float] = []
    failures = [(503, b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"),
                (500, b"<Error><Code>InternalError</Code><Message>We encountered an internal error.</Message>"
                      b"</Error>")]

    def flaky(request: Any, **kwargs: Any) -> AWSResponse | None:
        attempts.append(time.monotonic())
        if len(attempts) > len(failures):
            return None  # send it for real
        status, body = failures[len(attempts) - 1]
        return AWSResponse(request.url, status, {"Content-Type": "application/xml"}, _Raw(body))

    store.client.meta.events.register("before-send.s3.GetObject", flaky)
    assert store.get("k") == b"payload"
    assert len(attempts) == 3
    assert attempts[2] > attempts[0]  # they were spaced out (standard mode: jittered exponential backoff)


class _Raw:
    """The raw stream an AWSResponse reads its body from."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_kwargs: Any) -> Iterator[bytes]:
        yield self.body

    def read(self, *_args: Any) -> bytes:
        body, self.body = self.body, b""
        return body
