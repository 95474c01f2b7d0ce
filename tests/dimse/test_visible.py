"""Instances C-STOREd to a real `tessel serve` are what an import job makes of the same files,
as boto3 (the AHI API) and dicomweb-client (DICOMweb) see them."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import requests
from dicomweb_client import DICOMwebClient
from pydicom import dcmread

from tessel.demo.synthetic import write_mr_series
from tests.ahi.conftest import ROLE_ARN, make_client, start_server, stop_server, wait_for_job
from tests.dimse.archive import WRITER_META
from tests.factory import make_series

KEY_ID = "TSLDIMSEVISIBLE00001"
SECRET = "tessel-dimse-visible-secret-0123456789"


@dataclass
class Served:
    url: str
    dicom_port: int
    ahi: Any
    over_dimse: str  # datastore the C-STOREs went into
    imported: str  # datastore the import job filled
    sops: list[str]

    def dicomweb(self, datastore_id: str) -> DICOMwebClient:
        session = requests.Session()
        session.auth = (KEY_ID, SECRET)
        return DICOMwebClient(f"{self.url}/datastore/{datastore_id}", session=session, timeout=120)


def wait_for_image_sets(ahi: Any, datastore_id: str, count: int, timeout: float = 120) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        found = ahi.search_image_sets(datastoreId=datastore_id)["imageSetsMetadataSummaries"]
        if len(found) >= count or time.monotonic() > deadline:
            return list(found)
        time.sleep(0.2)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    import subprocess

    from tests.ahi.conftest import server_env

    tmp = tmp_path_factory.mktemp("visible")
    data_dir = tmp / "data"
    folder = data_dir / "imports" / "in"
    files = make_series(folder / "ct", 3, rows=40, columns=32) + write_mr_series(folder / "mr", slices=2, size=32)
    proc, port = start_server(data_dir, server_env(TESSEL_ACCESS_KEY_ID=KEY_ID, TESSEL_SECRET_ACCESS_KEY=SECRET))
    try:
        # serve prints "DIMSE: AE title TESSEL on HOST:PORT"
        (line,) = [x for x in (tmp / "serve.out").read_text().splitlines() if x.startswith("DIMSE: ")]
        dicom_port = int(line.rsplit(":", 1)[1])
        url = f"http://127.0.0.1:{port}"
        ahi = make_client(url, KEY_ID, SECRET)
        over_dimse = ahi.create_datastore(datastoreName="over-dimse")["datastoreId"]
        imported = ahi.create_datastore(datastoreName="imported")["datastoreId"]
        (data_dir / "dicom-access.json").write_text(json.dumps({"callers": {"MODALITY": {"datastore": over_dimse}}}))
        sent = subprocess.run(["storescu", "-aet", "MODALITY", "-aec", "TESSEL", "127.0.0.1", str(dicom_port),
                               *map(str, files)], capture_output=True, text=True)
        assert sent.returncode == 0, sent.stderr
        out = data_dir / "imports" / "out"
        out.mkdir()
        job = ahi.start_dicom_import_job(datastoreId=imported, dataAccessRoleArn=ROLE_ARN,
                                         inputS3Uri=folder.as_uri() + "/", outputS3Uri=out.as_uri() + "/")
        assert wait_for_job(ahi, imported, job["jobId"])["jobStatus"] == "COMPLETED"
        assert len(wait_for_image_sets(ahi, over_dimse, 2)) == 2  # visible soon after storescu is done
        yield Served(url, dicom_port, ahi, over_dimse, imported, [str(dcmread(p).SOPInstanceUID) for p in files])
    finally:
        _out, err = stop_server(proc, data_dir)
        assert "Traceback" not in err, err


def _documents(served: Served, datastore_id: str) -> dict[str, dict[str, Any]]:
    """Series Instance UID -> the image set's metadata document, as the AHI API returns it."""
    docs = {}
    for summary in wait_for_image_sets(served.ahi, datastore_id, 2):
        blob = served.ahi.get_image_set_metadata(datastoreId=datastore_id, imageSetId=summary["imageSetId"])
        doc = json.loads(gzip.decompress(blob["imageSetMetadataBlob"].read()))
        (series_uid,) = doc["Study"]["Series"]
        docs[series_uid] = {"image_set_id": summary["imageSetId"], "doc": doc}
    return docs


def _comparable(doc: dict[str, Any]) -> dict[str, Any]:
    """A document without what names the datastore, the image set and the writer of the file."""
    doc = json.loads(json.dumps(doc))
    doc.pop("DatastoreID", None)
    doc.pop("ImageSetID", None)
    for series in doc["Study"]["Series"].values():
        for instance in series["Instances"].values():
            for keyword in WRITER_META:
                instance["DICOM"].pop(keyword, None)
            for frame in instance.get("ImageFrames") or []:
                frame.pop("ID")
    return doc


def test_ahi_metadata_and_frames_are_those_of_the_imported_files(served: Served) -> None:
    over_dimse, imported = _documents(served, served.over_dimse), _documents(served, served.imported)
    assert set(over_dimse) == set(imported) and len(over_dimse) == 2
    for series_uid, got in over_dimse.items():
        want = imported[series_uid]
        assert _comparable(got["doc"]) == _comparable(want["doc"])
        got_series, want_series = (d["doc"]["Study"]["Series"][series_uid]["Instances"] for d in (got, want))
        for sop, instance in got_series.items():
            for got_frame, want_frame in zip(instance["ImageFrames"], want_series[sop]["ImageFrames"], strict=True):
                frames = [served.ahi.get_image_frame(datastoreId=ds, imageSetId=d["image_set_id"],
                                                     imageFrameInformation={"imageFrameId": f["ID"]})
                          ["imageFrameBlob"].read()
                          for ds, d, f in ((served.over_dimse, got, got_frame), (served.imported, want, want_frame))]
                assert frames[0] == frames[1] and len(frames[0]) > 0


def _without_datastore(value: Any, datastore_id: str) -> Any:
    return json.loads(json.dumps(value).replace(datastore_id, "DATASTORE"))


def test_dicomweb_finds_and_serves_them_as_it_serves_the_imported_ones(served: Served) -> None:
    got_web, want_web = served.dicomweb(served.over_dimse), served.dicomweb(served.imported)
    found = got_web.search_for_instances(fields=["SOPInstanceUID"])
    assert sorted(i["00080018"]["Value"][0] for i in found) == sorted(served.sops)
    for instance in found:
        study, series, sop = (instance[tag]["Value"][0] for tag in ("0020000D", "0020000E", "00080018"))
        metadata = [_without_datastore(web.retrieve_instance_metadata(study, series, sop), ds)
                    for web, ds in ((got_web, served.over_dimse), (want_web, served.imported))]
        for meta in metadata:
            for tag in ("00020012", "00020013", "00020016"):  # File Meta: who wrote the file
                meta.pop(tag, None)
        assert metadata[0] == metadata[1]
        frames = [web.retrieve_instance_frames(study, series, sop, frame_numbers=[1]) for web in (got_web, want_web)]
        assert frames[0] == frames[1]
        parts = [web.retrieve_instance(study, series, sop) for web in (got_web, want_web)]
        assert np.array_equal(parts[0].pixel_array, parts[1].pixel_array)
