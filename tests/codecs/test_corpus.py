"""The shared corpus as a reference table: every frame decodes to the CRC32 pydicom gave it.

Driven by `index.json` (`frame_crc32`, made with pydicom's plugins, pylibjpeg first; lossy JPEG,
which tessel decodes with libjpeg-turbo, is checked as `assert_lossy_jpeg_frame` says). The
frames are cut out with pydicom here; that is test scaffolding, the real frame index is
`tessel.dicom`'s. Runs when the corpus is at TESSEL_CORPUS or ../shared/corpus.
"""

from __future__ import annotations

import io
import json
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.encaps import generate_frames

from tessel.codecs import (
    EXPLICIT_VR_LE,
    HTJ2K_LOSSLESS_RPCL,
    J2K_LOSSLESS,
    CodecError,
    decode_frame,
    decode_stored,
    encode_frame,
    frame_checksum,
    is_lossless_syntax,
    storage_plan,
)
from tessel.codecs.syntaxes import Layout, syntax
from tessel.dicom.models import PixelInfo
from tessel.codecs import fast
from tessel.codecs.frames import _decode_with_pydicom
from tests.codecs.test_frames import pillow_decode, read_with_pydicom

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def corpus_dir() -> Path | None:
    root = Path(os.environ.get("TESSEL_CORPUS") or Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus")
    return root if (root / "index.json").is_file() else None


@cache
def index() -> dict[str, dict[str, Any]]:
    root = corpus_dir()
    if root is None:
        return {}
    return {e["path"]: e for e in json.loads((root / "index.json").read_text())["files"]}


def reference_paths() -> list[Any]:
    """Files with frame CRCs: the imports, plus the codec_only streams (rejected only for missing UIDs)."""
    paths = [p for p, e in index().items()
             if e.get("frame_crc32") and (e["expect"] == "import" or e["category"] == "codec_only")]
    if not paths:
        return [pytest.param(None, marks=pytest.mark.skip(reason="shared corpus not found (set TESSEL_CORPUS)"))]
    return sorted(paths)


@dataclass
class Loaded:
    entry: dict[str, Any]
    info: PixelInfo
    frames: list[tuple[bytes, int]]  # (frame bytes, bit offset)


def load(path: str) -> Loaded:
    root = corpus_dir()
    assert root is not None
    entry = index()[path]
    ds = pydicom.dcmread(root / path, force=True)  # codec_only files lack the preamble
    keyword = next(k for k in _PIXEL_KEYWORDS if k in ds)
    ba = int(ds.BitsAllocated)
    info = PixelInfo(
        transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID), rows=int(ds.Rows), columns=int(ds.Columns),
        samples_per_pixel=int(ds.get("SamplesPerPixel") or 1), bits_allocated=ba,
        bits_stored=int(ds.get("BitsStored") or ba), high_bit=int(ds.get("HighBit") or ba - 1),
        pixel_representation=int(ds.get("PixelRepresentation") or 0),
        photometric_interpretation=str(ds.PhotometricInterpretation),
        planar_configuration=int(ds.get("PlanarConfiguration") or 0),
        number_of_frames=int(ds.get("NumberOfFrames") or 1), pixel_keyword=keyword)
    value: bytes = ds[keyword].value
    row = syntax(info.transfer_syntax_uid)
    assert row is not None
    n = info.number_of_frames
    frames: list[tuple[bytes, int]] = []
    if row.layout is Layout.NATIVE:
        if ba == 1:
            bits = info.rows * info.columns * info.samples_per_pixel
            for i in range(n):
                start = i * bits
                frames.append((value[start // 8:(start + bits + 7) // 8], start % 8))
        else:
            length = info.frame_length
            if info.photometric_interpretation == "YBR_FULL_422":
                length = length // 3 * 2
            frames = [(value[i * length:(i + 1) * length], 0) for i in range(n)]
    else:
        frames = [(f, 0) for f in generate_frames(value, number_of_frames=n)]
    return Loaded(entry, info, frames)


pytestmark = pytest.mark.corpus


@pytest.mark.parametrize("path", reference_paths())
def test_frames_decode_to_the_reference_crcs(path: str) -> None:
    ref = load(path)
    entry, info = ref.entry, ref.info
    assert len(ref.frames) == len(entry["frame_crc32"])
    lossless = is_lossless_syntax(info.transfer_syntax_uid)
    for i, (data, bit_offset) in enumerate(ref.frames):
        if not lossless and entry["frame_decoder"] != "pylibjpeg":
            # Lossy decoders differ; only pylibjpeg's CRCs describe what tessel decodes.
            try:
                decode_frame(data, info, bit_offset=bit_offset)
            except CodecError:
                pass
            continue
        arr = decode_frame(data, info, bit_offset=bit_offset)
        assert str(arr.dtype) == entry["frame_dtype"], f"frame {i}"
        assert list(arr.shape) == entry["frame_shape"], f"frame {i}"
        if info.transfer_syntax_uid in _LOSSY_JPEG:
            assert_lossy_jpeg_frame(data, info, arr, entry["frame_crc32"][i])
            continue
        assert frame_checksum(arr) == entry["frame_crc32"][i], f"frame {i}"


_LOSSY_JPEG = ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51")


def assert_lossy_jpeg_frame(data: bytes, info: PixelInfo, arr: Any, crc: int) -> None:
    """tessel decodes lossy JPEG with libjpeg-turbo (codecs.fast.jpeg_lossy), the index's CRCs
    are libjpeg's (pylibjpeg): lossy decoders may round differently. So: pydicom's path, which
    tessel falls back to, still gives the index CRC exactly; tessel's frame is in the same
    colour space and differs from it by rounding only; and it is exactly what Pillow (the
    libjpeg-turbo most clients decode with) gives, where Pillow reads the stream the same way."""
    row = syntax(info.transfer_syntax_uid)
    assert row is not None
    reference = _decode_with_pydicom(data, info, row)
    assert frame_checksum(reference) == crc
    difference = np.abs(arr.astype(int) - reference.astype(int))
    as_rgb = fast.lossy_as_rgb(data, info, row.uid)
    assert difference.max() <= (8 if as_rgb else 2) and difference.mean() < 0.5
    if info.bits_stored != 8:
        return  # Pillow reads 8-bit JPEG only
    image = pytest.importorskip("PIL.Image", reason="Pillow is not installed").open(io.BytesIO(data))
    if info.samples_per_pixel == 1 or "jfif" in image.info:
        assert np.array_equal(arr, pillow_decode(data, as_rgb=as_rgb))


@pytest.mark.parametrize("lossless_format", [HTJ2K_LOSSLESS_RPCL, J2K_LOSSLESS])
@pytest.mark.parametrize("path", reference_paths())
def test_lossless_frames_survive_storage(path: str, lossless_format: str) -> None:
    ref = load(path)
    info = ref.info
    if not is_lossless_syntax(info.transfer_syntax_uid):
        plan = storage_plan(info, lossless_format)
        assert not plan.transcode and plan.stored_transfer_syntax_uid == info.transfer_syntax_uid
        return
    if lossless_format == J2K_LOSSLESS and len(ref.frames) > 3:
        ref.frames = ref.frames[:3]  # OpenJPEG is ~15x slower than OpenJPH; a sample suffices
    plan = storage_plan(info, lossless_format)
    assert plan.transcode
    for i, (data, bit_offset) in enumerate(ref.frames):
        arr = decode_frame(data, info, bit_offset=bit_offset)
        stored = encode_frame(arr, info, plan.stored_transfer_syntax_uid)
        back = decode_stored(stored, info, plan.stored_transfer_syntax_uid)
        assert back.dtype == arr.dtype and back.shape == arr.shape, f"frame {i}"
        assert frame_checksum(back) == ref.entry["frame_crc32"][i], f"frame {i}"


@pytest.mark.parametrize("path", reference_paths())
def test_stored_htj2k_frames_read_back_with_pydicom(path: str) -> None:
    """What a DICOMweb client with pydicom (OpenJPEG) sees equals what tessel verified."""
    ref = load(path)
    info = ref.info
    plan = storage_plan(info)
    if not plan.transcode or plan.stored_transfer_syntax_uid == EXPLICIT_VR_LE:
        return
    data, bit_offset = ref.frames[0]
    arr = decode_frame(data, info, bit_offset=bit_offset)
    stored = encode_frame(arr, info, plan.stored_transfer_syntax_uid)
    theirs = read_with_pydicom(stored, info, plan.stored_transfer_syntax_uid, plan.stored_photometric)
    assert np.array_equal(theirs, arr)


def _entry_or_skip(path: str) -> dict[str, Any]:
    entry = index().get(path)
    if entry is None:
        pytest.skip("shared corpus not found (set TESSEL_CORPUS)")
    return entry


def test_deflated_image_frames_inflate_to_the_uncompressed_seg() -> None:
    _entry_or_skip("transfer_syntax/deflated_image_frame_SEG_liver_deflate.dcm")
    # pydicom cannot decode .8.1, but liver_deflate is liver.dcm deflated frame by frame.
    ref = load("transfer_syntax/deflated_image_frame_SEG_liver_deflate.dcm")
    expected = index()["pixel/bits1_SEG_liver.dcm"]["frame_crc32"]
    got = [frame_checksum(decode_frame(data, ref.info)) for data, _ in ref.frames]
    assert got == expected
    assert storage_plan(ref.info).stored_transfer_syntax_uid == EXPLICIT_VR_LE  # 1-bit


@pytest.mark.parametrize("path", ["transfer_syntax/jpeg_spectral_retired_4.53_CT.dcm",
                                  "transfer_syntax/jpeg_progressive_retired_4.55_CT.dcm"])
def test_retired_jpeg_is_kept_and_decodes_for_previews(path: str) -> None:
    _entry_or_skip(path)
    ref = load(path)
    plan = storage_plan(ref.info)
    assert not plan.transcode and plan.stored_transfer_syntax_uid == ref.info.transfer_syntax_uid
    arr = decode_frame(ref.frames[0][0], ref.info)
    assert arr.dtype == np.uint16 and arr.shape == (ref.info.rows, ref.info.columns)
    assert int(arr.max()) < 1 << ref.info.bits_stored


def test_a_sequential_jpeg_with_invalid_scan_parameters_decodes_with_libjpeg_turbo() -> None:
    """NEMA's NM1_JPLY says Se=0 in the SOS of a sequential (non-progressive) scan. libjpeg
    (pydicom's plugin) refuses it; libjpeg-turbo ignores the field there, as the process
    defines, and gives the whole-body bone scan: now a frame with checksums and a preview."""
    path = "quirks/jpeg_invalid_sos_NM1_JPLY.dcm"
    _entry_or_skip(path)
    ref = load(path)
    row = syntax(ref.info.transfer_syntax_uid)
    assert row is not None
    with pytest.raises(CodecError, match="pylibjpeg: "):
        _decode_with_pydicom(ref.frames[0][0], ref.info, row)
    arr = decode_frame(ref.frames[0][0], ref.info)
    assert arr.dtype == np.uint16 and arr.shape == (1024, 256)
    assert int(arr.max()) < 1 << ref.info.bits_stored
    body, background = arr[100:900, 60:200], np.concatenate([arr[:, :8], arr[:, -8:]])
    assert body.mean() > 5 * max(background.mean(), 1)  # a body on a dark field, not noise or a flat grey
    assert not storage_plan(ref.info).transcode  # lossy: still stored as it came


@pytest.mark.parametrize("path", ["quirks/j2k_corrupt_codestream_embedded_delimiter.dcm"])
def test_undecodable_lossy_frames_raise_codec_error_naming_the_syntax(path: str) -> None:
    _entry_or_skip(path)
    ref = load(path)
    name = syntax(ref.info.transfer_syntax_uid)
    assert name is not None
    with pytest.raises(CodecError, match=re.escape(name.name)):
        decode_frame(ref.frames[0][0], ref.info)
    assert not storage_plan(ref.info).transcode  # lossy: stored as they came, no decode needed
