"""The syntax table and the storage plan: which frames are transcoded, to what, labelled how."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tessel.codecs import (
    EXPLICIT_VR_LE,
    HTJ2K_LOSSLESS,
    HTJ2K_LOSSLESS_RPCL,
    J2K_LOSSLESS,
    CodecError,
    StoragePlan,
    is_known_syntax,
    is_lossless_syntax,
    media_type,
    storage_plan,
)
from tessel.dicom.models import PixelInfo
from tessel.errors import InvalidInput

CT = PixelInfo(EXPLICIT_VR_LE, 512, 512, 1, 16, 12, 11, 0, "MONOCHROME2", 0, 1)
RGB = PixelInfo(EXPLICIT_VR_LE, 64, 64, 3, 8, 8, 7, 0, "RGB", 0, 1)


def test_the_public_constants_are_the_dicom_uids() -> None:
    assert HTJ2K_LOSSLESS_RPCL == "1.2.840.10008.1.2.4.202"
    assert HTJ2K_LOSSLESS == "1.2.840.10008.1.2.4.201"
    assert J2K_LOSSLESS == "1.2.840.10008.1.2.4.90"
    assert EXPLICIT_VR_LE == "1.2.840.10008.1.2.1"


@pytest.mark.parametrize(("uid", "expected"), [
    ("1.2.840.10008.1.2.1", "application/octet-stream"),
    ("1.2.840.10008.1.2.4.50", "image/jpeg"),
    ("1.2.840.10008.1.2.4.51", "image/jpeg"),
    ("1.2.840.10008.1.2.4.57", "image/jpeg"),
    ("1.2.840.10008.1.2.4.70", "image/jpeg"),
    ("1.2.840.10008.1.2.4.80", "image/jls"),
    ("1.2.840.10008.1.2.4.81", "image/jls"),
    ("1.2.840.10008.1.2.4.90", "image/j2c"),
    ("1.2.840.10008.1.2.4.91", "image/j2c"),
    ("1.2.840.10008.1.2.4.201", "image/jphc"),
    ("1.2.840.10008.1.2.4.202", "image/jphc"),
    ("1.2.840.10008.1.2.4.203", "image/jphc"),
    ("1.2.840.10008.1.2.4.112", "image/jxl"),
    ("1.2.840.10008.1.2.5", "image/dicom-rle"),
    ("1.2.840.10008.1.2.4.100", "video/mpeg"),
    ("1.2.840.10008.1.2.4.102", "video/mp4"),
    ("1.2.840.10008.1.2.4.107", "video/H265"),
    ("1.2.3.4.5", "application/octet-stream"),
])
def test_media_types_follow_the_dicomweb_table(uid: str, expected: str) -> None:
    assert media_type(uid) == expected


@pytest.mark.parametrize("uid", [
    "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.8.1", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.92", "1.2.840.10008.1.2.4.201",
    "1.2.840.10008.1.2.4.202",
])
def test_lossless_syntaxes_are_known_and_lossless(uid: str) -> None:
    assert is_known_syntax(uid) and is_lossless_syntax(uid)


@pytest.mark.parametrize("uid", [
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.53", "1.2.840.10008.1.2.4.55",
    "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.203", "1.2.840.10008.1.2.4.112",
    "1.2.840.10008.1.2.4.102", "1.2.840.10008.1.2.4.107",
])
def test_lossy_syntaxes_are_known_and_not_lossless(uid: str) -> None:
    assert is_known_syntax(uid) and not is_lossless_syntax(uid)


def test_unknown_syntaxes_are_neither_known_nor_lossless() -> None:
    assert not is_known_syntax("1.2.840.113619.5.2") and not is_lossless_syntax("1.2.840.113619.5.2")


def test_padded_uids_are_recognised() -> None:
    assert is_known_syntax("1.2.840.10008.1.2.4.90\x00") and media_type("1.2.840.10008.1.2.4.90 ") == "image/j2c"


@pytest.mark.parametrize("source", [
    "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.8.1", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202",
])
def test_lossless_monochrome_is_transcoded_to_htj2k_rpcl(source: str) -> None:
    plan = storage_plan(replace(CT, transfer_syntax_uid=source))
    assert plan == StoragePlan(HTJ2K_LOSSLESS_RPCL, True, "MONOCHROME2")


def test_the_lossless_format_can_be_j2k_instead() -> None:
    assert storage_plan(CT, J2K_LOSSLESS) == StoragePlan(J2K_LOSSLESS, True, "MONOCHROME2")


@pytest.mark.parametrize("source", [
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.53", "1.2.840.10008.1.2.4.55",
    "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.203", "1.2.840.10008.1.2.4.112",
    "1.2.840.10008.1.2.4.102.1", "1.2.840.10008.1.2.4.108",
])
def test_lossy_frames_are_stored_as_they_came(source: str) -> None:
    plan = storage_plan(replace(RGB, transfer_syntax_uid=source, photometric_interpretation="YBR_FULL_422"))
    assert plan == StoragePlan(source, False, "YBR_FULL_422")


@pytest.mark.parametrize("source", ["1.2.840.10008.1.2.4.92", "1.2.840.10008.1.2.4.110"])
def test_lossless_syntaxes_without_a_pydicom_decoder_are_kept_not_transcoded(source: str) -> None:
    assert storage_plan(replace(CT, transfer_syntax_uid=source)) == StoragePlan(source, False, "MONOCHROME2")


@pytest.mark.parametrize("photometric", ["RGB", "YBR_RCT"])
def test_rgb_is_stored_with_the_reversible_colour_transform(photometric: str) -> None:
    info = replace(RGB, photometric_interpretation=photometric, transfer_syntax_uid="1.2.840.10008.1.2.4.90")
    assert storage_plan(info) == StoragePlan(HTJ2K_LOSSLESS_RPCL, True, "YBR_RCT")
    assert storage_plan(info, J2K_LOSSLESS) == StoragePlan(J2K_LOSSLESS, True, "YBR_RCT")


@pytest.mark.parametrize("photometric", ["YBR_FULL", "YBR_FULL_422"])
def test_ybr_full_is_stored_untransformed_at_full_resolution(photometric: str) -> None:
    info = replace(RGB, photometric_interpretation=photometric, planar_configuration=1)
    assert storage_plan(info) == StoragePlan(HTJ2K_LOSSLESS_RPCL, True, "YBR_FULL")
    assert storage_plan(info, EXPLICIT_VR_LE) == StoragePlan(EXPLICIT_VR_LE, True, "YBR_FULL")


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2", "PALETTE COLOR"])
def test_monochrome_and_palette_keep_their_photometric(photometric: str) -> None:
    info = replace(CT, photometric_interpretation=photometric, bits_allocated=8, bits_stored=8)
    assert storage_plan(info).stored_photometric == photometric


@pytest.mark.parametrize(("change", "why"), [
    ({"bits_allocated": 1, "bits_stored": 1}, "1-bit"),
    ({"pixel_keyword": "FloatPixelData", "bits_allocated": 32}, "float"),
    ({"pixel_keyword": "DoubleFloatPixelData", "bits_allocated": 64}, "double"),
    ({"bits_allocated": 32, "bits_stored": 32}, "32-bit: OpenJPEG cannot read OpenJPH's 32-bit HTJ2K"),
    ({"bits_allocated": 32, "bits_stored": 16}, "32-bit container"),
])
def test_frames_htj2k_cannot_carry_are_stored_as_native_ele(change: dict[str, object], why: str) -> None:
    info = replace(CT, **change)  # type: ignore[arg-type]
    for fmt in (HTJ2K_LOSSLESS_RPCL, J2K_LOSSLESS):
        assert storage_plan(info, fmt) == StoragePlan(EXPLICIT_VR_LE, True, "MONOCHROME2"), why


def test_rgb_that_falls_back_to_ele_is_labelled_rgb() -> None:
    info = replace(RGB, bits_allocated=32, bits_stored=32, photometric_interpretation="YBR_RCT",
                   transfer_syntax_uid="1.2.840.10008.1.2.4.90")
    assert storage_plan(info) == StoragePlan(EXPLICIT_VR_LE, True, "RGB")


def test_unknown_source_syntax_is_a_codec_error() -> None:
    with pytest.raises(CodecError, match="unknown transfer syntax 1.2.3"):
        storage_plan(replace(CT, transfer_syntax_uid="1.2.3"))


def test_a_lossy_storage_format_is_refused() -> None:
    with pytest.raises(CodecError, match="not a lossless storage format"):
        storage_plan(CT, "1.2.840.10008.1.2.4.50")


def test_codec_errors_are_invalid_input() -> None:
    assert issubclass(CodecError, InvalidInput)
