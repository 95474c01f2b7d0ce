"""QIDO-RS through dicomweb-client on a real server: every level and PS3.4 C.2.2 matching rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydicom
import pytest
from dicomweb_client import DICOMwebClient
from pydicom.uid import generate_uid
from requests.exceptions import HTTPError

from tests.dicomweb.conftest import Server
from tests.factory import make_series


class Data:
    def __init__(self, folder: Path) -> None:
        self.a, self.b, self.c = (generate_uid(entropy_srcs=[str(folder), n]) for n in "abc")
        common = {"ReferringPhysicianName": "House^Gregory", "StudyDescription": "CT CHEST"}
        self.a_ct = make_series(folder / "a1", 3, study=self.a, patient_name="Doe^John", patient_id="P1",
                                series_number=1, extra=common)
        self.a_mr = make_series(folder / "a2", 2, study=self.a, patient_name="Doe^John", patient_id="P1",
                                series_number=2, extra={**common, "Modality": "MR", "SeriesDescription": "T1"})
        self.b_mr = make_series(folder / "b1", 2, study=self.b, patient_name="Smith^Jane", patient_id="P2",
                                extra={"StudyDate": "20231215", "StudyTime": "083000", "AccessionNumber": "ACC2",
                                       "Modality": "MR", "ReferringPhysicianName": "Wilson^James",
                                       "SeriesDate": "20231215", "SeriesTime": "084500",
                                       "AcquisitionDateTime": "20231215083512.5", "ImageType": ["ORIGINAL", "PRIMARY"]})
        self.c_cr = make_series(folder / "c1", 1, study=self.c, patient_name="Müller^Jürgen", patient_id="P3",
                                extra={"StudyDate": "20220601", "StudyTime": "235959", "AccessionNumber": "ACC3",
                                       "SpecificCharacterSet": "ISO_IR 100", "Modality": "CR"})

    def all_paths(self) -> list[Path]:
        return self.a_ct + self.a_mr + self.b_mr + self.c_cr


@pytest.fixture(scope="module")
def data(client: DICOMwebClient, tmp_path_factory: pytest.TempPathFactory) -> Data:
    d = Data(tmp_path_factory.mktemp("qido"))
    # Stored one study at a time, oldest last: the newest-first order is then c, b, a.
    for paths in (d.a_ct + d.a_mr, d.b_mr, d.c_cr):
        client.store_instances([pydicom.dcmread(p) for p in paths])
    return d


def uids(results: list[dict[str, Any]], tag: str = "0020000D") -> list[str]:
    return [r[tag]["Value"][0] for r in results]


def value(result: dict[str, Any], tag: str) -> Any:
    return result[tag]["Value"][0] if "Value" in result.get(tag, {}) else None


def test_search_all_studies_newest_first_with_standard_attributes(client: DICOMwebClient, data: Data) -> None:
    studies = client.search_for_studies()
    assert uids(studies) == [data.c, data.b, data.a]
    a = studies[2]
    assert value(a, "00100010") == {"Alphabetic": "Doe^John"}
    assert value(a, "00201206") == 2 and value(a, "00201208") == 5  # series, instances
    assert a["00080061"]["Value"] == ["CT", "MR"]  # ModalitiesInStudy
    assert a["00080062"]["Value"] == ["1.2.840.10008.5.1.4.1.1.2"]  # SOPClassesInStudy
    assert value(a, "00081190").endswith(f"/studies/{data.a}")  # RetrieveURL
    for tag in ("00080020", "00080030", "00080050", "00100020", "00100030", "00100040", "00200010"):
        assert tag in a  # required return keys are present, empty or not


@pytest.mark.parametrize("filters, expected", [
    ({"PatientID": "P2"}, "b"),
    ({"00100020": "P2"}, "b"),  # tag-number key
    ({"PatientName": "Smith^Jane"}, "b"),
    ({"PatientName": "smith^jane"}, "b"),  # person names ignore case
    ({"PatientName": "DOE*"}, "a"),
    ({"PatientName": "?oe^J*"}, "a"),
    ({"PatientName": "Müller*"}, "c"),
    ({"AccessionNumber": "ACC3"}, "c"),
    ({"AccessionNumber": "acc3"}, ""),  # other text matches case-sensitively
    ({"StudyDate": "20231215"}, "b"),
    ({"StudyDate": "20231201-20240131"}, "ba"),
    ({"StudyDate": "20240101-"}, "a"),
    ({"StudyDate": "-20221231"}, "c"),
    ({"StudyTime": "0800-0900"}, "b"),
    ({"StudyTime": "2359"}, "c"),
    ({"ModalitiesInStudy": "MR"}, "ba"),
    ({"ModalitiesInStudy": "CR\\CT"}, "ca"),
    ({"ModalitiesInStudy": "C?"}, "ca"),
    ({"StudyDescription": "CT*"}, "a"),
    ({"ReferringPhysicianName": "wilson*"}, "b"),
    ({"PatientID": "P1", "StudyDate": "2024"}, ""),
    ({"PatientID": ""}, "cba"),  # universal matching
])
def test_study_matching(client: DICOMwebClient, data: Data, filters: dict[str, str], expected: str) -> None:
    assert uids(client.search_for_studies(search_filters=filters)) == [getattr(data, x) for x in expected]


def test_uid_list_matching(client: DICOMwebClient, data: Data) -> None:
    for joined in (f"{data.a}\\{data.c}", f"{data.a},{data.c}"):
        assert uids(client.search_for_studies(search_filters={"StudyInstanceUID": joined})) == [data.c, data.a]
    assert uids(client.search_for_studies(search_filters={"StudyInstanceUID": data.b})) == [data.b]


@pytest.mark.parametrize("name", ["john doe", "Doe, John", "DOE^JOHN", "jo", "do jo", "*oh*", "*DOE*"])
def test_fuzzy_matching_finds_word_prefixes_in_any_order(client: DICOMwebClient, data: Data, name: str) -> None:
    found = client.search_for_studies(fuzzymatching=True, search_filters={"PatientName": name})
    assert uids(found) == [data.a]


def test_fuzzy_matching_of_referring_physician(client: DICOMwebClient, data: Data) -> None:
    found = client.search_for_studies(fuzzymatching=True, search_filters={"ReferringPhysicianName": "greg"})
    assert uids(found) == [data.a]
    assert client.search_for_studies(fuzzymatching=True, search_filters={"PatientName": "jane doe"}) == []


def test_includefield_by_keyword_tag_and_all(client: DICOMwebClient, data: Data) -> None:
    plain = client.search_for_studies(search_filters={"PatientID": "P1"})[0]
    assert "00080090" in plain and "00081030" in plain
    extra = client.search_for_studies(search_filters={"PatientID": "P1"}, fields=["IssuerOfPatientID", "00101010"])
    assert "00100021" in extra[0] and "00101010" in extra[0]  # asked for, present though empty
    everything = client.search_for_studies(search_filters={"PatientID": "P1"}, fields=["all"])[0]
    assert value(everything, "00081030") == "CT CHEST"
    ignored = client.search_for_studies(search_filters={"PatientID": "P1"}, fields=["NoSuchKeyword"])
    assert len(ignored) == 1


def test_limit_offset_and_the_warning_for_more(server: Server, client: DICOMwebClient, datastore: str,
                                               data: Data) -> None:
    first = client.search_for_studies(limit=2)
    second = client.search_for_studies(limit=2, offset=2)
    assert uids(first) + uids(second) == [data.c, data.b, data.a]
    with server.http() as http:
        response = http.get(f"/datastore/{datastore}/studies", params={"limit": 1})
        assert response.headers["content-type"] == "application/dicom+json"
        assert response.headers["warning"].startswith("299")
        assert "warning" not in http.get(f"/datastore/{datastore}/studies", params={"limit": 3}).headers
        many = http.get(f"/datastore/{datastore}/studies", params={"limit": 100000})  # served as 1000
        assert many.status_code == 200 and len(many.json()) == 3 and "warning" not in many.headers
        for bad in ("-1", "ten", "1.5"):
            response = http.get(f"/datastore/{datastore}/studies", params={"limit": bad})
            assert response.status_code == 400 and "limit" in response.json()["message"]
        assert http.get(f"/datastore/{datastore}/studies", params={"offset": "-2"}).status_code == 400


def test_series_all_and_within_a_study(client: DICOMwebClient, data: Data) -> None:
    everything = client.search_for_series()
    assert len(everything) == 4
    assert "00100020" in everything[0]  # searching all series returns the study's attributes too
    within = client.search_for_series(data.a)
    assert [value(s, "00200011") for s in within] == [1, 2]  # SeriesNumber order
    assert [value(s, "00201209") for s in within] == [3, 2]  # NumberOfSeriesRelatedInstances
    assert value(within[1], "0008103E") == "T1"
    mr = client.search_for_series(search_filters={"Modality": "MR"})
    assert sorted(value(s, "0020000D") for s in mr) == sorted([data.a, data.b])
    assert [value(s, "00200011") for s in client.search_for_series(data.a, search_filters={"SeriesNumber": "2"})] == [2]
    by_patient = client.search_for_series(search_filters={"PatientName": "smith*"})
    assert [value(s, "0020000D") for s in by_patient] == [data.b]


def test_instances_all_within_a_study_and_within_a_series(client: DICOMwebClient, data: Data) -> None:
    assert len(client.search_for_instances()) == 8
    assert len(client.search_for_instances(data.a)) == 5
    series = pydicom.dcmread(data.a_ct[0]).SeriesInstanceUID
    ordered = client.search_for_instances(data.a, series)
    assert [value(i, "00200013") for i in ordered] == [1, 2, 3]  # InstanceNumber order
    assert value(ordered[0], "00280010") == 32 and value(ordered[0], "00080016") == "1.2.840.10008.5.1.4.1.1.2"
    assert value(ordered[0], "00081190").endswith(f"/series/{series}/instances/{value(ordered[0], '00080018')}")
    second = client.search_for_instances(data.a, series, search_filters={"InstanceNumber": "2"})
    assert [value(i, "00200013") for i in second] == [2]
    by_sop = client.search_for_instances(search_filters={"SOPInstanceUID": value(ordered[2], "00080018")})
    assert len(by_sop) == 1
    assert len(client.search_for_instances(search_filters={"SOPClassUID": "1.2.840.10008.5.1.4.1.1.4"})) == 0
    everything = client.search_for_instances(data.a, series, fields=["all"])
    assert value(everything[0], "00280100") == 16  # BitsAllocated: every stored attribute
    assert "7FE00010" not in everything[0]  # ... except Pixel Data


def test_study_instance_uid_on_studies_and_mismatching_scope(server: Server, client: DICOMwebClient,
                                                             datastore: str, data: Data) -> None:
    assert uids(client.search_for_studies(search_filters={"StudyInstanceUID": data.b})) == [data.b]
    assert client.search_for_series(data.a, search_filters={"StudyInstanceUID": data.b}) == []


def test_unknown_attributes_are_bad_requests(client: DICOMwebClient, data: Data) -> None:
    with pytest.raises(HTTPError) as info:
        client.search_for_studies(search_filters={"NotAnAttribute": "x"})
    assert info.value.response.status_code == 400


def test_unknown_datastore_is_not_found(server: Server) -> None:
    with pytest.raises(HTTPError) as info:
        server.dicomweb("0" * 32).search_for_studies()
    assert info.value.response.status_code == 404


def test_series_and_instance_matching_rules(client: DICOMwebClient, data: Data) -> None:
    def series(**filters: str) -> list[str]:
        return [value(s, "0020000D") for s in client.search_for_series(search_filters=filters)]

    def instances(**filters: str) -> list[str]:
        return [value(i, "0020000D") for i in client.search_for_instances(search_filters=filters)]

    assert series(SeriesDate="20231201-20231231") == [data.b]
    assert series(SeriesDate="-20231214") == []
    assert series(SeriesTime="0800-0900") == [data.b]
    assert series(SeriesDescription="T?") == [data.a]  # ? is one character
    assert series(SeriesDescription="t?") == []  # case-sensitive outside person names
    assert series(Modality="CR\\CT") == [data.c, data.a]  # list matching
    assert series(PatientName="müller*") == [data.c]
    assert instances(AcquisitionDateTime="20231215080000-20231215090000") == [data.b, data.b]  # DT range
    assert instances(AcquisitionDateTime="2023") == [data.b, data.b]  # a DT prefix is its whole range
    assert instances(AcquisitionDateTime="20240101-") == []
    assert instances(ImageType="PRIMARY") == [data.b, data.b]  # any value of a multi-valued attribute
    assert instances(Rows="32", SeriesInstanceUID=pydicom.dcmread(data.c_cr[0]).SeriesInstanceUID) == [data.c]
    assert len(instances(StudyInstanceUID=f"{data.a}\\{data.b}")) == 7


def test_includefield_at_series_and_instance_level(client: DICOMwebClient, data: Data) -> None:
    series = client.search_for_series(data.b, fields=["AcquisitionDateTime", "0008103E"])[0]
    assert "0008103E" in series and "00080022" not in series
    instances = client.search_for_instances(data.b, fields=["AcquisitionDateTime", "00080008"])
    assert value(instances[0], "0008002A") == "20231215083512.5"
    assert instances[0]["00080008"]["Value"] == ["ORIGINAL", "PRIMARY"]
    everything = client.search_for_series(data.b, fields=["all"])[0]
    assert value(everything, "00200011") is not None and value(everything, "00100020") == "P2"
