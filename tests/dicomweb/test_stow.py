"""STOW-RS on a real server: dicomweb-client and raw multipart bodies, the PS3.18 store response,
200/202/409, failure reasons per instance, and the streaming multipart parser."""

from __future__ import annotations

import io
import random
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from dicomweb_client import DICOMwebClient
from pydicom.uid import generate_uid
from requests.exceptions import HTTPError

from tessel.dicomweb.multipart import PartData, PartEnd, PartStart, StreamParser
from tessel.errors import InvalidInput
from tests.dicomweb.conftest import Server
from tests.factory import make_instance, make_series

BOUNDARY = "tessel-test-boundary"
REFERENCED, FAILED = "00081199", "00081198"
FAILURE_REASON, WARNING_REASON, ERROR_COMMENT, RETRIEVE_URL = "00081197", "00081196", "00000902", "00081190"
SOP_INSTANCE = "00081155"


def multipart(*parts: bytes, part_type: str | None = "application/dicom") -> tuple[bytes, str]:
    chunks = []
    for data in parts:
        header = f"--{BOUNDARY}\r\n" + (f"Content-Type: {part_type}\r\n" if part_type else "") + "\r\n"
        chunks += [header.encode(), data, b"\r\n"]
    chunks.append(f"--{BOUNDARY}--\r\n".encode())
    return b"".join(chunks), f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'


def post(server: Server, datastore: str, body: bytes, content_type: str, path: str = "/studies") -> Any:
    with server.http() as http:
        return http.post(f"/datastore/{datastore}{path}", content=body, headers={"Content-Type": content_type})


def items(answer: dict[str, Any], tag: str) -> list[dict[str, Any]]:
    return list(answer.get(tag, {}).get("Value", []))


def value(item: dict[str, Any], tag: str) -> Any:
    return item[tag]["Value"][0]


def count_instances(client: DICOMwebClient, **filters: str) -> int:
    return len(client.search_for_instances(search_filters=filters))


# -- the streaming parser -------------------------------------------------------------------------

def parse(body: bytes, boundary: str, cuts: list[int]) -> list[tuple[dict[str, str], bytes]]:
    parser = StreamParser(boundary)
    events = []
    last = 0
    for cut in sorted(cuts) + [len(body)]:
        events += parser.feed(body[last:cut])
        last = cut
    events += parser.close()
    out: list[tuple[dict[str, str], bytes]] = []
    for event in events:
        if isinstance(event, PartStart):
            out.append((event.headers, b""))
        elif isinstance(event, PartData):
            out[-1] = (out[-1][0], out[-1][1] + event.data)
        else:
            assert isinstance(event, PartEnd)
    return out


def test_parser_gives_the_same_parts_however_the_body_is_cut() -> None:
    rng = random.Random(4)
    payloads = [bytes(rng.randrange(256) for _ in range(n)) for n in (0, 1, 700, 5000)]
    payloads.append(b"\r\n--" + BOUNDARY.encode()[:-1] + b"\r\n")  # almost a delimiter, inside a part
    body, _ = multipart(*payloads)
    body = b"preamble text\r\n" + body + b"epilogue"
    expected = [({"content-type": "application/dicom"}, p) for p in payloads]
    assert parse(body, BOUNDARY, []) == expected
    for _ in range(200):
        cuts = [rng.randrange(len(body)) for _ in range(rng.randrange(1, 12))]
        assert parse(body, BOUNDARY, cuts) == expected
    assert parse(body, BOUNDARY, list(range(len(body)))) == expected  # one byte at a time


def test_parser_accepts_padding_and_parts_without_headers() -> None:
    body = f"--{BOUNDARY}  \r\n\r\nabc\r\n--{BOUNDARY}--".encode()
    assert parse(body, BOUNDARY, [3]) == [({}, b"abc")]


@pytest.mark.parametrize("body, message", [
    (b"no boundary anywhere" * 2000, "does not start with its boundary"),
    (f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\nabc".encode(), "ends without its closing boundary"),
    (f"--{BOUNDARY}\r\nContent-Type: application/dicom".encode(), "ends inside a part's headers"),
    (f"--{BOUNDARY}xx\r\n\r\nabc\r\n--{BOUNDARY}--".encode(), "not followed by CRLF"),
])
def test_parser_says_what_is_wrong(body: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse(body, BOUNDARY, [])


# -- storing ------------------------------------------------------------------------------------

def test_stored_instances_are_referenced_found_and_served(client: DICOMwebClient, tmp_path: Path) -> None:
    paths = make_series(tmp_path / "s", 3, frames=2)
    answer = client.store_instances([pydicom.dcmread(p) for p in paths])
    sources = [pydicom.dcmread(p) for p in paths]
    study, series = sources[0].StudyInstanceUID, sources[0].SeriesInstanceUID
    assert answer.RetrieveURL.endswith(f"/studies/{study}")
    assert [i.ReferencedSOPInstanceUID for i in answer.ReferencedSOPSequence] == [s.SOPInstanceUID for s in sources]
    for item, source in zip(answer.ReferencedSOPSequence, sources):
        assert item.ReferencedSOPClassUID == source.SOPClassUID
        assert item.RetrieveURL.endswith(f"/studies/{study}/series/{series}/instances/{source.SOPInstanceUID}")
        assert "WarningReason" not in item
    assert "FailedSOPSequence" not in answer
    assert count_instances(client, StudyInstanceUID=study) == 3
    served = client.retrieve_instance(study, series, sources[1].SOPInstanceUID)
    assert np.array_equal(served.pixel_array, sources[1].pixel_array)


def test_storing_the_same_instances_again_keeps_one_copy(client: DICOMwebClient, tmp_path: Path) -> None:
    paths = make_series(tmp_path / "twice", 2)
    for _ in range(2):
        answer = client.store_instances([pydicom.dcmread(p) for p in paths])
        assert len(answer.ReferencedSOPSequence) == 2
    assert count_instances(client, StudyInstanceUID=pydicom.dcmread(paths[0]).StudyInstanceUID) == 2


def test_one_request_makes_one_version_per_image_set(server: Server, client: DICOMwebClient, datastore: str,
                                                     tmp_path: Path) -> None:
    paths = make_series(tmp_path / "v", 12)
    body, content_type = multipart(*(p.read_bytes() for p in paths))
    assert post(server, datastore, body, content_type).status_code == 200
    series = pydicom.dcmread(paths[0]).SeriesInstanceUID
    found = server.ahi().search_image_sets(datastoreId=datastore, searchCriteria={"filters": [
        {"values": [{"DICOMSeriesInstanceUID": series}], "operator": "EQUAL"}]})["imageSetsMetadataSummaries"]
    assert [s["version"] for s in found] == [1]


def test_study_url_refuses_instances_of_other_studies(server: Server, client: DICOMwebClient, datastore: str,
                                                      tmp_path: Path) -> None:
    mine = make_series(tmp_path / "mine", 1)
    other = make_series(tmp_path / "other", 1)
    study = pydicom.dcmread(mine[0]).StudyInstanceUID
    body, content_type = multipart(mine[0].read_bytes(), other[0].read_bytes())
    response = post(server, datastore, body, content_type, f"/studies/{study}")
    assert response.status_code == 202, response.text
    answer = response.json()
    (failed,) = items(answer, FAILED)
    assert value(failed, SOP_INSTANCE) == pydicom.dcmread(other[0]).SOPInstanceUID
    assert value(failed, FAILURE_REASON) == 0xA900
    assert "is not the study" in value(failed, ERROR_COMMENT)
    assert [value(i, SOP_INSTANCE) for i in items(answer, REFERENCED)] == [pydicom.dcmread(mine[0]).SOPInstanceUID]
    assert count_instances(client, StudyInstanceUID=pydicom.dcmread(other[0]).StudyInstanceUID) == 0
    with pytest.raises(HTTPError) as info:  # all refused: 409, with the reasons
        client.store_instances([pydicom.dcmread(other[0])], study_instance_uid=study)
    assert info.value.response.status_code == 409
    assert value(items(info.value.response.json(), FAILED)[0], FAILURE_REASON) == 0xA900


def truncated(path: Path) -> bytes:
    return path.read_bytes()[:-1000]


def unknown_syntax(path: Path) -> bytes:
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = "1.2.3.4.5.6"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True, implicit_vr=False, little_endian=True)
    return out.getvalue()


@pytest.mark.parametrize("make_bad, reason, words", [
    (lambda p: b"%PDF-1.4 not an instance", 0xC000, "not DICOM"),
    (truncated, 0xC000, "ends"),
    (unknown_syntax, 0xC122, "transfer syntax"),
])
def test_a_bad_part_fails_alone_with_its_reason(server: Server, client: DICOMwebClient, datastore: str,
                                                tmp_path: Path, make_bad: Any, reason: int, words: str) -> None:
    good, bad = make_series(tmp_path / "gb", 2)
    body, content_type = multipart(good.read_bytes(), make_bad(bad))
    response = post(server, datastore, body, content_type)
    assert response.status_code == 202, response.text
    answer = response.json()
    (failed,) = items(answer, FAILED)
    assert value(failed, FAILURE_REASON) == reason
    assert words in value(failed, ERROR_COMMENT)
    if reason != 0xC000 or words == "ends":  # a readable header still names the instance
        assert value(failed, SOP_INSTANCE) == pydicom.dcmread(bad).SOPInstanceUID
    assert len(items(answer, REFERENCED)) == 1
    study = pydicom.dcmread(good).StudyInstanceUID
    assert count_instances(client, StudyInstanceUID=study) == 1


def test_warnings_make_a_202_with_the_warning_reason(server: Server, datastore: str, tmp_path: Path) -> None:
    ds = pydicom.dcmread(make_instance(tmp_path / "w.dcm", study=generate_uid(), series=generate_uid()))
    ds.PixelData = ds.PixelData + b"\x00" * 4  # padding after the last frame: stored, with a warning
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    body, content_type = multipart(out.getvalue())
    response = post(server, datastore, body, content_type)
    assert response.status_code == 202, response.text
    (stored,) = items(response.json(), REFERENCED)
    assert value(stored, WARNING_REASON) == 0xB000
    assert FAILED not in response.json()


def test_a_single_application_dicom_body_is_one_instance(server: Server, client: DICOMwebClient,
                                                         datastore: str, tmp_path: Path) -> None:
    (path,) = make_series(tmp_path / "single", 1)
    response = post(server, datastore, path.read_bytes(), "application/dicom")
    assert response.status_code == 200, response.text
    assert count_instances(client, SOPInstanceUID=pydicom.dcmread(path).SOPInstanceUID) == 1


def test_parts_without_content_type_are_taken_as_instances(server: Server, datastore: str, tmp_path: Path) -> None:
    (path,) = make_series(tmp_path / "untyped", 1)
    body, content_type = multipart(path.read_bytes(), part_type=None)
    assert post(server, datastore, body, content_type).status_code == 200


def test_a_part_of_another_type_fails(server: Server, datastore: str, tmp_path: Path) -> None:
    body, content_type = multipart(b'{"00100010": {}}', part_type="application/json")
    response = post(server, datastore, body, content_type)
    assert response.status_code == 409
    (failed,) = items(response.json(), FAILED)
    assert "application/json part is not a DICOM instance" in value(failed, ERROR_COMMENT)


@pytest.mark.parametrize("content_type, status", [
    ("application/json", 415),
    ('multipart/related; type="application/dicom+json"; boundary=x', 415),
    ('multipart/related; type="application/dicom"', 400),  # no boundary
])
def test_bodies_dicomweb_does_not_take_are_refused(server: Server, datastore: str, content_type: str,
                                                   status: int) -> None:
    response = post(server, datastore, b"--x\r\n\r\n{}\r\n--x--\r\n", content_type)
    assert response.status_code == status
    assert response.json()["message"]


def test_a_malformed_body_stores_nothing(server: Server, client: DICOMwebClient, datastore: str,
                                         tmp_path: Path) -> None:
    paths = make_series(tmp_path / "cut", 2)
    body, content_type = multipart(*(p.read_bytes() for p in paths))
    response = post(server, datastore, body[:-len(f"--{BOUNDARY}--\r\n") - 10], content_type)
    assert response.status_code == 400
    assert "closing boundary" in response.json()["message"]
    assert count_instances(client, StudyInstanceUID=pydicom.dcmread(paths[0]).StudyInstanceUID) == 0
    assert post(server, datastore, b"", "application/dicom").status_code == 400
    assert post(server, datastore, f"--{BOUNDARY}--\r\n".encode(), content_type).status_code == 400


def test_unknown_datastore_is_not_found(server: Server, tmp_path: Path) -> None:
    (path,) = make_series(tmp_path / "nowhere", 1)
    body, content_type = multipart(path.read_bytes())
    assert post(server, "0" * 32, body, content_type).status_code == 404


def test_large_parts_stream_through_a_file_and_chunked_uploads_work(server: Server, datastore: str,
                                                                    tmp_path: Path) -> None:
    study, series = generate_uid(), generate_uid()
    big = make_instance(tmp_path / "big.dcm", study=study, series=series, rows=1536, columns=1536, frames=3)
    assert big.stat().st_size > 12 * 1024 * 1024  # past the in-memory limit of one part
    small = make_series(tmp_path / "small", 3, study=study)
    client = server.dicomweb(datastore, chunk_size=64 * 1024)  # chunked transfer encoding, 64 KB at a time
    answer = client.store_instances([pydicom.dcmread(p) for p in [big, *small]])
    assert len(answer.ReferencedSOPSequence) == 4
    source = pydicom.dcmread(big)
    frames = client.retrieve_instance_frames(study, series, source.SOPInstanceUID, [3])
    assert frames[0] == source.pixel_array[2].astype("<u2").tobytes()
    assert not list((server.data_dir / "tmp").glob("stow-*"))  # spooled parts are removed


def test_each_request_is_answered_with_its_own_instances(server: Server, datastore: str, tmp_path: Path) -> None:
    study = generate_uid(entropy_srcs=[uuid.uuid4().hex])
    paths = make_series(tmp_path / "own", 2, study=study)
    body, content_type = multipart(*(p.read_bytes() for p in paths))
    answer = post(server, datastore, body, content_type, f"/studies/{study}").json()
    assert value(answer, RETRIEVE_URL).endswith(f"/datastore/{datastore}/studies/{study}")
    assert len(items(answer, REFERENCED)) == 2
