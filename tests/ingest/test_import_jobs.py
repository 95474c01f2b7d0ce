"""Import jobs on the embedded default: grouping, idempotence, versions, failures, manifests."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import pydicom
from tessel import retrieve
from tessel.blobs import keys
from tessel.ingest import jobs
from tessel.lifecycle.datastores import create_datastore
from tessel.stores import Stores
from tests.factory import make_instance, make_series


def run(stores: Stores, ds_id: str, folder: Path, out: Path) -> jobs.JobSummary:
    job = jobs.start_import_job(stores, ds_id, folder.as_uri(), out.as_uri())
    return jobs.run_import_job(stores, job.id)


def frame_blobs(stores: Stores, ds_id: str) -> list[str]:
    return sorted(stores.blobs.list(keys.datastore_prefix(ds_id) + "frames/"))


def test_one_series_becomes_one_primary_image_set_with_every_frame(stores: Stores, tmp_path: Path) -> None:
    ds = create_datastore(stores, "t")
    files = make_series(tmp_path / "in", 5)
    summary = run(stores, ds.id, tmp_path / "in", tmp_path / "out")
    assert (summary.scanned, summary.imported, summary.failed) == (5, 5, 0)
    assert len(summary.image_sets) == 1
    image_set_id = summary.image_sets[0]["imageSetId"]
    image_set = retrieve.get_image_set(stores, ds.id, image_set_id)
    assert image_set.is_primary and image_set.latest_version == 1
    assert image_set.number_of_instances == 5
    doc = retrieve.get_metadata(stores, ds.id, image_set_id)
    assert doc["ImageSetID"] == image_set_id and doc["DatastoreID"] == ds.id
    assert doc["Patient"]["DICOM"]["PatientID"] == "P1"
    (series,) = doc["Study"]["Series"].values()
    assert len(series["Instances"]) == 5
    # every stored frame decodes to exactly the source pixels
    for path in files:
        source = pydicom.dcmread(path)
        node = series["Instances"][source.SOPInstanceUID]
        (frame,) = node["ImageFrames"]
        expected = zlib.crc32(source.pixel_array.tobytes())
        assert frame["PixelDataChecksumFromBaseToFullResolution"][-1]["Checksum"] == expected
        stored = retrieve.get_image_frame(stores, ds.id, image_set_id, frame["ID"])
        assert stored.transfer_syntax_uid == "1.2.840.10008.1.2.4.202"
        pixels = retrieve.decode_stored_frame(stored.data, node)
        assert zlib.crc32(pixels.tobytes()) == expected
        assert frame["MinPixelValue"] == int(source.pixel_array.min())
        assert frame["MaxPixelValue"] == int(source.pixel_array.max())


def test_reimporting_identical_files_changes_nothing(stores: Stores, tmp_path: Path) -> None:
    ds = create_datastore(stores, "t")
    make_series(tmp_path / "in", 3)
    first = run(stores, ds.id, tmp_path / "in", tmp_path / "out")
    blobs_before = frame_blobs(stores, ds.id)
    second = run(stores, ds.id, tmp_path / "in", tmp_path / "out")
    assert second.image_sets[0]["imageSetId"] == first.image_sets[0]["imageSetId"]
    image_set = retrieve.get_image_set(stores, ds.id, first.image_sets[0]["imageSetId"])
    assert image_set.latest_version == 1
    assert frame_blobs(stores, ds.id) == blobs_before
    assert len(blobs_before) == 3


def test_a_changed_instance_makes_a_new_version_and_keeps_the_old_one(stores: Stores, tmp_path: Path) -> None:
    ds = create_datastore(stores, "t")
    files = make_series(tmp_path / "in", 2)
    first = run(stores, ds.id, tmp_path / "in", tmp_path / "out")
    image_set_id = first.image_sets[0]["imageSetId"]
    changed = pydicom.dcmread(files[0])
    changed.SeriesDescription = "corrected"
    (tmp_path / "again").mkdir()
    changed.save_as(tmp_path / "again" / "x.dcm")
    run(stores, ds.id, tmp_path / "again", tmp_path / "out")
    image_set = retrieve.get_image_set(stores, ds.id, image_set_id)
    assert image_set.latest_version == 2
    v1 = retrieve.get_metadata(stores, ds.id, image_set_id, 1)
    v2 = retrieve.get_metadata(stores, ds.id, image_set_id, 2)
    sop = changed.SOPInstanceUID
    (series_uid,) = v2["Study"]["Series"]
    assert "SeriesDescription" not in v1["Study"]["Series"][series_uid]["DICOM"]
    assert v2["Study"]["Series"][series_uid]["DICOM"]["SeriesDescription"] == "corrected"
    assert sop in v2["Study"]["Series"][series_uid]["Instances"]
    assert len(v2["Study"]["Series"][series_uid]["Instances"]) == 2


def test_conflicting_patient_id_goes_to_a_non_primary_image_set(stores: Stores, tmp_path: Path) -> None:
    ds = create_datastore(stores, "t")
    study, series = "1.2.3.4", "1.2.3.4.5"
    make_instance(tmp_path / "in" / "a.dcm", study=study, series=series, instance_number=1, seed=1)
    make_instance(tmp_path / "in" / "b.dcm", study=study, series=series, instance_number=2, seed=2)
    make_instance(tmp_path / "in" / "c.dcm", study=study, series=series, instance_number=3, seed=3,
                  patient_id="OTHER")
    summary = run(stores, ds.id, tmp_path / "in", tmp_path / "out")
    by_primary = {s["isPrimary"]: s for s in summary.image_sets}
    assert by_primary[True]["numberOfMatchedSOPInstances"] == 2
    assert by_primary[False]["numberOfMatchedSOPInstances"] == 1
    # the same conflicting file again lands in the same non-primary set, unchanged
    summary2 = run(stores, ds.id, tmp_path / "in", tmp_path / "out")
    assert {s["imageSetId"] for s in summary2.image_sets} == {s["imageSetId"] for s in summary.image_sets}


def test_a_later_job_adds_to_the_existing_primary_image_set(stores: Stores, tmp_path: Path) -> None:
    ds = create_datastore(stores, "t")
    study, series = "1.2.3.9", "1.2.3.9.1"
    make_instance(tmp_path / "a" / "1.dcm", study=study, series=series, instance_number=1, seed=1)
    make_instance(tmp_path / "b" / "2.dcm", study=study, series=series, instance_number=2, seed=2)
    first = run(stores, ds.id, tmp_path / "a", tmp_path / "out")
    second = run(stores, ds.id, tmp_path / "b", tmp_path / "out")
    assert first.image_sets[0]["imageSetId"] == second.image_sets[0]["imageSetId"]
    assert second.image_sets[0]["imageSetVersion"] == 2
    image_set = retrieve.get_image_set(stores, ds.id, first.image_sets[0]["imageSetId"])
    assert image_set.number_of_instances == 2


def test_a_bad_file_fails_alone_with_a_reason_and_stores_nothing(stores: Stores, tmp_path: Path) -> None:
    ds = create_datastore(stores, "t")
    make_series(tmp_path / "in", 2)
    good = make_instance(tmp_path / "src.dcm", study="1.9", series="1.9.1", seed=9)
    data = good.read_bytes()
    (tmp_path / "in" / "truncated.dcm").write_bytes(data[: len(data) - 100])
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    summary = run(stores, ds.id, tmp_path / "in", tmp_path / "out")
    assert (summary.imported, summary.failed) == (2, 2)
    failures = [json.loads(line) for line in
                (Path(summary.output_uri[7:]) / "FAILURE" / "failure.ndjson").read_text().splitlines()]
    reasons = {Path(f["inputFile"]).name: f["exception"]["message"] for f in failures}
    assert set(reasons) == {"truncated.dcm", "notes.txt"}
    assert all(reasons.values())
    assert len(frame_blobs(stores, ds.id)) == 2  # the truncated file's frame was not left behind


def test_manifest_is_laid_out_as_healthimaging_does(stores: Stores, tmp_path: Path) -> None:
    ds = create_datastore(stores, "t")
    make_series(tmp_path / "in", 2)
    summary = run(stores, ds.id, tmp_path / "in", tmp_path / "out")
    folder = tmp_path / "out" / f"{ds.id}-DicomImport-{summary.job.id}"
    assert summary.output_uri == folder.as_uri() + "/"
    manifest = json.loads((folder / "job-output-manifest.json").read_text())["jobSummary"]
    assert manifest["numberOfScannedFiles"] == 2
    assert manifest["numberOfImportedFiles"] == 2
    assert manifest["numberOfGeneratedImageSets"] == 1
    assert manifest["imageSetsSummary"][0]["numberOfMatchedSOPInstances"] == 2
    assert manifest["failureOutputS3Uri"].endswith("/FAILURE/")
    success = [json.loads(line) for line in (folder / "SUCCESS" / "success.ndjson").read_text().splitlines()]
    assert len(success) == 2 and all(s["importResponse"]["isPrimary"] is True for s in success)
    assert (folder / "WARNING" / "warning.ndjson").exists()


def test_jpeg2000_datastore_stores_frames_as_jpeg2000_lossless(stores: Stores, tmp_path: Path) -> None:
    from tessel.catalog.models import LosslessStorageFormat

    ds = create_datastore(stores, "j2k", lossless_storage_format=LosslessStorageFormat.JPEG_2000_LOSSLESS)
    make_series(tmp_path / "in", 1)
    summary = run(stores, ds.id, tmp_path / "in", tmp_path / "out")
    doc = retrieve.get_metadata(stores, ds.id, summary.image_sets[0]["imageSetId"])
    (series,) = doc["Study"]["Series"].values()
    (node,) = series["Instances"].values()
    assert node["StoredTransferSyntaxUID"] == "1.2.840.10008.1.2.4.90"
    frame = retrieve.get_image_frame(stores, ds.id, summary.image_sets[0]["imageSetId"],
                                     node["ImageFrames"][0]["ID"])
    assert frame.transfer_syntax_uid == "1.2.840.10008.1.2.4.90"
    assert zlib.crc32(retrieve.decode_stored_frame(frame.data, node).tobytes()) == \
        node["ImageFrames"][0]["PixelDataChecksumFromBaseToFullResolution"][-1]["Checksum"]


def test_multiframe_instance_gets_one_frame_id_per_frame(stores: Stores, tmp_path: Path) -> None:
    ds = create_datastore(stores, "t")
    make_instance(tmp_path / "in" / "mf.dcm", study="1.5", series="1.5.1", frames=4)
    summary = run(stores, ds.id, tmp_path / "in", tmp_path / "out")
    doc = retrieve.get_metadata(stores, ds.id, summary.image_sets[0]["imageSetId"])
    (series,) = doc["Study"]["Series"].values()
    (node,) = series["Instances"].values()
    ids = [f["ID"] for f in node["ImageFrames"]]
    assert len(ids) == 4 and len(set(ids)) == 4


def test_names_in_other_character_sets_come_out_as_utf8(stores: Stores, tmp_path: Path) -> None:
    ds = create_datastore(stores, "t")
    names = {"ISO 2022 IR 87": "Yamada^Tarou=山田^太郎=やまだ^たろう",
             "ISO 2022 IR 149": "Hong^Gildong=洪^吉洞=홍^길동", "GB18030": "Wang^XiaoDong=王^小東"}
    for i, (charset, name) in enumerate(names.items()):
        make_instance(tmp_path / "in" / f"{i}.dcm", study=f"1.2.{i}", series=f"1.2.{i}.1", patient_name=name,
                      extra={"SpecificCharacterSet": ["", charset] if "2022" in charset else charset})
    summary = run(stores, ds.id, tmp_path / "in", tmp_path / "out")
    found = set()
    for summary_set in summary.image_sets:
        doc = retrieve.get_metadata(stores, ds.id, summary_set["imageSetId"])
        found.add(doc["Patient"]["DICOM"]["PatientName"])
        image_set = retrieve.get_image_set(stores, ds.id, summary_set["imageSetId"])
        assert image_set.patient_name == doc["Patient"]["DICOM"]["PatientName"]  # what search shows
    assert found == set(names.values())


def test_reimport_writes_no_new_version_document_or_row(stores: Stores, tmp_path: Path) -> None:
    ds = create_datastore(stores, "t")
    make_series(tmp_path / "in", 3)
    first = run(stores, ds.id, tmp_path / "in", tmp_path / "out")
    everything = sorted(stores.blobs.list(keys.datastore_prefix(ds.id)))
    before = retrieve.get_image_set(stores, ds.id, first.image_sets[0]["imageSetId"])
    second = run(stores, ds.id, tmp_path / "in", tmp_path / "out")
    assert (second.imported, second.image_sets[0]["imageSetVersion"]) == (3, 1)
    assert sorted(stores.blobs.list(keys.datastore_prefix(ds.id))) == everything
    assert retrieve.get_image_set(stores, ds.id, first.image_sets[0]["imageSetId"]) == before  # not even updated_at


def test_a_metadata_only_change_keeps_the_frames_and_their_ids(stores: Stores, tmp_path: Path) -> None:
    ds = create_datastore(stores, "t")
    files = make_series(tmp_path / "in", 2, frames=3)
    first = run(stores, ds.id, tmp_path / "in", tmp_path / "out")
    image_set_id = first.image_sets[0]["imageSetId"]
    frames_before = frame_blobs(stores, ds.id)
    changed = pydicom.dcmread(files[1])
    changed.StudyDescription = "re-read"
    (tmp_path / "again").mkdir()
    changed.save_as(tmp_path / "again" / "x.dcm")
    run(stores, ds.id, tmp_path / "again", tmp_path / "out")

    def frame_ids(version: int) -> list[str]:
        doc = retrieve.get_metadata(stores, ds.id, image_set_id, version)
        (series,) = doc["Study"]["Series"].values()
        return [f["ID"] for node in series["Instances"].values() for f in node["ImageFrames"]]

    assert retrieve.get_image_set(stores, ds.id, image_set_id).latest_version == 2
    assert frame_ids(2) == frame_ids(1) and len(set(frame_ids(1))) == 6
    assert frame_blobs(stores, ds.id) == frames_before  # no second copy of any frame


def test_staging_runs_on_two_worker_processes_at_once(stores: Stores, tmp_path: Path) -> None:
    import psutil

    ds = create_datastore(stores, "t")
    # Enough work that each worker's share is well above the CPU threshold below on a fast
    # machine: 24 files of 256x256 took 0.06 CPU s in all on one host, and one worker could end
    # the job with less than 0.05 s. 48 of 512x512 (6 tasks of 8 files) keep each busy ~0.25 s.
    make_series(tmp_path / "in", 48, rows=512, columns=512)
    job = jobs.start_import_job(stores, ds.id, (tmp_path / "in").as_uri(), (tmp_path / "out").as_uri())
    worker_cpu: dict[int, float] = {}
    overlapping = []

    def sample(_: jobs.JobProgress) -> None:
        # Pool workers are forked from this process's fork server (other children, such as
        # servers other tests started, have workers of their own: not ours).
        busy = {}
        for server in psutil.Process().children():
            try:
                if not any("multiprocessing.forkserver" in part for part in server.cmdline()):
                    continue
                for worker in server.children():
                    times = worker.cpu_times()
                    busy[worker.pid] = times.user + times.system
            except psutil.Error:
                continue
        grew = [pid for pid, cpu in busy.items() if cpu > worker_cpu.get(pid, 0.0)]
        overlapping.append(len(grew))
        worker_cpu.update(busy)

    summary = jobs.run_import_job(stores, job.id, progress=sample)
    assert summary.imported == 48
    assert len([cpu for cpu in worker_cpu.values() if cpu > 0.05]) == 2  # settings.workers
    assert max(overlapping) == 2  # both did work between two progress reports


def test_frames_of_one_instance_are_staged_the_same_on_several_threads(tmp_path: Path) -> None:
    from tessel.blobs.memory import MemoryBlobStore
    from tessel.ingest.staging import StagingOptions, stage_file

    path = make_instance(tmp_path / "mf.dcm", study="1.7", series="1.7.1", frames=9, rows=64, columns=64)
    one = stage_file(path, MemoryBlobStore(), StagingOptions("d" * 32, frame_threads=1))
    several = stage_file(path, MemoryBlobStore(), StagingOptions("d" * 32, frame_threads=3))
    assert several == one and len(one["frames"]) == 9


def test_colour_frames_are_stored_with_the_reversible_colour_transform(stores: Stores, tmp_path: Path) -> None:
    import numpy as np

    ds = create_datastore(stores, "t")
    source = pydicom.dcmread(make_instance(tmp_path / "src.dcm", study="1.8", series="1.8.1"))
    rgb = np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    source.SamplesPerPixel, source.PhotometricInterpretation, source.PlanarConfiguration = 3, "RGB", 0
    source.BitsAllocated, source.BitsStored, source.HighBit = 8, 8, 7
    source.PixelData = rgb.tobytes()
    (tmp_path / "in").mkdir()
    source.save_as(tmp_path / "in" / "rgb.dcm")
    summary = run(stores, ds.id, tmp_path / "in", tmp_path / "out")
    doc = retrieve.get_metadata(stores, ds.id, summary.image_sets[0]["imageSetId"])
    (series,) = doc["Study"]["Series"].values()
    (node,) = series["Instances"].values()
    assert node["StoredTransferSyntaxUID"] == "1.2.840.10008.1.2.4.202"
    stored = retrieve.get_image_frame(stores, ds.id, summary.image_sets[0]["imageSetId"],
                                      node["ImageFrames"][0]["ID"]).data
    cod = stored.index(b"\xff\x52")  # COD: Lcod(2) Scod(1) progression(1) layers(2) then MCT(1)
    assert stored[cod + 2 + 2 + 1 + 1 + 2] == 1  # multiple component transform: on (RCT, 5/3 reversible)
    assert retrieve.decode_stored_frame(stored, node).tobytes() == rgb.tobytes()
