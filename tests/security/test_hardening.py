"""Input hardening on the real server: request size, JSON depth, import roots, DIMSE association limits."""

from __future__ import annotations

import gzip
import json
import shutil
import time
import uuid
from pathlib import Path

from botocore.exceptions import ClientError
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from tests.factory import make_instance
from tests.security.conftest import World, _store


def test_an_oversized_request_is_refused_before_it_is_read(world: World) -> None:
    with world.http() as http:
        r = http.post("/datastore", content=b"{" + b" " * (33 * 1024 * 1024) + b"}",
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert "at most" in r.json()["message"]


def test_deeply_nested_json_is_a_validation_error_not_a_crash(world: World) -> None:
    hi = world.ahi()
    deep = "[" * 5000 + "]" * 5000
    try:
        hi.update_image_set_metadata(
            datastoreId=world.a, imageSetId=world.image_sets["a1_untagged"], latestVersionId="1",
            updateImageSetMetadataUpdates={"DICOMUpdates": {"updatableAttributes": deep.encode()}})
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "ValidationException"
        assert "nests deeper than 64 levels" in exc.response["Error"]["Message"]
    else:
        raise AssertionError("a 5000-level document was accepted")


def test_imports_outside_the_import_roots_are_refused_and_symlinks_do_not_escape(world: World, tmp_path: Path) -> None:
    hi = world.ahi()
    role = "arn:aws:iam::000000000000:role/tessel-import"
    outside = Path("/etc").as_uri() + "/"
    inside = world.data_dir / "imports" / f"in-{uuid.uuid4().hex[:8]}"
    inside.mkdir(parents=True)
    out = world.data_dir / "imports" / f"out-{uuid.uuid4().hex[:8]}"
    for uri, field in ((outside, "inputS3Uri"),):  # (dot-dot paths: tests/ahi/test_import_jobs.py)
        try:
            hi.start_dicom_import_job(datastoreId=world.a, dataAccessRoleArn=role, inputS3Uri=uri,
                                      outputS3Uri=out.as_uri() + "/")
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "ValidationException", uri
            assert "import roots" in exc.response["Error"]["Message"] and field in exc.response["Error"]["Message"]
        else:
            raise AssertionError(f"{uri} was accepted")
    # A symbolic link inside an import root that points outside it is not followed.
    secret_dir = tmp_path / "elsewhere"
    secret_dir.mkdir()
    shutil.copy(world.files["b"], secret_dir / "outside.dcm")
    (inside / "link.dcm").symlink_to(secret_dir / "outside.dcm")
    shutil.copy(world.files["a2_tagged"], inside / "inside.dcm")
    job = hi.start_dicom_import_job(datastoreId=world.a, dataAccessRoleArn=role, inputS3Uri=inside.as_uri() + "/",
                                    outputS3Uri=out.as_uri() + "/")
    deadline = time.monotonic() + 120
    while True:
        props = hi.get_dicom_import_job(datastoreId=world.a, jobId=job["jobId"])["jobProperties"]
        if props["jobStatus"] in ("COMPLETED", "FAILED") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert props["jobStatus"] == "COMPLETED"
    manifest = json.loads((Path(props["outputS3Uri"][len("file://"):]) / "job-output-manifest.json").read_text())
    assert manifest["jobSummary"]["numberOfScannedFiles"] == 1  # the link was never read


def test_one_address_cannot_hold_every_dimse_association(world: World) -> None:
    from tessel.dimse.server import MAX_ASSOCIATIONS_PER_HOST

    ae = AE(ae_title="ADMIN")
    ae.add_requested_context(Verification)
    held = []
    try:
        for _ in range(MAX_ASSOCIATIONS_PER_HOST):
            assoc = ae.associate("127.0.0.1", world.dicom_port, ae_title="TESSEL")
            assert assoc.is_established
            held.append(assoc)
        extra = ae.associate("127.0.0.1", world.dicom_port, ae_title="TESSEL")
        assert extra.is_rejected
        assert (extra.acceptor.primitive.result, extra.acceptor.primitive.diagnostic) == (0x02, 0x02)
    finally:
        for assoc in held:
            assoc.release()
    again = ae.associate("127.0.0.1", world.dicom_port, ae_title="TESSEL")
    assert again.is_established
    again.release()



def test_an_altered_frame_on_disk_is_reported_not_served(world: World, tmp_path: Path) -> None:
    hi = world.ahi()
    ds = hi.create_datastore(datastoreName="tamper")["datastoreId"]
    path = make_instance(tmp_path / "t.dcm", study="1.2.826.0.1.9100", series="1.2.826.0.1.9100.1", rows=32,
                         columns=32)
    _store(world, ds, [path])
    (summary,) = hi.search_image_sets(datastoreId=ds)["imageSetsMetadataSummaries"]
    image_set_id = summary["imageSetId"]
    doc = json.loads(gzip.decompress(hi.get_image_set_metadata(datastoreId=ds, imageSetId=image_set_id)
                                     ["imageSetMetadataBlob"].read()))
    (series,) = doc["Study"]["Series"].values()
    (node,) = series["Instances"].values()
    frame_id = node["ImageFrames"][0]["ID"]
    blob = next((world.data_dir / "blobs" / "ds" / ds / "frames").rglob(frame_id))
    data = bytearray(blob.read_bytes())
    data[-20] ^= 0x40
    blob.write_bytes(bytes(data))
    try:
        hi.get_image_frame(datastoreId=ds, imageSetId=image_set_id, imageFrameInformation={"imageFrameId": frame_id})
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "InternalServerException"
        assert f"{frame_id} failed its integrity check" in exc.response["Error"]["Message"]
    else:
        raise AssertionError("an altered frame was served")
    sop = node["DICOM"]["SOPInstanceUID"]
    with world.http() as http:
        r = http.get(f"/datastore/{ds}/studies/1.2.826.0.1.9100/series/1.2.826.0.1.9100.1/instances/{sop}/frames/1",
                     auth=(world.keys["admin"].key_id, world.keys["admin"].secret))
    assert r.status_code == 500 and "failed its integrity check" in r.json()["message"]
    time.sleep(0.8)
    rows = [json.loads(line) for line in world.tessel("audit", "--json", "--image-set", image_set_id,
                                                      "--outcome", "error").stdout.splitlines()]
    assert rows and {r["action"] for r in rows} == {"medical-imaging:GetImageFrame"}  # (botocore may retry a 500)
    rows = [json.loads(line) for line in world.tessel("audit", "--json", "--study", "1.2.826.0.1.9100",
                                                      "--outcome", "error").stdout.splitlines()]
    assert [r["action"] for r in rows] == ["medical-imaging:GetDICOMInstanceFrames"]
