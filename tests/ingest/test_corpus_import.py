"""The shared corpus through the whole ingest path: every import file in, every reject out.

Runs when ../shared/corpus (or TESSEL_CORPUS) is present; otherwise the skip says so.
"""

from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path
from typing import Any, Iterator

import pytest

from tessel import codecs, retrieve
from tessel.blobs import keys
from tessel.config import Settings
from tessel.dicom import read_instance
from tessel.ingest import jobs
from tessel.lifecycle.datastores import create_datastore
from tessel.stores import Stores, open_stores
from tests.corpus import REJECT_WORDS, corpus_dir, corpus_files, needs_corpus

pytestmark = [needs_corpus, pytest.mark.corpus]


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stores, str, jobs.JobSummary, dict[str, Any]]]:
    root = corpus_dir()
    assert root is not None
    tmp = tmp_path_factory.mktemp("corpus")
    stores = open_stores(Settings(data_dir=tmp / "data", workers=2))
    ds = create_datastore(stores, "corpus")
    # the corpus is used in place: the job reads it where it lies
    job = jobs.start_import_job(stores, ds.id, root.as_uri(), (tmp / "out").as_uri())
    summary = jobs.run_import_job(stores, job.id)
    out = Path(summary.output_uri[len("file://"):])
    results: dict[str, Any] = {}
    for line in (out / "SUCCESS" / "success.ndjson").read_text().splitlines():
        entry = json.loads(line)
        results[str(Path(entry["inputFile"]).relative_to(root))] = entry
    for line in (out / "FAILURE" / "failure.ndjson").read_text().splitlines():
        entry = json.loads(line)
        results[str(Path(entry["inputFile"]).relative_to(root))] = entry
    yield stores, ds.id, summary, results
    stores.close()


def test_every_import_file_imports_and_every_reject_fails_with_its_reason(imported: Any) -> None:
    _stores, _ds, _summary, results = imported
    wrong = []
    for entry in corpus_files():
        result = results.get(entry["path"])
        if entry["expect"] == "import" and (result is None or "importResponse" not in result):
            wrong.append(f"{entry['path']}: expected import, got {result}")
        if entry["expect"] == "reject":
            if result is None or "exception" not in result:
                wrong.append(f"{entry['path']}: expected reject, got {result}")
                continue
            exception = result["exception"]
            message = exception["message"].lower()
            missing = [w for w in REJECT_WORDS[entry["path"]] if w not in message]
            if missing or exception["exceptionType"] != "ValidationException":
                wrong.append(f"{entry['path']}: the failure entry should say {missing} as a "
                             f"ValidationException, got {exception}")
    assert wrong == []


def _instance_node(stores: Stores, ds_id: str, image_set_id: str, sop_uid: str) -> dict[str, Any]:
    doc = retrieve.get_metadata(stores, ds_id, image_set_id)
    for _series_uid, series in doc["Study"]["Series"].items():
        if sop_uid in series["Instances"]:
            node: dict[str, Any] = series["Instances"][sop_uid]
            return node
    raise AssertionError(f"{sop_uid} not in image set {image_set_id}")


def _shadowed(results: dict[str, Any], sops: dict[str, str]) -> set[str]:
    """Files whose SOP Instance UID a later file of the same image set reuses (the corpus has
    several: the MR_small family in six syntaxes, two JPEG baseline files). Within one job the
    later file replaces the earlier one, as a re-import would."""
    winner: dict[tuple[str, str], str] = {}
    for path in sorted(sops):
        winner[(results[path]["importResponse"]["imageSetId"], sops[path])] = path
    return set(sops) - set(winner.values())


def _check_frames(stores: Stores, ds_id: str, image_set_id: str, sop: str, entry: dict[str, Any]) -> int:
    node = _instance_node(stores, ds_id, image_set_id, sop)
    assert len(node["ImageFrames"]) == len(entry["frame_crc32"]), entry["path"]
    for frame, expected in zip(node["ImageFrames"], entry["frame_crc32"]):
        assert frame["PixelDataChecksumFromBaseToFullResolution"][-1]["Checksum"] == expected, entry["path"]
        stored = retrieve.get_image_frame(stores, ds_id, image_set_id, frame["ID"])
        pixels = retrieve.decode_stored_frame(stored.data, node)
        assert zlib.crc32(pixels.tobytes()) == expected, entry["path"]
    return len(node["ImageFrames"])


def test_every_lossless_frame_decodes_from_the_store_to_the_index_crc(imported: Any) -> None:
    from tessel.ingest import store_instances

    stores, ds_id, _summary, results = imported
    root = corpus_dir()
    assert root is not None
    entries = {e["path"]: e for e in corpus_files("import")}
    sops = {path: read_instance(root / path).sop_instance_uid for path in entries}
    shadowed = _shadowed(results, sops)
    assert shadowed, "expected the corpus's reused SOP Instance UIDs"
    checked = 0
    for path, entry in entries.items():
        if not entry.get("lossless") or not entry.get("frame_crc32"):
            continue
        if path in shadowed:
            # checked on its own, in a datastore of its own, through the upload write path
            alone = create_datastore(stores, f"alone-{checked}")
            (result,) = store_instances(stores, alone.id, [(root / path).read_bytes()])
            assert result.placement is not None, result.failure
            checked += _check_frames(stores, alone.id, result.placement.image_set_id, sops[path], entry)
        else:
            checked += _check_frames(stores, ds_id, results[path]["importResponse"]["imageSetId"],
                                     sops[path], entry)
    assert checked > 1000


def test_lossy_frames_are_stored_as_they_came(imported: Any) -> None:
    import pydicom

    stores, ds_id, _summary, results = imported
    root = corpus_dir()
    assert root is not None
    lossy = [e for e in corpus_files("import") if e.get("lossless") is False and e.get("TransferSyntaxUID")
             and e["path"].startswith(("transfer_syntax/", "wsi/"))]
    assert lossy
    entries = {e["path"]: e for e in corpus_files("import")}
    sops = {path: read_instance(root / path).sop_instance_uid for path in entries}
    shadowed = _shadowed(results, sops)
    for entry in lossy:
        if entry["path"] in shadowed:
            continue
        image_set_id = results[entry["path"]]["importResponse"]["imageSetId"]
        source = pydicom.dcmread(root / entry["path"])
        node = _instance_node(stores, ds_id, image_set_id, source.SOPInstanceUID)
        assert node["StoredTransferSyntaxUID"] == entry["TransferSyntaxUID"]
        frames = list(pydicom.encaps.generate_frames(source.PixelData,
                                                     number_of_frames=int(source.get("NumberOfFrames", 1))))
        first = retrieve.get_image_frame(stores, ds_id, image_set_id, node["ImageFrames"][0]["ID"])
        assert first.data.rstrip(b"\x00") == frames[0].rstrip(b"\x00"), entry["path"]


def test_rejected_files_next_to_good_ones_change_nothing(tmp_path: Path) -> None:
    root = corpus_dir()
    assert root is not None
    stores = open_stores(Settings(data_dir=tmp_path / "data", workers=2))
    try:
        ds = create_datastore(stores, "mixed")
        good = tmp_path / "good"
        good.mkdir()
        for entry in corpus_files("import")[:8]:
            shutil.copy(root / entry["path"], good / Path(entry["path"]).name)
        jobs.run_import_job(stores, jobs.start_import_job(stores, ds.id, good.as_uri(),
                                                          (tmp_path / "out").as_uri()).id)
        before = sorted(stores.blobs.list(keys.datastore_prefix(ds.id)))
        with stores.catalog.read() as conn:
            sets_before = stores.catalog.find_image_sets(conn, ds.id)
        bad = tmp_path / "bad"
        bad.mkdir()
        for entry in corpus_files("reject"):
            shutil.copy(root / entry["path"], bad / Path(entry["path"]).name)
        summary = jobs.run_import_job(stores, jobs.start_import_job(stores, ds.id, bad.as_uri(),
                                                                    (tmp_path / "out").as_uri()).id)
        assert summary.imported == 0 and summary.failed == len(corpus_files("reject"))
        assert sorted(stores.blobs.list(keys.datastore_prefix(ds.id))) == before
        with stores.catalog.read() as conn:
            assert stores.catalog.find_image_sets(conn, ds.id) == sets_before
    finally:
        stores.close()


def test_frames_of_colour_images_are_labelled_rct() -> None:
    entry = next(e for e in corpus_files("import") if e["path"] == "pixel/rgb8_SC_rgb.dcm")
    plan = codecs.storage_plan(retrieve.pixel_info({"DICOM": {
        "Rows": entry["Rows"], "Columns": entry["Columns"], "SamplesPerPixel": 3, "BitsAllocated": 8,
        "BitsStored": 8, "HighBit": 7, "PixelRepresentation": 0, "PhotometricInterpretation": "RGB",
        "TransferSyntaxUID": entry["TransferSyntaxUID"]}}))  # type: ignore[arg-type]
    assert plan.stored_photometric == "YBR_RCT"
