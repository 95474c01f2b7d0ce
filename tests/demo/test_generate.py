"""The demo builders write valid, deterministic Part 10 files that read back as built."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from pathlib import Path

import imagecodecs
import numpy as np
import pydicom
import pytest
from pydicom.encaps import generate_frames
from pydicom.uid import (
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    MRImageStorage,
    RLELossless,
    UltrasoundMultiFrameImageStorage,
    VLWholeSlideMicroscopyImageStorage,
)

from tessel.demo import (
    DEMO_PATIENTS,
    Patient,
    generate_demo,
    write_ct_series,
    write_mr_series,
    write_radiograph,
    write_radiograph_set,
    write_us_clip,
    write_wsi_pyramid,
)
from tessel.demo.wsi import srgb_icc_profile
from tessel.errors import InvalidInput, Unsupported

Builder = Callable[[Path, int], list[Path]]

# Small versions of every builder, for the properties they all share.
BUILDERS: dict[str, Builder] = {
    "ct": lambda out, seed: write_ct_series(out, slices=3, size=32, seed=seed),
    "mr": lambda out, seed: write_mr_series(out, slices=3, size=32, seed=seed),
    "dx": lambda out, seed: write_radiograph(out, size=64, seed=seed),
    "us": lambda out, seed: write_us_clip(out, frames=3, rows=64, columns=80, seed=seed),
    "sm": lambda out, seed: write_wsi_pyramid(out, base_width=600, base_height=400, levels=3, seed=seed),
    "set": lambda out, seed: write_radiograph_set(out, count=12, patients=4, size=16, seed=seed),
}


def read(path: Path) -> pydicom.Dataset:
    return pydicom.dcmread(path)


def digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


# -- properties every builder has -------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_every_file_is_part_10_with_matching_file_meta(kind: str, tmp_path: Path) -> None:
    for path in BUILDERS[kind](tmp_path, 0):
        raw = path.read_bytes()
        assert raw[:128] == bytes(128) and raw[128:132] == b"DICM"
        ds = read(path)
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_same_seed_gives_identical_bytes(kind: str, tmp_path: Path) -> None:
    first = BUILDERS[kind](tmp_path / "a", 7)
    second = BUILDERS[kind](tmp_path / "b", 7)
    assert [p.name for p in first] == [p.name for p in second]
    assert digest(first) == digest(second)


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_different_seed_gives_different_uids(kind: str, tmp_path: Path) -> None:
    def uids(paths: list[Path]) -> set[str]:
        found = set()
        for path in paths:
            ds = read(path)
            found |= {ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID}
        return found

    assert not uids(BUILDERS[kind](tmp_path / "a", 0)) & uids(BUILDERS[kind](tmp_path / "b", 1))


# -- CT and MR --------------------------------------------------------------------------------


def test_ct_series_is_one_axial_stack_in_hounsfield_units(tmp_path: Path) -> None:
    paths = write_ct_series(tmp_path, slices=8, size=64, seed=0)
    datasets = [read(p) for p in paths]
    assert len(datasets) == 8
    assert {ds.SOPClassUID for ds in datasets} == {CTImageStorage}
    assert len({ds.StudyInstanceUID for ds in datasets}) == 1
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1
    assert len({ds.SOPInstanceUID for ds in datasets}) == 8
    assert [ds.InstanceNumber for ds in datasets] == list(range(1, 9))
    z = [float(ds.ImagePositionPatient[2]) for ds in datasets]
    steps = np.diff(z)
    assert np.allclose(steps, -float(datasets[0].SliceThickness), atol=1e-3)
    assert all(float(ds.SliceLocation) == float(ds.ImagePositionPatient[2]) for ds in datasets)
    first = datasets[0]
    assert (first.Rows, first.Columns, first.BitsAllocated, first.BitsStored) == (64, 64, 16, 12)
    assert first.RescaleIntercept == -1024 and first.PixelRepresentation == 0
    assert float(first.PixelSpacing[0]) == pytest.approx(400 / 64)
    hu = np.stack([ds.pixel_array.astype(np.int32) + int(ds.RescaleIntercept) for ds in datasets])
    assert hu.shape == (8, 64, 64)
    assert hu.min() <= -950  # air around the patient
    assert hu.max() >= 500  # bone
    assert np.any(np.abs(hu - 40) < 30)  # soft tissue


@pytest.mark.parametrize(
    "syntax", [ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, RLELossless, JPEG2000Lossless]
)
def test_ct_series_in_other_transfer_syntaxes_has_the_same_pixels(syntax: str, tmp_path: Path) -> None:
    native = write_ct_series(tmp_path / "native", slices=2, size=32)
    other = write_ct_series(tmp_path / "other", slices=2, size=32, transfer_syntax=syntax)
    for a, b in zip(native, other, strict=True):
        ds_a, ds_b = read(a), read(b)
        assert ds_b.file_meta.TransferSyntaxUID == syntax
        assert ds_b.SOPInstanceUID == ds_a.SOPInstanceUID  # a transcoded copy, not a new instance
        assert np.array_equal(ds_a.pixel_array, ds_b.pixel_array)


def test_transfer_syntax_without_an_encoder_is_unsupported(tmp_path: Path) -> None:
    with pytest.raises(Unsupported):
        write_ct_series(tmp_path, slices=1, size=16, transfer_syntax=JPEGBaseline8Bit)


def test_mr_series_reads_back_as_mr(tmp_path: Path) -> None:
    paths = write_mr_series(tmp_path, slices=4, size=64, seed=0)
    datasets = [read(p) for p in paths]
    assert {ds.SOPClassUID for ds in datasets} == {MRImageStorage}
    assert {ds.Modality for ds in datasets} == {"MR"}
    assert all(ds.pixel_array.shape == (64, 64) and ds.pixel_array.dtype == np.uint16 for ds in datasets)
    assert max(int(ds.pixel_array.max()) for ds in datasets) > 500
    assert datasets[0].MagneticFieldStrength == 1.5


# -- radiographs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("modality", "sop_class"),
    [("DX", DigitalXRayImageStorageForPresentation), ("CR", ComputedRadiographyImageStorage)],
)
def test_radiograph_is_a_12_bit_chest(modality: str, sop_class: str, tmp_path: Path) -> None:
    (path,) = write_radiograph(tmp_path, size=128, modality=modality)
    ds = read(path)
    assert ds.SOPClassUID == sop_class and ds.Modality == modality
    assert ds.BodyPartExamined == "CHEST" and ds.ViewPosition == "PA"
    pixels = ds.pixel_array
    assert pixels.shape == (128, 128) and (ds.BitsStored, ds.HighBit) == (12, 11)
    assert 0 <= pixels.min() and pixels.max() <= 4095 and pixels.std() > 100


def test_monochrome1_radiograph_stores_the_inverted_picture(tmp_path: Path) -> None:
    (m2,) = write_radiograph(tmp_path / "m2", size=64)
    (m1,) = write_radiograph(tmp_path / "m1", size=64, photometric="MONOCHROME1")
    ds1, ds2 = read(m1), read(m2)
    assert ds1.PhotometricInterpretation == "MONOCHROME1" and ds1.PresentationLUTShape == "INVERSE"
    assert np.array_equal(ds1.pixel_array.astype(int), 4095 - ds2.pixel_array.astype(int))


def test_unknown_radiograph_modality_is_invalid(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        write_radiograph(tmp_path, size=32, modality="MG")


def test_radiograph_set_spreads_instances_over_patients_and_studies(tmp_path: Path) -> None:
    paths = write_radiograph_set(tmp_path, count=90, patients=30, size=16, seed=3)
    datasets = [read(p) for p in paths]
    assert len(datasets) == 90 and len({p.name for p in paths}) == 90
    assert len({ds.PatientID for ds in datasets}) == 30
    studies = {ds.StudyInstanceUID: ds for ds in datasets}
    assert len(studies) > 30  # some patients have several studies
    assert len({ds.AccessionNumber for ds in studies.values()}) == len(studies)
    assert {ds.Modality for ds in datasets} == {"CR", "DX"}
    assert all("20120101" <= ds.StudyDate <= "20241231" for ds in datasets)
    assert len({ds.StudyDate for ds in studies.values()}) > 10
    assert len({str(ds.PatientName) for ds in datasets}) > 15
    assert all(ds.pixel_array.shape == (16, 16) for ds in datasets)


def test_radiograph_set_uses_given_patients(tmp_path: Path) -> None:
    pool = [DEMO_PATIENTS["mr"], DEMO_PATIENTS["dx"], Patient("Doe^Jane", "P-2", "")]
    datasets = [read(p) for p in write_radiograph_set(tmp_path, count=6, patients=pool, size=16)]
    assert [str(ds.PatientName) for ds in datasets[::2]] == [p.name for p in pool]
    assert "SpecificCharacterSet" not in datasets[-1]


def test_generated_patients_span_several_character_sets(tmp_path: Path) -> None:
    datasets = [read(p) for p in write_radiograph_set(tmp_path, count=80, patients=80, size=8)]
    charsets = {str(ds.get("SpecificCharacterSet", "")) for ds in datasets}
    assert len(charsets) >= 3


# -- ultrasound -------------------------------------------------------------------------------


def test_us_clip_is_a_multiframe_rgb_cine(tmp_path: Path) -> None:
    (path,) = write_us_clip(tmp_path, frames=5, rows=96, columns=128)
    ds = read(path)
    assert ds.SOPClassUID == UltrasoundMultiFrameImageStorage
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert (ds.NumberOfFrames, ds.SamplesPerPixel, ds.PhotometricInterpretation) == (5, 3, "RGB")
    assert ds.FrameIncrementPointer == 0x00181063 and float(ds.FrameTime) > 0
    frames = ds.pixel_array
    assert frames.shape == (5, 96, 128, 3) and frames.dtype == np.uint8
    red = frames[..., 0].astype(int) - frames[..., 1].astype(int) > 60
    blue = frames[..., 2].astype(int) - frames[..., 1].astype(int) > 60
    assert red.any() and blue.any()  # the Doppler flow changes direction over the clip
    assert not np.array_equal(frames[0], frames[2])  # it moves


# -- whole-slide pyramid ----------------------------------------------------------------------


def test_wsi_pyramid_levels_are_tiled_full_jpeg(tmp_path: Path) -> None:
    paths = write_wsi_pyramid(tmp_path, base_width=1024, base_height=768, tile=256, levels=3, seed=0)
    datasets = [read(p) for p in paths]
    expected = [(1024, 768, 12), (512, 384, 4), (256, 192, 1)]
    for k, (ds, (width, height, frames)) in enumerate(zip(datasets, expected, strict=True)):
        assert ds.SOPClassUID == VLWholeSlideMicroscopyImageStorage
        assert ds.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
        assert (ds.TotalPixelMatrixColumns, ds.TotalPixelMatrixRows, ds.NumberOfFrames) == (
            width,
            height,
            frames,
        )
        assert (ds.Rows, ds.Columns, ds.DimensionOrganizationType) == (256, 256, "TILED_FULL")
        assert ds.PhotometricInterpretation == "YBR_FULL_422"
        assert list(ds.ImageType) == (
            ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
            if k == 0
            else ["DERIVED", "PRIMARY", "VOLUME", "RESAMPLED"]
        )
        spacing = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
        assert [float(v) for v in spacing] == pytest.approx([0.0005 * 2**k] * 2)
        assert float(ds.ImagedVolumeWidth) == pytest.approx(1024 * 0.0005)
        assert float(ds.LossyImageCompressionRatio) > 2
        assert ds.OpticalPathSequence[0].ICCProfile == srgb_icc_profile()
        assert ds.ContainerIdentifier and ds.SpecimenDescriptionSequence[0].SpecimenUID
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1
    assert len({ds.FrameOfReferenceUID for ds in datasets}) == 1
    assert len({ds.SOPInstanceUID for ds in datasets}) == 3


def test_wsi_tiles_decode_and_the_offset_table_points_at_them(tmp_path: Path) -> None:
    paths = write_wsi_pyramid(tmp_path, base_width=700, base_height=500, tile=256, levels=3, seed=1)
    assert [read(p).NumberOfFrames for p in paths] == [3 * 2, 2 * 1, 1]  # partial edge tiles count
    for path in paths:
        ds = read(path)
        data = ds.PixelData
        tag, element, table_length = struct.unpack_from("<HHI", data, 0)
        assert (tag, element, table_length) == (0xFFFE, 0xE000, 4 * ds.NumberOfFrames)
        offsets = struct.unpack_from(f"<{ds.NumberOfFrames}I", data, 8)
        first = 8 + table_length
        assert all(data[first + o : first + o + 4] == b"\xfe\xff\x00\xe0" for o in offsets)
        frames = list(generate_frames(data, number_of_frames=ds.NumberOfFrames))
        assert len(frames) == ds.NumberOfFrames
        for frame in frames:
            tile = imagecodecs.jpeg8_decode(frame)
            assert tile.shape == (256, 256, 3)
        assert ds.pixel_array.reshape(-1, 256, 256, 3).shape[0] == ds.NumberOfFrames


def test_wsi_looks_like_stained_tissue_on_glass(tmp_path: Path) -> None:
    (path,) = write_wsi_pyramid(tmp_path, base_width=2048, base_height=2048, levels=1, seed=0)
    tiles = np.stack(
        [imagecodecs.jpeg8_decode(f) for f in generate_frames(read(path).PixelData, number_of_frames=64)]
    )
    r, g, b = (tiles[..., c].astype(int) for c in range(3))
    glass = (r > 230) & (g > 230) & (b > 230)
    eosin = (r - g > 40) & (b - g > 20)  # pink
    assert 0.05 < glass.mean() < 0.95 and eosin.mean() > 0.05


def test_wsi_rejects_tiles_that_are_not_a_multiple_of_32(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        write_wsi_pyramid(tmp_path, base_width=512, base_height=512, tile=200, levels=1)


def test_icc_profile_is_well_formed() -> None:
    profile = srgb_icc_profile()
    assert struct.unpack_from(">I", profile)[0] == len(profile) and profile[36:40] == b"acsp"
    count = struct.unpack_from(">I", profile, 128)[0]
    for i in range(count):
        _, offset, size = struct.unpack_from(">4sII", profile, 132 + 12 * i)
        assert offset % 4 == 0 and offset + size <= len(profile)


# -- character sets ---------------------------------------------------------------------------

NAMES = [
    Patient("Müller^Jürgen", "DE", "ISO_IR 100"),
    Patient("Yamada^Tarou=山田^太郎=やまだ^たろう", "JP", ("", "ISO 2022 IR 87")),
    Patient("Hong^Gildong=洪^吉洞=홍^길동", "KR", ("", "ISO 2022 IR 149")),
    Patient("Wang^XiaoDong=王^小東", "CN", "GB18030"),
    Patient("Wang^XiaoDong=王^小東", "CN8", "ISO_IR 192"),
    Patient("Παπαδοπούλου^Ελένη", "GR", "ISO_IR 126"),
    Patient("Иванов^Иван", "RU", "ISO_IR 144"),
]
# How each set's bytes look on disk; ISO 2022 switches in and out with escape sequences.
ON_DISK = {"ISO_IR 100": "latin_1", "GB18030": "gb18030", "ISO_IR 192": "utf-8", "ISO_IR 126": "iso8859_7"}
ON_DISK |= {"ISO_IR 144": "iso8859_5"}
ESCAPES = {"JP": b"\x1b$B", "KR": b"\x1b$)C"}


@pytest.mark.parametrize("patient", NAMES, ids=[p.patient_id for p in NAMES])
def test_names_round_trip_in_their_character_set(patient: Patient, tmp_path: Path) -> None:
    (path,) = write_radiograph(tmp_path, size=16, patient=patient)
    ds = read(path)
    assert str(ds.PatientName) == patient.name
    charset = patient.character_set
    assert ds.SpecificCharacterSet == (list(charset) if isinstance(charset, tuple) else charset)
    raw = path.read_bytes()
    if isinstance(charset, tuple):
        assert ESCAPES[patient.patient_id] in raw
    else:
        assert patient.name.encode(ON_DISK[charset]) in raw


# -- the demo set -----------------------------------------------------------------------------


def test_generate_demo_writes_the_five_kinds(tmp_path: Path) -> None:
    paths = generate_demo(tmp_path)
    datasets = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    by_modality: dict[str, list[pydicom.Dataset]] = {}
    for ds in datasets:
        by_modality.setdefault(ds.Modality, []).append(ds)
    assert {m: len(v) for m, v in by_modality.items()} == {"CT": 64, "MR": 24, "DX": 1, "US": 1, "SM": 4}
    assert sum(ds.NumberOfFrames for ds in by_modality["SM"]) < 500
    names = {str(ds.PatientName) for ds in datasets}
    assert names == {p.name for p in DEMO_PATIENTS.values()}
    assert len({str(ds.get("SpecificCharacterSet")) for ds in datasets}) == 5
    assert all(p.is_relative_to(tmp_path) for p in paths)
