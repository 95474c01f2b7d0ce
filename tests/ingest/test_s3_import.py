"""Import jobs whose input and output are s3:// URIs, and frames stored in S3, on a moto server."""

from __future__ import annotations

import json
import tempfile
import zlib
from pathlib import Path
from typing import Any, Iterator

import pydicom
import pytest

from tessel import retrieve
from tessel.blobs import keys
from tessel.blobs.encrypted import EncryptedBlobStore
from tessel.blobs.memory import MemoryBlobStore
from tessel.blobs.s3 import S3BlobStore
from tessel.catalog.models import JobStatus
from tessel.config import Settings
from tessel.errors import InvalidInput
from tessel.ingest import jobs, s3 as ingest_s3
from tessel.ingest.locations import FileLocation, check_under_roots, parse_location
from tessel.ingest.s3 import S3Location, stage_object
from tessel.ingest.staging import StagingOptions
from tessel.lifecycle.datastores import create_datastore
from tessel.stores import Stores, open_stores
from tests.factory import make_series
from tests.s3server import S3Server


def upload(client: Any, bucket: str, prefix: str, files: list[Path], root: Path) -> list[str]:
    """Put each file at prefix + its path below root; return the keys."""
    keys_ = []
    for path in files:
        key = prefix + path.relative_to(root).as_posix()
        client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
        keys_.append(key)
    return keys_


def read_object(client: Any, bucket: str, key: str) -> bytes:
    return bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())


def ndjson(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.decode().splitlines() if line]


@pytest.fixture
def s3_settings(s3_server: S3Server, tmp_path: Path) -> Settings:
    return s3_server.settings(data_dir=tmp_path / "data", workers=2)


@pytest.fixture
def s3_stores(s3_settings: Settings) -> Iterator[Stores]:
    stores = open_stores(s3_settings)
    yield stores
    stores.close()


# -- S3Location -----------------------------------------------------------------------------------

def test_s3_location_lists_every_object_below_the_prefix_in_key_order(s3_server: S3Server) -> None:
    client = s3_server.client()
    bucket = s3_server.new_bucket()
    for key in ("in/b/2.dcm", "in/a.dcm", "in/b/1.dcm", "in/", "in2/x.dcm", "other/y.dcm"):
        client.put_object(Bucket=bucket, Key=key, Body=b"" if key.endswith("/") else key.encode())
    location = parse_location(f"s3://{bucket}/in", s3_server.settings())
    assert isinstance(location, S3Location) and location.exists()
    assert list(location.files()) == [(f"s3://{bucket}/in/a.dcm", 8), (f"s3://{bucket}/in/b/1.dcm", 10),
                                      (f"s3://{bucket}/in/b/2.dcm", 10)]
    assert list(location.files()) == list(parse_location(f"s3://{bucket}/in/", s3_server.settings()).files())
    assert location.read_bytes(f"s3://{bucket}/in/b/1.dcm") == b"in/b/1.dcm"


def test_s3_location_naming_one_object_lists_just_that_object(s3_server: S3Server) -> None:
    client = s3_server.client()
    bucket = s3_server.new_bucket()
    client.put_object(Bucket=bucket, Key="in/one.dcm", Body=b"12345")
    client.put_object(Bucket=bucket, Key="in/one.dcm.bak", Body=b"x")
    location = parse_location(f"s3://{bucket}/in/one.dcm", s3_server.settings())
    assert list(location.files()) == [(f"s3://{bucket}/in/one.dcm", 5)]


def test_s3_location_writes_below_its_prefix_and_children_nest(s3_server: S3Server) -> None:
    client = s3_server.client()
    bucket = s3_server.new_bucket()
    out = parse_location(f"s3://{bucket}/results", s3_server.settings())
    child = out.child("job-1")
    assert child.uri == f"s3://{bucket}/results/job-1"
    child.write_bytes("SUCCESS/success.ndjson", b"{}\n")
    assert read_object(client, bucket, "results/job-1/SUCCESS/success.ndjson") == b"{}\n"
    assert list(out.files()) == [(f"s3://{bucket}/results/job-1/SUCCESS/success.ndjson", 3)]


def test_an_empty_prefix_or_a_missing_bucket_does_not_exist(s3_server: S3Server) -> None:
    bucket = s3_server.new_bucket()
    assert not parse_location(f"s3://{bucket}/nothing/", s3_server.settings()).exists()
    assert not parse_location("s3://tessel-no-such-bucket/in/", s3_server.settings()).exists()


@pytest.mark.parametrize("uri", ["s3://UPPER/in/", "s3://ab/in/", "s3://bad_name/in/", "s3://-x-/in"])
def test_malformed_s3_import_uris_are_invalid_input(uri: str) -> None:
    with pytest.raises(InvalidInput, match="not a valid S3 URI"):
        parse_location(uri)


def test_import_roots_apply_to_file_locations_only(s3_server: S3Server, tmp_path: Path) -> None:
    roots = (tmp_path / "allowed",)
    check_under_roots(parse_location("s3://some-bucket/in/", s3_server.settings()), roots, "input")
    with pytest.raises(InvalidInput, match="outside the configured import roots"):
        check_under_roots(FileLocation(tmp_path / "elsewhere"), roots, "input")


def test_a_large_object_is_staged_through_a_temp_file_that_is_then_removed(
        s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client = s3_server.client()
    bucket = s3_server.new_bucket()
    (path,) = make_series(tmp_path / "in", 1)
    upload(client, bucket, "in/", [path], tmp_path / "in")
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(ingest_s3, "IN_MEMORY_LIMIT", 1024)  # the instance is bigger: spool it
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    seen: list[str] = []
    real_stage_file = ingest_s3.stage_file

    def spy(p: str, *args: Any) -> dict[str, Any]:
        seen.append(p)
        assert Path(p).read_bytes() == path.read_bytes()
        return real_stage_file(p, *args)

    monkeypatch.setattr(ingest_s3, "stage_file", spy)
    blobs = MemoryBlobStore()
    staged = stage_object(f"s3://{bucket}/in/0000.dcm", client, blobs, StagingOptions(datastore_id="d" * 32))
    assert staged and len(seen) == 1 and Path(seen[0]).parent == spool
    assert list(spool.iterdir()) == []
    assert list(blobs.list("ds/")), "the frame was stored"


# -- import jobs ----------------------------------------------------------------------------------

def test_import_job_reads_s3_input_and_writes_the_manifests_to_s3_output(
        s3_server: S3Server, s3_stores: Stores, tmp_path: Path) -> None:
    client = s3_server.client()
    bucket = s3_server.new_bucket("tessel-import")
    files = make_series(tmp_path / "in" / "series-a", 3)
    (tmp_path / "in" / "notes").mkdir()
    (tmp_path / "in" / "notes" / "readme.txt").write_text("not DICOM")
    uploaded = upload(client, bucket, "studies/2024/", [*files, tmp_path / "in" / "notes" / "readme.txt"],
                      tmp_path / "in")
    ds = create_datastore(s3_stores, "s3-import")
    job = jobs.start_import_job(s3_stores, ds.id, f"s3://{bucket}/studies/2024/", f"s3://{bucket}/results/")
    summary = jobs.run_import_job(s3_stores, job.id)

    assert (summary.scanned, summary.imported, summary.failed) == (4, 3, 1)
    assert len(summary.image_sets) == 1
    assert s3_stores.catalog.job_by_id(job.id).status == JobStatus.COMPLETED  # type: ignore[union-attr]
    out = f"results/{ds.id}-DicomImport-{job.id}/"
    assert summary.output_uri == f"s3://{bucket}/{out}"
    manifest = json.loads(read_object(client, bucket, out + "job-output-manifest.json"))["jobSummary"]
    assert manifest["jobId"] == job.id and manifest["datastoreId"] == ds.id
    assert manifest["inputS3Uri"] == f"s3://{bucket}/studies/2024/"
    assert manifest["outputS3Uri"] == f"s3://{bucket}/{out}"
    assert (manifest["numberOfScannedFiles"], manifest["numberOfImportedFiles"],
            manifest["numberOfFilesWithCustomerError"], manifest["numberOfFilesWithServerError"]) == (4, 3, 1, 0)
    assert manifest["imageSetsSummary"][0]["numberOfMatchedSOPInstances"] == 3

    success = ndjson(read_object(client, bucket, out + "SUCCESS/success.ndjson"))
    assert sorted(e["inputFile"] for e in success) == sorted(uploaded[:3])
    assert all(e["inputFile"].startswith("studies/2024/series-a/") for e in success)
    assert {e["importResponse"]["imageSetId"] for e in success} == {summary.image_sets[0]["imageSetId"]}
    (failure,) = ndjson(read_object(client, bucket, out + "FAILURE/failure.ndjson"))
    assert failure["inputFile"] == "studies/2024/notes/readme.txt"
    assert failure["exception"]["exceptionType"] == "ValidationException"
    assert read_object(client, bucket, out + "WARNING/warning.ndjson") == b""


def test_import_job_with_a_missing_s3_input_fails_with_a_clear_message(
        s3_server: S3Server, s3_stores: Stores) -> None:
    bucket = s3_server.new_bucket("tessel-import")
    ds = create_datastore(s3_stores, "s3-missing")
    job = jobs.start_import_job(s3_stores, ds.id, f"s3://{bucket}/nothing-here/", f"s3://{bucket}/results/")
    with pytest.raises(InvalidInput, match="does not exist"):
        jobs.run_import_job(s3_stores, job.id)
    assert s3_stores.catalog.job_by_id(job.id).status == JobStatus.FAILED  # type: ignore[union-attr]


def test_whole_stack_on_s3_frames_are_stored_in_the_bucket_and_read_back(
        s3_server: S3Server, tmp_path: Path) -> None:
    client = s3_server.client()
    bucket = s3_server.new_bucket("tessel-stack")
    settings = s3_server.settings(data_dir=tmp_path / "data", workers=2, blob_url=f"s3://{bucket}/tessel")
    files = make_series(tmp_path / "in", 2)
    upload(client, bucket, "incoming/", files, tmp_path / "in")
    stores = open_stores(settings)
    try:
        assert isinstance(stores.blobs, EncryptedBlobStore) and isinstance(stores.blobs.inner, S3BlobStore)
        ds = create_datastore(stores, "on-s3")
        job = jobs.start_import_job(stores, ds.id, f"s3://{bucket}/incoming/", f"s3://{bucket}/results/")
        summary = jobs.run_import_job(stores, job.id)
        assert (summary.imported, summary.failed) == (2, 0)
        image_set_id = summary.image_sets[0]["imageSetId"]

        frame_keys = sorted(stores.blobs.list(keys.datastore_prefix(ds.id) + "frames/"))
        assert len(frame_keys) == 2
        bucket_keys = {o["Key"] for p in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
                       for o in p.get("Contents", ())}
        assert {f"tessel/{k}" for k in frame_keys} <= bucket_keys

        doc = retrieve.get_metadata(stores, ds.id, image_set_id)
        (series,) = doc["Study"]["Series"].values()
        for path in files:
            source = pydicom.dcmread(path)
            node = series["Instances"][source.SOPInstanceUID]
            (frame,) = node["ImageFrames"]
            stored = retrieve.get_image_frame(stores, ds.id, image_set_id, frame["ID"])
            pixels = retrieve.decode_stored_frame(stored.data, node)
            assert zlib.crc32(pixels.tobytes()) == zlib.crc32(source.pixel_array.tobytes())
            # In the bucket the frame is ciphertext bound to its key (encryption at rest).
            raw = read_object(client, bucket, "tessel/" + keys.frame(ds.id, frame["ID"]))
            assert raw.startswith(b"TSE1") and stored.data not in raw
    finally:
        stores.close()
