"""`tessel.dicom` on small datasets built here with pydicom: no corpus needed."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import UID, generate_uid

from tessel.dicom import (
    InstanceLevels,
    ParsedInstance,
    instance_levels,
    read_bulk,
    read_frame,
    read_instance,
    read_instance_bytes,
)
from tessel.errors import InvalidInput, Unsupported

CT = "1.2.840.10008.5.1.4.1.1.2"
IMPLICIT, EXPLICIT, BIG, DEFLATED = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2",
                                     "1.2.840.10008.1.2.1.99")
JPEG_BASELINE, ENCAPSULATED_NATIVE = "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.1.98"


def dataset(**attributes: Any) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "Doe^John"
    ds.PatientID = "P1"
    ds.StudyDate = "20240102"
    ds.AccessionNumber = "A1"
    ds.StudyID = "S1"
    ds.Modality = "CT"
    ds.SeriesNumber = 7
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def image(ds: Dataset, rows: int, columns: int, frames: int, *, bits: int = 16, samples: int = 1,
          pixels: bytes | None = None) -> bytes:
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, columns, samples
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.PixelRepresentation = 0
    ds.PhotometricInterpretation = "MONOCHROME2" if samples == 1 else "RGB"
    if samples > 1:
        ds.PlanarConfiguration = 0
    if frames != 1:
        ds.NumberOfFrames = frames
    if pixels is None:
        count = (rows * columns * samples * bits * frames + 7) // 8
        pixels = bytes((i * 7 + 3) % 251 for i in range(count))
    ds.PixelData = pixels + (b"\x00" if len(pixels) % 2 else b"")
    ds["PixelData"].VR = "OB" if bits <= 8 else "OW"
    return pixels


def save(ds: Dataset, path: Path, syntax: str = EXPLICIT) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = UID(syntax)
    ds.file_meta = meta
    ds.save_as(path, enforce_file_format=True)
    return path


def encapsulated(ds: Dataset, frames: list[bytes], syntax: str, *, fragments_per_frame: int = 1,
                 has_bot: bool = True) -> None:
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 8, 8, 1
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.NumberOfFrames = len(frames)
    ds.PixelData = encapsulate(frames, fragments_per_frame=fragments_per_frame, has_bot=has_bot)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True


def levels(parsed: ParsedInstance) -> InstanceLevels:
    result = instance_levels(parsed, {ref.tag: f"id-{ref.tag}" for ref in parsed.bulk})
    json.dumps([result.patient, result.study, result.series, result.instance, result.vrs], allow_nan=False)
    return result


def rejected(path_or_bytes: Path | bytes) -> str:
    with pytest.raises(InvalidInput) as caught:
        if isinstance(path_or_bytes, bytes):
            read_instance_bytes(path_or_bytes)
        else:
            read_instance(path_or_bytes)
    return caught.value.message


# -- transfer syntaxes and native frames --------------------------------------------------------

@pytest.mark.parametrize("syntax", [IMPLICIT, EXPLICIT, BIG, DEFLATED])
def test_multiframe_native_frames_are_indexed_in_every_syntax(tmp_path: Path, syntax: str) -> None:
    ds = dataset()
    pixels = image(ds, 4, 5, 3)
    if syntax == BIG:  # pydicom writes OW bytes as given; give it big endian words
        ds.PixelData = np.frombuffer(pixels, "<u2").astype(">u2").tobytes()
    parsed = read_instance(save(ds, tmp_path / "x.dcm", syntax))
    assert parsed.transfer_syntax_uid == syntax
    assert parsed.pixel is not None and parsed.pixel.number_of_frames == 3
    assert [ref.length for ref in parsed.frames] == [40, 40, 40]
    stored = bytes(ds.PixelData)
    assert [read_frame(parsed, i) for i in range(3)] == [stored[i * 40:(i + 1) * 40] for i in range(3)]
    doc = levels(parsed)
    assert doc.instance["Rows"] == 4 and doc.instance["NumberOfFrames"] == "3 "
    assert doc.patient == {"PatientName": "Doe^John", "PatientID": "P1"}
    assert doc.instance["TransferSyntaxUID"] == syntax and doc.instance["PixelData"] is None


def test_deflated_source_is_the_inflated_dataset(tmp_path: Path) -> None:
    ds = dataset()
    image(ds, 4, 4, 1)
    parsed = read_instance(save(ds, tmp_path / "x.dcm", DEFLATED))
    with parsed.open_source() as source:
        offset, length = parsed.frames[0].segments[0]
        source.seek(offset)
        assert source.read(length) == bytes(ds.PixelData)
    assert offset + length <= (tmp_path / "x.dcm").stat().st_size * 4


def test_one_bit_frames_need_not_start_on_a_byte(tmp_path: Path) -> None:
    bits = np.array([1, 0, 1, 1, 0, 0, 1, 0, 1] * 3, np.uint8)  # three 3x3 frames, 9 bits each
    ds = dataset()
    image(ds, 3, 3, 3, bits=1, pixels=np.packbits(bits, bitorder="little").tobytes())
    parsed = read_instance(save(ds, tmp_path / "x.dcm"))
    assert [(ref.segments[0][1], ref.bit_offset) for ref in parsed.frames] == [(2, 0), (2, 1), (2, 2)]
    for index, ref in enumerate(parsed.frames):
        unpacked = np.unpackbits(np.frombuffer(read_frame(parsed, index), np.uint8), bitorder="little")
        assert unpacked[ref.bit_offset:ref.bit_offset + 9].tolist() == bits[:9].tolist()


def test_float_pixel_data(tmp_path: Path) -> None:
    ds = dataset()
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.BitsAllocated = 2, 3, 1, 32
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.FloatPixelData = np.arange(6, dtype="<f4").tobytes()
    parsed = read_instance(save(ds, tmp_path / "x.dcm"))
    assert parsed.pixel is not None and parsed.pixel.pixel_keyword == "FloatPixelData"
    assert read_frame(parsed, 0) == np.arange(6, dtype="<f4").tobytes()
    assert parsed.warnings == []  # no Bits Stored etc. in the Float Pixel modules: nothing coerced
    assert levels(parsed).instance["FloatPixelData"] is None


def test_read_instance_bytes_matches_read_instance(tmp_path: Path) -> None:
    ds = dataset()
    image(ds, 4, 4, 2)
    path = save(ds, tmp_path / "x.dcm")
    from_file, from_bytes = read_instance(path), read_instance_bytes(path.read_bytes())
    assert from_file.frames == from_bytes.frames
    assert read_frame(from_bytes, 1) == read_frame(from_file, 1)
    assert levels(from_file) == levels(from_bytes)


def test_a_dataset_written_implicit_under_an_explicit_syntax_is_read_as_found(tmp_path: Path) -> None:
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info

    ds = dataset()
    image(ds, 2, 2, 1)
    data = save(ds, tmp_path / "x.dcm", IMPLICIT).read_bytes()
    body = data[144 + struct.unpack_from("<L", data, 140)[0]:]  # after File Meta (its group length)
    meta = FileMetaDataset(ds.file_meta)
    meta.TransferSyntaxUID = UID(EXPLICIT)
    buffer = DicomBytesIO()
    write_file_meta_info(buffer, meta, enforce_standard=True)
    parsed = read_instance_bytes(b"\x00" * 128 + b"DICM" + buffer.getvalue() + body)
    assert read_frame(parsed, 0) == bytes(ds.PixelData)
    assert any("implicit VR" in w["message"] for w in parsed.warnings)


# -- encapsulated frames ------------------------------------------------------------------------

def _jpeg_like(index: int, size: int = 30) -> bytes:
    return b"\xff\xd8" + bytes([index]) * (size - 4) + b"\xff\xd9"


@pytest.mark.parametrize("has_bot", [True, False])
def test_encapsulated_frames_with_and_without_basic_offset_table(tmp_path: Path, has_bot: bool) -> None:
    frames = [_jpeg_like(i) for i in range(4)]
    ds = dataset()
    encapsulated(ds, frames, JPEG_BASELINE, has_bot=has_bot)
    parsed = read_instance(save(ds, tmp_path / "x.dcm", JPEG_BASELINE))
    assert [read_frame(parsed, i) for i in range(4)] == frames
    assert parsed.warnings == []


def test_fragmented_frames_use_the_offset_table_or_frame_markers(tmp_path: Path) -> None:
    frames = [_jpeg_like(i, 40) for i in range(3)]
    for has_bot in (True, False):
        ds = dataset()
        encapsulated(ds, frames, JPEG_BASELINE, fragments_per_frame=2, has_bot=has_bot)
        parsed = read_instance(save(ds, tmp_path / f"{has_bot}.dcm", JPEG_BASELINE))
        assert [len(ref.segments) for ref in parsed.frames] == [2, 2, 2]
        assert [read_frame(parsed, i) for i in range(3)] == frames


def _no_signature(path: Path) -> bytes:
    """The file with its JPEG syntax swapped for one whose frames have no signature (pydicom
    cannot write that one itself): Encapsulated Uncompressed Explicit VR Little Endian."""
    return path.read_bytes().replace(JPEG_BASELINE.encode(), ENCAPSULATED_NATIVE.encode(), 1)


def test_fragmented_frames_without_table_or_markers_are_refused(tmp_path: Path) -> None:
    ds = dataset()
    encapsulated(ds, [bytes([i]) * 40 for i in range(3)], JPEG_BASELINE, fragments_per_frame=2, has_bot=False)
    message = rejected(_no_signature(save(ds, tmp_path / "x.dcm", JPEG_BASELINE)))
    assert "6 fragments" in message and "3 frames" in message


def test_a_wrong_offset_table_is_ignored_with_a_warning(tmp_path: Path) -> None:
    frames = [_jpeg_like(i) for i in range(3)]
    ds = dataset()
    encapsulated(ds, frames, JPEG_BASELINE, has_bot=True)
    data = bytearray(ds.PixelData)
    data[8 + 8:8 + 12] = struct.pack("<L", 7)  # second offset now points inside a fragment
    ds.PixelData = bytes(data)
    parsed = read_instance(save(ds, tmp_path / "x.dcm", JPEG_BASELINE))
    assert [read_frame(parsed, i) for i in range(3)] == frames
    assert [w["type"] for w in parsed.warnings] == ["INVALID_OFFSET_TABLE"]


def test_extended_offset_table_groups_fragments(tmp_path: Path) -> None:
    frames = [bytes([i]) * 40 for i in range(3)]  # no frame markers: only the table can tell
    ds = dataset()
    encapsulated(ds, frames, JPEG_BASELINE, fragments_per_frame=2, has_bot=False)
    ds.ExtendedOffsetTable = struct.pack("<3Q", 0, 56, 112)  # two 20-byte fragments (+ headers) per frame
    ds.ExtendedOffsetTableLengths = struct.pack("<3Q", 40, 40, 40)
    parsed = read_instance_bytes(_no_signature(save(ds, tmp_path / "x.dcm", JPEG_BASELINE)))
    assert [read_frame(parsed, i) for i in range(3)] == frames
    assert [len(ref.segments) for ref in parsed.frames] == [2, 2, 2]


def test_encapsulated_syntax_with_defined_length_pixel_data_is_refused(tmp_path: Path) -> None:
    ds = dataset()
    image(ds, 2, 2, 1)
    path = save(ds, tmp_path / "x.dcm")
    data = path.read_bytes().replace(b"1.2.840.10008.1.2.1\x00", b"1.2.840.10008.1.2.5\x00", 1)
    assert "defined length" in rejected(data)


# -- refusals -----------------------------------------------------------------------------------

def test_truncated_copies_are_refused(tmp_path: Path) -> None:
    ds = dataset(ReferencedImageSequence=Sequence([Dataset()]))
    ds.ReferencedImageSequence[0].ReferencedSOPClassUID = CT
    ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID = generate_uid()
    image(ds, 16, 16, 2)
    data = save(ds, tmp_path / "x.dcm").read_bytes()
    assert read_instance_bytes(data).frames
    for cut in (len(data) - 100, 200, data.index(b"\x08\x00\x40\x11") + 20, 140):
        assert "ends early" in rejected(data[:cut]), cut


def test_encapsulated_data_cut_inside_a_fragment_is_refused(tmp_path: Path) -> None:
    ds = dataset()
    encapsulated(ds, [_jpeg_like(i) for i in range(3)], JPEG_BASELINE)
    data = save(ds, tmp_path / "x.dcm", JPEG_BASELINE).read_bytes()
    assert "ends early" in rejected(data[:-20])
    assert "delimitation" in rejected(data[:-8]).lower()  # three frames, no delimiter: refused


@pytest.mark.parametrize("keyword", ["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"])
def test_missing_identifier_is_refused_by_name(tmp_path: Path, keyword: str) -> None:
    ds = dataset()
    image(ds, 2, 2, 1)
    path = save(ds, tmp_path / "x.dcm")
    broken = pydicom.dcmread(path)
    delattr(broken, keyword)
    broken.save_as(tmp_path / "y.dcm", enforce_file_format=False)
    name = {"SOPClassUID": "SOP Class UID", "SOPInstanceUID": "SOP Instance UID",
            "StudyInstanceUID": "Study Instance UID", "SeriesInstanceUID": "Series Instance UID"}[keyword]
    assert name in rejected(tmp_path / "y.dcm")


@pytest.mark.parametrize(("data", "word"), [
    (b"", "empty"),
    (b"just some text\n", "text"),
    (b"\xff\xd8\xff\xe0" + b"\x00" * 200, "JPEG"),
    (gzip.compress(b"\x00" * 300), "gzip"),
    (b"%PDF-1.4 " + b"\x00" * 200, "PDF"),
    (b"\x00" * 128 + b"DICM" + b"\x17" * 64, "File Meta"),
    (b"\x00" * 64, "Part 10"),
    (b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100" + b"\x00" * 200, "bare dataset"),
])
def test_non_dicom_input_is_refused_with_what_it_is(data: bytes, word: str) -> None:
    assert word in rejected(data)


def test_pixel_attributes_must_be_numbers(tmp_path: Path) -> None:
    ds = dataset()
    image(ds, 2, 2, 1)
    ds.NumberOfFrames = 9
    data = save(ds, tmp_path / "x.dcm").read_bytes()
    nine = b"\x28\x00\x08\x00IS\x02\x009 "
    assert nine in data  # pydicom refuses to write '1A'; patch it in
    message = rejected(data.replace(nine, nine[:-2] + b"1A"))
    assert "Number of Frames" in message and "'1A'" in message
    del ds.NumberOfFrames
    del ds.Rows
    assert "Rows (0028,0010) is missing" in rejected(save(ds, tmp_path / "y.dcm"))


def test_pixel_data_length_must_match_the_declared_image(tmp_path: Path) -> None:
    ds = dataset()
    image(ds, 4, 4, 2)
    ds.Rows = 400  # declares 100 times more than present; nothing of that size is allocated
    assert "needs 6400" in rejected(save(ds, tmp_path / "x.dcm"))
    ds.Rows, ds.NumberOfFrames = 4, 1
    assert "more frames" in rejected(save(ds, tmp_path / "y.dcm"))


def test_dicomdir_and_unknown_syntax_are_refused(tmp_path: Path) -> None:
    ds = dataset(SOPClassUID="1.2.840.10008.1.3.10")
    assert "DICOMDIR" in rejected(save(ds, tmp_path / "x.dcm"))
    ds = dataset()
    path = save(ds, tmp_path / "y.dcm")
    data = path.read_bytes().replace(b"1.2.840.10008.1.2.1\x00", b"1.2.3.4.5.6.7.8.9.10", 1)
    with pytest.raises(Unsupported, match="unsupported transfer syntax '1.2.3.4.5.6.7.8.9.10'"):
        read_instance_bytes(data)


def test_file_meta_uid_contradiction(tmp_path: Path) -> None:
    ds = dataset()
    path = save(ds, tmp_path / "x.dcm")
    uid = ds.SOPInstanceUID.encode()
    other = uid[:-1] + (b"1" if uid.endswith(b"2") else b"2")
    stale = path.read_bytes().replace(uid, other, 1)  # the first occurrence is in File Meta
    parsed = read_instance_bytes(stale)  # conformant File Meta that lags behind: the dataset wins
    assert parsed.sop_instance_uid == ds.SOPInstanceUID
    assert any("differs" in w["message"] for w in parsed.warnings)
    meta = FileMetaDataset()  # no group length, no version: nothing to trust
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = UID(CT), UID("1.2.3")
    meta.TransferSyntaxUID = UID(EXPLICIT)
    ds.file_meta = meta
    ds.preamble = b"\x00" * 128
    ds.save_as(tmp_path / "y.dcm", enforce_file_format=False)
    assert "contradicts" in rejected(tmp_path / "y.dcm")


def _nested(depth: int) -> Dataset:
    ds = dataset()
    inner = ds
    for _ in range(depth):
        item = Dataset()
        item.CodeValue = "X"
        inner.ContentSequence = Sequence([item])
        inner = item
    return ds


def test_pathological_nesting_is_refused_but_deep_trees_are_fine(tmp_path: Path) -> None:
    deep = read_instance(save(_nested(50), tmp_path / "ok.dcm"))
    node = levels(deep).instance
    for _ in range(50):
        node = node["ContentSequence"][0]
    assert node == {"CodeValue": "X"}
    # written by hand: pydicom itself cannot write 5000 levels
    item = b"\x08\x00\x00\x01SH\x02\x00X "
    for _ in range(5000):
        item = b"\x40\x00\x30\xa7SQ\x00\x00\xff\xff\xff\xff\xfe\xff\x00\xe0\xff\xff\xff\xff" + item \
               + b"\xfe\xff\x0d\xe0\x00\x00\x00\x00\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    head = save(dataset(), tmp_path / "head.dcm").read_bytes()
    assert "nested more than" in rejected(head + item)


# -- the metadata document ----------------------------------------------------------------------

def test_grouping_elements_land_on_their_levels(tmp_path: Path) -> None:
    ds = dataset(Manufacturer="ACME", PatientAge="042Y", FrameOfReferenceUID="1.2.3", InstanceNumber=3)
    doc = levels(read_instance(save(ds, tmp_path / "x.dcm")))
    assert set(doc.patient) == {"PatientName", "PatientID"}
    assert {"StudyDate", "AccessionNumber", "StudyID", "StudyInstanceUID", "PatientAge"} <= set(doc.study)
    assert {"SeriesInstanceUID", "SeriesNumber", "Modality", "Manufacturer", "FrameOfReferenceUID"} <= set(doc.series)
    assert {"SOPInstanceUID", "InstanceNumber", "FileMetaInformationVersion", "SpecificCharacterSet"} <= set(doc.instance)
    assert doc.series["SeriesNumber"] == "7 " and doc.instance["FileMetaInformationVersion"] == "AAE="


# Person names as DICOM PS3.5 Annexes H, I and K write them, and the bytes each leaves on disk.
CHARSET_NAMES = [
    pytest.param(["", "ISO 2022 IR 87"], "Yamada^Tarou=山田^太郎=やまだ^たろう",
                 b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=", id="japanese-iso2022-ir87"),
    pytest.param(["", "ISO 2022 IR 149"], "Hong^Gildong=洪^吉洞=홍^길동",
                 b"Hong^Gildong=\x1b$)C\xfb\xf3^\x1b$)C\xd1\xce\xd4\xd7=", id="korean-iso2022-ir149"),
    pytest.param("GB18030", "Wang^XiaoDong=王^小東", b"Wang^XiaoDong=\xcd\xf5^\xd0\xa1\x96|", id="chinese-gb18030"),
    pytest.param("ISO_IR 192", "Wang^XiaoDong=王^小东", "王^小东".encode(), id="chinese-utf8"),
    pytest.param("ISO_IR 126", "Διονυσιος", "Διονυσιος".encode("iso8859_7"), id="greek-ir126"),
    pytest.param("ISO_IR 144", "Люкceмбypг", "Люкceмбypг".encode("iso8859_5"), id="cyrillic-ir144"),
    pytest.param("ISO_IR 100", "Buc^Jérôme", "Buc^Jérôme".encode("latin-1"), id="latin1-ir100"),
]


@pytest.mark.parametrize("charset, name, on_disk", CHARSET_NAMES)
def test_person_names_are_decoded_to_utf8_from_their_character_set(
        charset: Any, name: str, on_disk: bytes, tmp_path: Path) -> None:
    ds = dataset(SpecificCharacterSet=charset)
    ds.PatientName = name
    ds.StudyDescription = name.split("=")[-1]  # a non-PN text value in the same character set
    path = save(ds, tmp_path / "x.dcm")
    assert on_disk in path.read_bytes()
    doc = levels(read_instance(path))
    assert doc.patient["PatientName"] == name
    assert doc.study["StudyDescription"] == name.split("=")[-1]
    # the original value is kept, as a list: Specific Character Set may hold several
    assert doc.instance["SpecificCharacterSet"] == (charset if isinstance(charset, list) else [charset])


def test_chinese_iso_2022_ir_58_loses_no_escape_sequence(tmp_path: Path) -> None:
    ds = dataset(SpecificCharacterSet=["", "ISO 2022 IR 58"])
    raw = b"Zhang^XiaoDong=\x1b$)A\xd5\xc5^\x1b$)A\xd0\xa1\xb6\xab"
    path = save(ds, tmp_path / "x.dcm")
    data = path.read_bytes()  # PatientName "Doe^John" swapped for the IR 58 bytes, padded to even length
    old = b"\x10\x00\x10\x00PN\x08\x00Doe^John"
    assert old in data
    path.write_bytes(data.replace(old, b"\x10\x00\x10\x00PN" + struct.pack("<H", len(raw) + 1) + raw + b" "))
    assert levels(read_instance(path)).patient["PatientName"] == "Zhang^XiaoDong=张^小东"


def test_sequence_item_character_set_applies_inside_the_item(tmp_path: Path) -> None:
    item = Dataset()
    item.SpecificCharacterSet = "ISO_IR 192"
    item.CodeMeaning = "Zoë 王"
    ds = dataset(SpecificCharacterSet="ISO_IR 100", InstitutionName="Zoë",
                 ProcedureCodeSequence=Sequence([item]))
    path = save(ds, tmp_path / "x.dcm")
    assert "Zoë".encode("latin-1") in path.read_bytes() and "Zoë 王".encode() in path.read_bytes()
    doc = levels(read_instance(path))
    assert doc.series["InstitutionName"] == "Zoë"
    assert doc.study["ProcedureCodeSequence"] == [{"SpecificCharacterSet": ["ISO_IR 192"], "CodeMeaning": "Zoë 王"}]


def test_values_are_encoded_as_ahi_does(tmp_path: Path) -> None:
    ds = dataset(ImageType=["ORIGINAL", "PRIMARY", "", "0015"], SoftwareVersions="1.06",
                 PixelSpacing=["0.25", "0.25"], RescaleIntercept="-1000", PatientBirthDate="",
                 FrameIncrementPointer=0x00181063, ReferencedImageSequence=Sequence([]))
    ds.add_new(0x00091010, "LO", "ACME 1.0")  # private creator
    ds.add_new(0x00091001, "OB", b"\x01\x00")
    ds.add_new(0x00091002, "OB", b"")
    ds.add_new(0x00091003, "FL", [1.5, float("nan")])
    ds.add_new(0x00091004, "SQ", Sequence([Dataset()]))
    ds[0x00091004].value[0].add_new(0x00091005, "US", 7)
    ds.add_new(0x00280010, "US", 2)
    doc = levels(read_instance(save(ds, tmp_path / "x.dcm")))
    inst = doc.instance
    assert inst["ImageType"] == ["ORIGINAL", "PRIMARY", "", "0015"]
    assert doc.series["SoftwareVersions"] == ["1.06"]  # VM 1-n: a list even with one value
    assert inst["PixelSpacing"] == ["0.25", "0.25 "] and inst["RescaleIntercept"] == "-1000 "  # padding kept
    assert doc.patient["PatientBirthDate"] is None and inst["ReferencedImageSequence"] is None
    assert inst["FrameIncrementPointer"] == ["00181063"] and inst["Rows"] == 2
    assert (inst["00091010"], inst["00091001"], inst["00091002"]) == ("ACME 1.0", "AQA=", "")
    assert inst["00091003"] == [1.5, "nan"]
    assert inst["00091004"] == [{"00091005": 7}]
    assert {k: doc.vrs[k] for k in ("00091010", "00091001", "00091003", "00091004", "00091005")} == \
        {"00091010": "LO", "00091001": "OB", "00091003": "FL", "00091004": "SQ", "00091005": "US"}


def test_implicit_vr_private_values_are_kept_as_un_bytes(tmp_path: Path) -> None:
    ds = dataset()
    ds.add_new(0x7FDD0010, "LO", "TSC Private Group")
    ds.add_new(0x7FDF1001, "OB", b"\x01\x00")
    ds.add_new(0x7FDD1090, "OB", b"")
    doc = levels(read_instance(save(ds, tmp_path / "x.dcm", IMPLICIT)))
    assert (doc.instance["7FDD0010"], doc.instance["7FDF1001"], doc.instance["7FDD1090"]) == \
        ("TSC Private Group", "AQA=", "")
    assert doc.vrs == {"7FDD0010": "LO", "7FDD1090": "UN", "7FDF1001": "UN"}


def test_values_invalid_for_their_vr_are_kept_raw(tmp_path: Path) -> None:
    ds = dataset(StudyDate="not a date", PatientWeight="70")
    data = save(ds, tmp_path / "x.dcm").read_bytes()
    # pydicom refuses to write these, so patch them in: DS 'xx', and Rows (US) with 3 bytes
    data = data.replace(b"DS\x02\x0070", b"DS\x02\x00xx") + b"\x28\x00\x10\x00US\x03\x00abc"
    doc = levels(read_instance_bytes(data))
    assert doc.study["StudyDate"] == "not a date" and doc.study["PatientWeight"] == "xx"
    assert doc.instance["00280010"] == "YWJj" and doc.vrs["00280010"] == "UN"


def test_converted_values_encode_the_same_as_raw_ones(tmp_path: Path) -> None:
    ds = dataset(ImageType=["ORIGINAL", "PRIMARY"], PixelSpacing=["0.25", "0.25"],
                 SpecificCharacterSet=["", "ISO 2022 IR 87"], ReferencedImageSequence=Sequence([Dataset()]))
    ds.PatientName = "Yamada^Tarou=山田^太郎=やまだ^たろう"
    ds.ReferencedImageSequence[0].ReferencedFrameNumber = [1, 2]
    image(ds, 2, 3, 1)
    parsed = read_instance(save(ds, tmp_path / "x.dcm"))
    before = levels(parsed)
    for elem in parsed.dataset.iterall():  # what any consumer of the Dataset API does
        _ = elem.value
    assert levels(parsed) == before


def test_bulk_references_at_the_top_level_and_inside_sequences(tmp_path: Path) -> None:
    item = Dataset()
    item.ICCProfile = bytes(range(256)) * 8
    ds = dataset(OpticalPathSequence=Sequence([item]))
    ds.add_new(0x00291010, "LO", "SIEMENS CSA HEADER")
    ds.add_new(0x00291020, "OB", b"\x07" * 5000)
    ds.add_new(0x00291030, "UT", "x" * 5000)  # text stays inline whatever its size
    path = save(ds, tmp_path / "x.dcm")
    assert read_instance(path).bulk == []
    parsed = read_instance(path, bulk_threshold=1000)
    refs = {ref.tag: ref for ref in parsed.bulk}
    assert set(refs) == {"00291020", "00480105.0.00282000"}
    assert read_bulk(parsed, refs["00291020"]) == b"\x07" * 5000
    assert read_bulk(parsed, refs["00480105.0.00282000"]) == bytes(range(256)) * 8
    assert 0x00291020 not in parsed.dataset
    doc = instance_levels(parsed, {"00291020": "csa", "00480105.0.00282000": "icc"})
    assert doc.instance["00291020"] == {"BulkDataID": "csa", "Length": 5000}
    assert doc.instance["OpticalPathSequence"] == [{"ICCProfile": {"BulkDataID": "icc", "Length": 2048}}]
    assert doc.instance["00291030"] == "x" * 5000
    with pytest.raises(ValueError, match="no id"):
        instance_levels(parsed, {})


def test_frame_index_out_of_range(tmp_path: Path) -> None:
    ds = dataset()
    image(ds, 2, 2, 1)
    parsed = read_instance(save(ds, tmp_path / "x.dcm"))
    with pytest.raises(InvalidInput, match="out of range"):
        read_frame(parsed, 1)
