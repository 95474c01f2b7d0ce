"""WADO-RS through dicomweb-client and httpx on a real server: instances, metadata, frames, bulk data,
rendered images, compared attribute by attribute and pixel by pixel with the source files."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
import pydicom
import pytest
from dicomweb_client import DICOMwebClient
from pydicom.dataset import Dataset
from requests.exceptions import HTTPError

from tessel.demo import synthetic
from tests.dicomweb.conftest import Server
from tests.factory import make_instance, make_series

ELE = "1.2.840.10008.1.2.1"
HTJ2K = "1.2.840.10008.1.2.4.201"
HTJ2K_RPCL = "1.2.840.10008.1.2.4.202"
BULK_TAG = 0x00091010


class Data:
    def __init__(self, folder: Path) -> None:
        self.ct = make_series(folder / "ct", 2, frames=3, extra={"WindowCenter": "2000", "WindowWidth": "4000",
                                                                  "RescaleIntercept": "-1024", "RescaleSlope": "1"})
        self.us = synthetic.write_us_clip(folder / "us", frames=4, rows=64, columns=80)
        bulk = make_instance(folder / "bulk" / "bulk.dcm", study="1.2.826.0.1.3680043.8.498.1",
                             series="1.2.826.0.1.3680043.8.498.2", seed=7)
        ds = pydicom.dcmread(bulk)
        ds.private_block(0x0009, "TESSEL TEST", create=True).add_new(0x10, "OB", bytes(range(256)) * 5000)
        ds.save_as(bulk, enforce_file_format=True)
        self.bulk = [bulk]

    def all(self) -> list[Path]:
        return self.ct + self.us + self.bulk


@pytest.fixture(scope="module")
def data(client: DICOMwebClient, tmp_path_factory: pytest.TempPathFactory) -> Data:
    d = Data(tmp_path_factory.mktemp("wado"))
    client.store_instances([pydicom.dcmread(p) for p in d.all()])
    return d


def uids(path: Path) -> tuple[str, str, str]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID


def differences(source: Dataset, served: Dataset, allowed: set[str] = frozenset()) -> list[Any]:
    """Attributes that differ (Pixel Data and `allowed` keywords aside), both ways."""
    out = []
    for elem in source:
        if elem.tag == 0x7FE00010 or elem.keyword in allowed:
            continue
        if elem.tag not in served:
            out.append(("missing", elem.keyword or elem.tag))
        elif served[elem.tag].value != elem.value:
            out.append((elem.keyword or elem.tag, elem.value, served[elem.tag].value))
    out += [("extra", e.keyword) for e in served if e.tag not in source and e.keyword not in allowed]
    return out


def parts(response: Any) -> list[bytes]:
    """The bodies of a multipart/related response."""
    boundary = response.headers["content-type"].split("boundary=")[1].split(";")[0].strip('"').encode()
    chunks = response.content.split(b"--" + boundary)[1:-1]
    return [c.split(b"\r\n\r\n", 1)[1][:-2] for c in chunks]


def retrieve(server: Server, datastore: str, path: Path, syntax: str) -> Dataset:
    study, series, sop = uids(path)
    with server.http() as http:
        response = http.get(f"/datastore/{datastore}/studies/{study}/series/{series}/instances/{sop}",
                            headers={"Accept": f'multipart/related; type="application/dicom"; '
                                               f'transfer-syntax={syntax}'})
    assert response.status_code == 200, response.text
    (body,) = parts(response)
    return pydicom.dcmread(io.BytesIO(body))


@pytest.mark.parametrize("syntax", [None, ELE, "*", HTJ2K, "1.2.840.10008.1.2"])
def test_instances_match_their_sources(server: Server, datastore: str, client: DICOMwebClient, data: Data,
                                       syntax: str | None) -> None:
    media = ("application/dicom",) if syntax is None else (("application/dicom", syntax),)
    for path in data.ct + data.us:
        source = pydicom.dcmread(path)
        if syntax in (HTJ2K, "1.2.840.10008.1.2"):  # syntaxes dicomweb-client does not offer
            served = retrieve(server, datastore, path, syntax)
        else:
            served = client.retrieve_instance(*uids(path), media_types=media)
        stored = HTJ2K_RPCL if syntax == "*" else syntax or ELE
        assert served.file_meta.TransferSyntaxUID == stored
        assert served.file_meta.MediaStorageSOPInstanceUID == source.SOPInstanceUID
        colour = source.SamplesPerPixel == 3
        allowed = {"PhotometricInterpretation"} if colour and stored in (HTJ2K, HTJ2K_RPCL) else set()
        assert differences(source, served, allowed) == []
        if allowed:
            assert served.PhotometricInterpretation == "YBR_RCT"  # the stored frames carry the RCT
        assert np.array_equal(served.pixel_array, source.pixel_array)


def test_series_and_study_retrieval(client: DICOMwebClient, data: Data) -> None:
    study, series, _ = uids(data.ct[0])
    instances = client.retrieve_series(study, series)
    assert sorted(i.SOPInstanceUID for i in instances) == sorted(uids(p)[2] for p in data.ct)
    assert all(i.file_meta.TransferSyntaxUID == ELE for i in instances)
    stored = client.retrieve_study(study, media_types=(("application/dicom", "*"),))
    assert {i.file_meta.TransferSyntaxUID for i in stored} == {HTJ2K_RPCL}
    for instance in stored:
        source = pydicom.dcmread(next(p for p in data.ct if uids(p)[2] == instance.SOPInstanceUID))
        assert np.array_equal(instance.pixel_array, source.pixel_array)


def test_bulk_data_is_a_uri_in_metadata_and_served_whole(client: DICOMwebClient, data: Data) -> None:
    study, series, sop = uids(data.bulk[0])
    (metadata,) = client.retrieve_instance_metadata(study, series, sop) and [
        client.retrieve_instance_metadata(study, series, sop)]
    element = metadata[f"{BULK_TAG:08X}"]
    assert element["vr"] == "OB" and "InlineBinary" not in element
    uri = element["BulkDataURI"]
    assert uri.startswith(f"{client.base_url}/studies/{study}/series/{series}/instances/{sop}/bulkdata/")
    assert client.retrieve_bulkdata(uri)[0] == bytes(range(256)) * 5000
    served = client.retrieve_instance(study, series, sop)
    assert served[BULK_TAG].value == bytes(range(256)) * 5000


def test_metadata_at_every_level(client: DICOMwebClient, data: Data) -> None:
    study, series, sop = uids(data.ct[0])
    source = pydicom.dcmread(data.ct[0])
    instance = client.retrieve_instance_metadata(study, series, sop)
    ds = Dataset.from_json(instance)
    assert ds.PatientName == source.PatientName and ds.Rows == source.Rows
    assert ds.WindowCenter == source.WindowCenter
    assert instance["00020010"]["Value"] == [HTJ2K_RPCL]  # as AHI: the stored transfer syntax
    assert "7FE00010" not in instance
    assert len(client.retrieve_series_metadata(study, series)) == 2
    assert len(client.retrieve_study_metadata(study)) == 2


def native_frame(source: Dataset, index: int) -> np.ndarray:
    arr = source.pixel_array
    return arr[index] if int(source.get("NumberOfFrames") or 1) > 1 else arr


def test_frames_default_to_decoded_native_bytes(client: DICOMwebClient, data: Data) -> None:
    source = pydicom.dcmread(data.ct[1])
    frames = client.retrieve_instance_frames(*uids(data.ct[1]), [3, 1, 2])
    for frame, index in zip(frames, (2, 0, 1)):
        assert frame == native_frame(source, index).astype("<u2").tobytes()
    again = client.retrieve_instance_frames(*uids(data.ct[1]), [2, 3])  # from the decoded-frame cache
    assert again == [frames[2], frames[0]]


@pytest.mark.parametrize("media", [("application/octet-stream", "*"), ("image/jphc",), ("image/jphc", HTJ2K)])
def test_frames_in_the_stored_syntax_decode_to_the_source(server: Server, datastore: str, client: DICOMwebClient,
                                                          data: Data, media: tuple[str, ...]) -> None:
    for path in (data.ct[0], data.us[0]):
        source = pydicom.dcmread(path)
        if media[0] == "image/jphc":  # not a media type dicomweb-client offers
            study, series, sop = uids(path)
            accept = f'multipart/related; type="{media[0]}"' + (f"; transfer-syntax={media[1]}" if media[1:] else "")
            with server.http() as http:
                frames = parts(http.get(f"/datastore/{datastore}/studies/{study}/series/{series}/instances/{sop}"
                                        f"/frames/2,1", headers={"Accept": accept}))
        else:
            frames = client.retrieve_instance_frames(*uids(path), [2, 1], media_types=(media,))
        for frame, index in zip(frames, (1, 0)):
            assert np.array_equal(imagecodecs.htj2k_decode(frame), native_frame(source, index))


def test_colour_frames_decoded(client: DICOMwebClient, data: Data) -> None:
    source = pydicom.dcmread(data.us[0])
    (frame,) = client.retrieve_instance_frames(*uids(data.us[0]), [4],
                                               media_types=(("application/octet-stream", ELE),))
    assert frame == native_frame(source, 3).tobytes()


def test_frame_parts_name_their_transfer_syntax(server: Server, datastore: str, data: Data) -> None:
    study, series, sop = uids(data.ct[0])
    url = f"/datastore/{datastore}/studies/{study}/series/{series}/instances/{sop}/frames/1"
    with server.http() as http:
        stored = http.get(url, headers={"Accept": "multipart/related; type=application/octet-stream; "
                                                  "transfer-syntax=*"})
        assert stored.status_code == 200
        assert stored.headers["content-type"].startswith('multipart/related; type="application/octet-stream"')
        assert f"Content-Type: application/octet-stream; transfer-syntax={HTJ2K_RPCL}".encode() in stored.content
        native = http.get(url, headers={"Accept": 'multipart/related; type="application/octet-stream"'})
        assert f"transfer-syntax={ELE}".encode() in native.content
        jphc = http.get(url, headers={"Accept": 'multipart/related; type="image/jphc"'})
        assert b"Content-Type: image/jphc; transfer-syntax=" in jphc.content
        refused = http.get(url, headers={"Accept": 'multipart/related; type="image/jpeg"'})
        assert refused.status_code == 406
        fallback = http.get(url, headers={"Accept": 'multipart/related; type="image/jpeg", '
                                                    'multipart/related; type="application/octet-stream"; '
                                                    'transfer-syntax=*;q=0.5'})
        assert fallback.status_code == 200 and HTJ2K_RPCL.encode() in fallback.content
        assert http.get(url.replace("/frames/1", "/frames/9")).status_code == 404
        assert http.get(url.replace("/frames/1", "/frames/1,1")).status_code == 400


def test_unproducible_syntax_is_not_acceptable(client: DICOMwebClient, data: Data) -> None:
    with pytest.raises(HTTPError) as info:
        client.retrieve_instance(*uids(data.ct[0]), media_types=(("application/dicom", "1.2.840.10008.1.2.4.50"),))
    assert info.value.response.status_code == 406


def test_missing_instance_is_not_found(client: DICOMwebClient, data: Data) -> None:
    study, series, _ = uids(data.ct[0])
    with pytest.raises(HTTPError) as info:
        client.retrieve_instance(study, series, "1.2.3.4")
    assert info.value.response.status_code == 404


def test_rendered_jpeg_png_window_and_thumbnails(server: Server, datastore: str, data: Data) -> None:
    study, series, sop = uids(data.ct[0])
    base = f"/datastore/{datastore}/studies/{study}/series/{series}"
    with server.http() as http:
        jpeg = http.get(f"{base}/instances/{sop}/rendered", headers={"Accept": "image/jpeg"})
        assert jpeg.headers["content-type"] == "image/jpeg"
        assert imagecodecs.jpeg8_decode(jpeg.content).shape == (32, 32)
        png = http.get(f"{base}/instances/{sop}/frames/2/rendered", params={"window": "0,1,LINEAR"},
                       headers={"Accept": "image/png"})
        image = imagecodecs.png_decode(png.content)
        source = native_frame(pydicom.dcmread(data.ct[0]), 1).astype(float) - 1024
        assert np.array_equal(image, np.where(source > 0, 255, 0))  # a 1-wide window at 0 HU
        small = http.get(f"{base}/instances/{sop}/rendered", params={"viewport": "16,16"})
        assert imagecodecs.jpeg8_decode(small.content).shape == (16, 16)
        colour = http.get(f"/datastore/{datastore}/studies/{uids(data.us[0])[0]}/thumbnail",
                          headers={"Accept": "image/png"})
        assert imagecodecs.png_decode(colour.content).shape == (64, 80, 3)
        assert http.get(f"{base}/thumbnail").status_code == 200
        assert http.get(f"{base}/instances/{sop}/rendered", params={"window": "nonsense"}).status_code == 400


def test_image_set_id_targets_one_image_set(server: Server, client: DICOMwebClient, datastore: str,
                                            data: Data) -> None:
    study, series, sop = uids(data.ct[0])
    found = server.ahi().search_image_sets(datastoreId=datastore, searchCriteria={"filters": [
        {"values": [{"DICOMSeriesInstanceUID": series}], "operator": "EQUAL"}]})
    image_set_id = found["imageSetsMetadataSummaries"][0]["imageSetId"]
    served = client.retrieve_instance(study, series, sop, additional_params={"imageSetId": image_set_id}) \
        if "additional_params" in DICOMwebClient.retrieve_instance.__code__.co_varnames else None
    with server.http() as http:
        url = f"/datastore/{datastore}/studies/{study}/series/{series}/instances/{sop}"
        response = http.get(url, params={"imageSetId": image_set_id}, headers={"Accept": "application/dicom"})
        assert response.status_code == 200
        assert pydicom.dcmread(io.BytesIO(response.content)).SOPInstanceUID == sop
        assert http.get(url, params={"imageSetId": "f" * 32}, headers={"Accept": "application/dicom"}
                        ).status_code == 404
    del served
