"""The DICOMweb requests OHIF 3.x and its microscopy viewer make, sent as they send them (issue 8 item 2).

Requests are copied from OHIF's DicomWebDataSource (qido.js mapParams, seriesInStudy,
retrieveSeriesMetadata), cornerstone's WADO-RS image loader (frames with transfer-syntax=*)
and dicom-microscopy-viewer's tile loader (its eight-entry Accept list, built by the
dicomweb-client JS `_buildMultipartAcceptHeaderFieldValue`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import imagecodecs
import numpy as np
import pydicom
import pytest
from dicomweb_client import DICOMwebClient

from tessel.demo import synthetic
from tests.dicomweb.conftest import Server
from tests.factory import make_series

HTJ2K_RPCL = "1.2.840.10008.1.2.4.202"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
FRAMES_AS_STORED = "multipart/related; type=application/octet-stream; transfer-syntax=*"
# dicom-microscopy-viewer's tile request for 8-bit images, in its order.
MICROSCOPY_ACCEPT = ", ".join(f'multipart/related; type="{media}"; transfer-syntax={syntax}' for media, syntax in (
    ("image/jpeg", JPEG_BASELINE), ("image/jls", "1.2.840.10008.1.2.4.80"),
    ("image/jls", "1.2.840.10008.1.2.4.81"), ("image/jp2", "1.2.840.10008.1.2.4.90"),
    ("image/jp2", "1.2.840.10008.1.2.4.91"), ("image/jpx", "1.2.840.10008.1.2.4.92"),
    ("image/jpx", "1.2.840.10008.1.2.4.93"), ("application/octet-stream", "*")))
JSON = {"Accept": "application/dicom+json"}


class Data:
    def __init__(self, folder: Path) -> None:
        self.ct = make_series(folder / "ct", 4, patient_name="Doe^John", patient_id="OHIF-1",
                              extra={"StudyDescription": "CHEST CT"})
        self.mr = make_series(folder / "mr", 2, patient_name="Roe^Jane", patient_id="OHIF-2",
                              extra={"Modality": "MR", "StudyDescription": "BRAIN"})
        self.slide = synthetic.write_wsi_pyramid(folder / "slide", base_width=1024, base_height=512, tile=256,
                                                 levels=2)
        self.us = synthetic.write_us_clip(folder / "us", frames=2, rows=64, columns=64)

    def all(self) -> list[Path]:
        return self.ct + self.mr + self.slide + self.us


@pytest.fixture(scope="module")
def data(client: DICOMwebClient, tmp_path_factory: pytest.TempPathFactory) -> Data:
    d = Data(tmp_path_factory.mktemp("ohif"))
    client.store_instances([pydicom.dcmread(p) for p in d.all()])
    return d


@pytest.fixture(scope="module")
def http(server: Server, datastore: str) -> Any:
    with httpx.Client(base_url=f"{server.url}/datastore/{datastore}", auth=server.http().auth, timeout=60) as c:
        yield c


def uids(path: Path) -> tuple[str, str, str]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID


def first(result: dict[str, Any], tag: str) -> Any:
    return result[tag]["Value"][0]


def part_headers(response: httpx.Response) -> list[str]:
    boundary = response.headers["content-type"].split("boundary=")[1].split(";")[0].strip('"').encode()
    chunks = response.content.split(b"--" + boundary)[1:-1]
    return [c.split(b"\r\n\r\n", 1)[0].decode("latin-1").strip() for c in chunks]


def part_bodies(response: httpx.Response) -> list[bytes]:
    boundary = response.headers["content-type"].split("boundary=")[1].split(";")[0].strip('"').encode()
    return [c.split(b"\r\n\r\n", 1)[1][:-2] for c in response.content.split(b"--" + boundary)[1:-1]]


def test_study_list_as_ohif_asks_for_it(http: httpx.Client, data: Data) -> None:
    base = {"limit": "101", "offset": "0", "fuzzymatching": "false", "includefield": "00081030,00080060"}
    everything = http.get("/studies", params=base, headers=JSON)
    assert everything.status_code == 200 and everything.headers["content-type"] == "application/dicom+json"
    studies = {first(s, "0020000D"): s for s in everything.json()}
    ct = studies[uids(data.ct[0])[0]]
    assert first(ct, "00081030") == "CHEST CT"
    assert first(ct, "00201208") == 4 and first(ct, "00201206") == 1  # instances, series
    assert ct["00080061"]["Value"] == ["CT"]
    for name in ("*doe*", "*DOE*", "*Doe^J*", "doe*"):  # case-insensitive wildcard person names
        found = http.get("/studies", params={**base, "PatientName": name}, headers=JSON).json()
        assert [first(s, "0020000D") for s in found] == [uids(data.ct[0])[0]], name
    by_tag = http.get("/studies", params={**base, "00100020": "OHIF-2"}, headers=JSON).json()
    assert [first(s, "0020000D") for s in by_tag] == [uids(data.mr[0])[0]]
    fuzzy = http.get("/studies", params={**base, "fuzzymatching": "true", "PatientName": "*jane*"}, headers=JSON)
    assert [first(s, "0020000D") for s in fuzzy.json()] == [uids(data.mr[0])[0]]
    by_modality = http.get("/studies", params={**base, "ModalitiesInStudy": "MR"}, headers=JSON).json()
    assert [first(s, "0020000D") for s in by_modality] == [uids(data.mr[0])[0]]


def test_opening_a_study_by_its_uid(http: httpx.Client, data: Data) -> None:
    study = uids(data.ct[0])[0]
    found = http.get("/studies", params={"StudyInstanceUID": study}, headers=JSON).json()
    assert [first(s, "0020000D") for s in found] == [study]
    series = http.get(f"/studies/{study}/series", params={"includefield": "0008103E,00080021"}, headers=JSON).json()
    assert [first(s, "0020000E") for s in series] == [uids(data.ct[0])[1]]
    assert "0008103E" in series[0] and "00080021" in series[0]  # asked for: present even when empty


def test_series_metadata_per_series(http: httpx.Client, data: Data) -> None:
    study, series, _ = uids(data.ct[0])
    metadata = http.get(f"/studies/{study}/series/{series}/metadata", headers=JSON)
    assert metadata.status_code == 200 and metadata.headers["content-type"] == "application/dicom+json"
    instances = metadata.json()
    assert sorted(first(i, "00080018") for i in instances) == sorted(uids(p)[2] for p in data.ct)
    for instance in instances:  # what cornerstone needs to build an image from frames
        for tag in ("00280010", "00280011", "00280100", "00280103", "00280004", "00200013", "00020010"):
            assert tag in instance, tag


def test_frames_as_stored_name_their_syntax_in_the_part_header(http: httpx.Client, data: Data) -> None:
    study, series, sop = uids(data.ct[1])
    response = http.get(f"/studies/{study}/series/{series}/instances/{sop}/frames/1",
                        headers={"Accept": FRAMES_AS_STORED})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("multipart/related")
    (header,) = part_headers(response)
    assert header == f"Content-Type: application/octet-stream; transfer-syntax={HTJ2K_RPCL}"
    (body,) = part_bodies(response)
    assert np.array_equal(imagecodecs.htj2k_decode(body), pydicom.dcmread(data.ct[1]).pixel_array)


def test_microscopy_tiles_stored_as_jpeg_come_as_jpeg(http: httpx.Client, data: Data) -> None:
    study, series, sop = uids(data.slide[0])
    source = pydicom.dcmread(data.slide[0])
    assert source.file_meta.TransferSyntaxUID == JPEG_BASELINE
    response = http.get(f"/studies/{study}/series/{series}/instances/{sop}/frames/3",
                        headers={"Accept": MICROSCOPY_ACCEPT})
    assert response.status_code == 200
    (header,) = part_headers(response)
    assert header == f"Content-Type: image/jpeg; transfer-syntax={JPEG_BASELINE}"
    (body,) = part_bodies(response)
    stored = pydicom.encaps.get_frame(source.PixelData, 2, number_of_frames=int(source.NumberOfFrames))
    assert body == stored  # the stored JPEG, untouched


def test_microscopy_accept_list_gets_stored_htj2k_without_transcoding(http: httpx.Client, data: Data) -> None:
    study, series, sop = uids(data.us[0])
    response = http.get(f"/studies/{study}/series/{series}/instances/{sop}/frames/2",
                        headers={"Accept": MICROSCOPY_ACCEPT})
    assert response.status_code == 200
    (header,) = part_headers(response)
    assert header == f"Content-Type: application/octet-stream; transfer-syntax={HTJ2K_RPCL}"
    (body,) = part_bodies(response)
    assert np.array_equal(imagecodecs.htj2k_decode(body), pydicom.dcmread(data.us[0]).pixel_array[1])


def test_jp2_is_the_old_name_of_jpeg_2000(http: httpx.Client, data: Data) -> None:
    study, series, sop = uids(data.ct[0])
    response = http.get(f"/studies/{study}/series/{series}/instances/{sop}/frames/1",
                        headers={"Accept": 'multipart/related; type="image/jp2"'})
    assert response.status_code == 200
    (header,) = part_headers(response)
    assert header == "Content-Type: image/jp2; transfer-syntax=1.2.840.10008.1.2.4.90"
    (body,) = part_bodies(response)
    assert np.array_equal(imagecodecs.jpeg2k_decode(body), pydicom.dcmread(data.ct[0]).pixel_array)


def test_thumbnails_for_study_series_and_instance(http: httpx.Client, data: Data) -> None:
    study, series, sop = uids(data.ct[0])
    for path in (f"/studies/{study}/thumbnail", f"/studies/{study}/series/{series}/thumbnail",
                 f"/studies/{study}/series/{series}/instances/{sop}/thumbnail"):
        response = http.get(path, headers={"Accept": "image/jpeg"})
        assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg", path
        assert imagecodecs.jpeg8_decode(response.content).ndim == 2
    slide = http.get(f"/studies/{uids(data.slide[0])[0]}/series/{uids(data.slide[0])[1]}/thumbnail",
                     headers={"Accept": "image/png"})
    image = imagecodecs.png_decode(slide.content)
    assert image.ndim == 3 and max(image.shape[:2]) <= 128


def test_bulk_data_uris_point_back_at_this_server(http: httpx.Client, server: Server, data: Data) -> None:
    study, series, sop = uids(data.slide[1])
    (metadata,) = http.get(f"/studies/{study}/series/{series}/instances/{sop}/metadata", headers=JSON).json()
    assert first(metadata, "00020010") == JPEG_BASELINE  # lossy frames keep their syntax
    profile = first(metadata, "00480105")["00282000"]  # Optical Path > ICC Profile
    if "BulkDataURI" in profile:
        assert profile["BulkDataURI"].startswith(server.url)
        assert http.get(profile["BulkDataURI"]).status_code == 200
    else:
        assert len(pydicom.dataset.Dataset.from_json({"00282000": profile}).ICCProfile) > 100
