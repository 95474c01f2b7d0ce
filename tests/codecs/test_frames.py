"""Frames without the corpus: pydicom is the oracle for decoding, round trips for storage."""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import replace
from typing import Any, Callable, Iterator, Literal

import imagecodecs
import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.processing import convert_color_space
from pydicom.pixels.utils import iter_pixels, pack_bits
from pydicom.uid import UID

from tessel.codecs import (
    EXPLICIT_VR_LE,
    HTJ2K_LOSSLESS,
    HTJ2K_LOSSLESS_RPCL,
    J2K_LOSSLESS,
    CodecError,
    decode_frame,
    decode_stored,
    encode_frame,
    frame_checksum,
    storage_plan,
)
from tessel.codecs import fast
from tessel.codecs.frames import _decode_with_pydicom
from tessel.codecs.syntaxes import syntax
from tessel.dicom.models import PixelInfo

Array = npt.NDArray[Any]
IVRLE, EVRBE = "1.2.840.10008.1.2", "1.2.840.10008.1.2.2"
rng = np.random.default_rng(20240101)


def info_for(arr: Array, ts: str = EXPLICIT_VR_LE, *, bits_stored: int | None = None,
             photometric: str | None = None, planar: int = 0, frames: int = 1) -> PixelInfo:
    spp = arr.shape[2] if arr.ndim == 3 else 1
    ba = arr.dtype.itemsize * 8
    keyword = {"f": {4: "FloatPixelData", 8: "DoubleFloatPixelData"}}.get(arr.dtype.kind, {}).get(
        arr.dtype.itemsize, "PixelData")
    return PixelInfo(ts, arr.shape[0], arr.shape[1], spp, ba, bits_stored or ba, (bits_stored or ba) - 1,
                     1 if arr.dtype.kind == "i" else 0, photometric or ("RGB" if spp == 3 else "MONOCHROME2"),
                     planar, frames, keyword)


def ct_like(rows: int = 512, columns: int = 512, dtype: str = "<i2") -> Array:
    y, x = np.mgrid[0:rows, 0:columns]
    body = (x - columns / 2) ** 2 + (y - rows / 2) ** 2 < (0.43 * min(rows, columns)) ** 2
    values = 40 + 30 * np.sin(x / 17) * np.cos(y / 23) + rng.normal(0, 12, (rows, columns))
    return np.where(body, values, -1024 if np.dtype(dtype).kind == "i" else 0).astype(dtype)


def full_range(shape: tuple[int, ...], dtype: str) -> Array:
    limits = np.iinfo(dtype)
    return rng.integers(limits.min, limits.max, shape, dtype=dtype, endpoint=True)


# --- native frames against pydicom --------------------------------------------------------

def dataset(info: PixelInfo, pixel_bytes: bytes) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID(info.transfer_syntax_uid)
    ds.Rows, ds.Columns, ds.SamplesPerPixel = info.rows, info.columns, info.samples_per_pixel
    ds.BitsAllocated = info.bits_allocated
    ds.PhotometricInterpretation = info.photometric_interpretation
    if info.samples_per_pixel > 1:
        ds.PlanarConfiguration = info.planar_configuration
    if info.number_of_frames > 1:
        ds.NumberOfFrames = info.number_of_frames
    if info.pixel_keyword == "PixelData":
        ds.BitsStored, ds.HighBit = info.bits_stored, info.high_bit
        ds.PixelRepresentation = info.pixel_representation
    setattr(ds, info.pixel_keyword, pixel_bytes)
    return ds


def native_frames(info: PixelInfo, pixel_bytes: bytes) -> Iterator[tuple[bytes, int]]:
    if info.bits_allocated == 1:
        bits = info.rows * info.columns * info.samples_per_pixel
        for i in range(info.number_of_frames):
            yield pixel_bytes[i * bits // 8:((i + 1) * bits + 7) // 8], i * bits % 8
        return
    length = info.frame_length // 3 * 2 if info.photometric_interpretation == "YBR_FULL_422" else info.frame_length
    for i in range(info.number_of_frames):
        yield pixel_bytes[i * length:(i + 1) * length], 0


def assert_native_like_pydicom(info: PixelInfo, pixel_bytes: bytes) -> None:
    expected = list(iter_pixels(dataset(info, pixel_bytes), as_rgb=False))
    got = [decode_frame(data, info, bit_offset=offset) for data, offset in native_frames(info, pixel_bytes)]
    assert len(got) == len(expected)
    for ours, theirs in zip(got, expected):
        assert ours.dtype == theirs.dtype.newbyteorder("=") and ours.shape == theirs.shape
        assert frame_checksum(ours) == frame_checksum(theirs)
        assert np.array_equal(ours, theirs)


@pytest.mark.parametrize("ts", [IVRLE, EXPLICIT_VR_LE, EVRBE])
@pytest.mark.parametrize(("dtype", "bits_stored"), [
    ("u1", 8), ("u1", 7), ("i1", 5), ("u2", 16), ("u2", 12), ("i2", 16), ("i2", 13), ("u4", 32), ("i4", 24),
])
@pytest.mark.parametrize(("samples", "planar"), [(1, 0), (3, 0), (3, 1)])
def test_native_frames_decode_like_pydicom(ts: str, dtype: str, bits_stored: int, samples: int, planar: int) -> None:
    # Full-range values, so the bits above Bits Stored hold garbage pydicom masks or sign-extends.
    frames = 3
    arr = full_range((frames, 5, 7, samples) if samples > 1 else (frames, 5, 7), dtype)
    info = replace(info_for(arr[0], ts, bits_stored=bits_stored, planar=planar), number_of_frames=frames)
    order: Literal[">", "<"] = ">" if ts == EVRBE else "<"
    stored = np.transpose(arr, (0, 3, 1, 2)) if planar else arr  # colour-by-plane per frame
    assert_native_like_pydicom(info, np.ascontiguousarray(stored).astype(arr.dtype.newbyteorder(order)).tobytes())


@pytest.mark.parametrize(("rows", "columns", "frames"), [(5, 5, 3), (3, 3, 4), (8, 8, 2), (1, 9, 5)])
def test_bit_packed_frames_that_do_not_start_on_a_byte_decode_like_pydicom(rows: int, columns: int,
                                                                          frames: int) -> None:
    bits = rng.integers(0, 2, frames * rows * columns, dtype="u1")
    packed = np.packbits(bits, bitorder="little").tobytes()
    info = PixelInfo(EXPLICIT_VR_LE, rows, columns, 1, 1, 1, 0, 0, "MONOCHROME2", 0, frames)
    assert_native_like_pydicom(info, packed + b"\x00" * (len(packed) % 2))


@pytest.mark.parametrize("dtype", ["<f4", "<f8"])
def test_float_pixel_data_decodes_like_pydicom(dtype: str) -> None:
    arr = rng.normal(0, 1000, (2, 6, 4)).astype(dtype)
    info = replace(info_for(arr[0]), number_of_frames=2)
    assert_native_like_pydicom(info, arr.tobytes())


def test_ybr_full_422_is_upsampled_like_pydicom() -> None:
    info = PixelInfo(EXPLICIT_VR_LE, 4, 6, 3, 8, 8, 7, 0, "YBR_FULL_422", 0, 3)
    pixel_bytes = rng.integers(0, 256, 3 * 4 * 6 * 2, dtype="u1").tobytes()
    assert_native_like_pydicom(replace(info, number_of_frames=1), pixel_bytes[:48])
    # iter_pixels loses track of multi-frame 4:2:2 after frame 1 (it relabels the runner
    # YBR_FULL), so later frames are checked against as_array(index=...).
    ds = dataset(info, pixel_bytes)
    for i, (data, _) in enumerate(native_frames(info, pixel_bytes)):
        options: dict[str, Any] = {"as_rgb": False}
        theirs, _ = get_decoder(EXPLICIT_VR_LE).as_array(ds, index=i, **options)
        assert np.array_equal(decode_frame(data, info), theirs)


def test_native_frames_are_views_when_nothing_needs_changing() -> None:
    arr = ct_like(8, 8)
    frame = decode_frame(arr.tobytes(), info_for(arr))
    assert not frame.flags.writeable and np.array_equal(frame, arr)


def test_trailing_padding_is_ignored_and_short_frames_are_refused() -> None:
    arr = ct_like(3, 3)
    info = info_for(arr)
    assert np.array_equal(decode_frame(arr.tobytes() + b"\x00", info), arr)
    with pytest.raises(CodecError, match="17 bytes, 18 needed"):
        decode_frame(arr.tobytes()[:-1], info)


@pytest.mark.parametrize("wrap", [lambda b: zlib.compress(b)[2:-4], zlib.compress], ids=["raw", "zlib"])
def test_deflated_image_frames_inflate_raw_or_zlib_wrapped(wrap: Any) -> None:
    arr = ct_like(16, 16)
    info = info_for(arr, "1.2.840.10008.1.2.8.1")
    assert np.array_equal(decode_frame(wrap(arr.tobytes()), info), arr)
    with pytest.raises(CodecError, match="could not be inflated"):
        decode_frame(b"not deflate", info)


def test_encapsulated_uncompressed_frames_are_native_bytes() -> None:
    arr = full_range((4, 4, 3), "u1")
    assert np.array_equal(decode_frame(arr.tobytes(), info_for(arr, "1.2.840.10008.1.2.1.98")), arr)


# --- compressed frames: the imagecodecs fast paths equal pydicom's own decoding -----------

def assert_fast_path_matches_pydicom(ts: str, stream: bytes, info: PixelInfo) -> Array:
    row = syntax(ts)
    assert row is not None
    ours = fast.FAST_DECODERS[ts](stream, info)
    assert ours is not None, "the fast path declined a plain stream"
    theirs = _decode_with_pydicom(stream, info, row)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    assert np.array_equal(ours, theirs)
    assert np.array_equal(decode_frame(stream, info), theirs)
    return ours


@pytest.mark.parametrize(("dtype", "bits", "signed_header"), [
    ("u1", 8, 0), ("u2", 12, 0), ("u2", 16, 0), ("u2", 16, 1), ("u2", 12, 1), ("u2", 10, 0),
])
@pytest.mark.parametrize("ts", ["1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"])
def test_jpeg_lossless_fast_path_matches_pydicom(ts: str, dtype: str, bits: int, signed_header: int) -> None:
    arr = rng.integers(0, 1 << bits, (37, 41), dtype=dtype)
    predictor = 1 if ts.endswith(".70") else 5
    stream = bytes(imagecodecs.jpeg8_encode(arr, lossless=True, predictor=predictor, bitspersample=bits))
    info = replace(info_for(arr, ts, bits_stored=bits), pixel_representation=signed_header)
    got = assert_fast_path_matches_pydicom(ts, stream, info)
    if signed_header and bits < 16:
        assert got.min() < 0  # sign-extended from Bits Stored, as pydicom does


@pytest.mark.parametrize(("dtype", "bits", "signed_header"), [
    ("u1", 8, 0), ("u1", 7, 0), ("u2", 12, 0), ("u2", 16, 0), ("u2", 15, 1), ("u2", 16, 1), ("u2", 12, 1),
])
@pytest.mark.parametrize("samples", [1, 3])
def test_jpeg_ls_fast_path_matches_pydicom(dtype: str, bits: int, signed_header: int, samples: int) -> None:
    shape = (23, 31, samples) if samples > 1 else (23, 31)
    arr = rng.integers(0, 1 << bits, shape, dtype=dtype)
    stream = bytes(imagecodecs.jpegls_encode(arr))
    info = replace(info_for(arr, "1.2.840.10008.1.2.4.80", bits_stored=bits), pixel_representation=signed_header)
    assert_fast_path_matches_pydicom("1.2.840.10008.1.2.4.80", stream, info)


@pytest.mark.parametrize(("dtype", "header_signed", "bits_stored"), [
    ("u1", 0, 8), ("u2", 0, 12), ("i2", 1, 16), ("u2", 1, 16), ("i2", 0, 16), ("u4", 0, 16),
])
@pytest.mark.parametrize("ts", [HTJ2K_LOSSLESS, HTJ2K_LOSSLESS_RPCL])
def test_htj2k_fast_path_matches_pydicom(ts: str, dtype: str, header_signed: int, bits_stored: int) -> None:
    arr = full_range((19, 29), dtype) if dtype != "u4" else rng.integers(0, 1 << 16, (19, 29), dtype="u2")
    stream = bytes(imagecodecs.htj2k_encode(arr, reversible=True))
    info = replace(info_for(arr, ts, bits_stored=bits_stored), pixel_representation=header_signed)
    assert_fast_path_matches_pydicom(ts, stream, info)


def test_htj2k_colour_fast_path_matches_pydicom() -> None:
    arr = full_range((16, 24, 3), "u1")
    stream = bytes(imagecodecs.htj2k_encode(arr, reversible=True, rgb=True))
    assert_fast_path_matches_pydicom(HTJ2K_LOSSLESS, stream, info_for(arr, HTJ2K_LOSSLESS, photometric="YBR_RCT"))


def test_lossy_streams_labelled_lossless_go_to_pydicom() -> None:
    # A baseline (SOF0) stream in a JPEG Lossless file: libjpeg-turbo and libjpeg differ by one
    # here and there, and the reference is pydicom's, so the fast path must decline it.
    arr = ct_like(16, 16, "u1")
    stream = bytes(imagecodecs.jpeg8_encode(arr, level=90))
    info = info_for(arr, "1.2.840.10008.1.2.4.70")
    assert fast.jpeg_lossless(stream, info) is None
    row = syntax(info.transfer_syntax_uid)
    assert row is not None
    assert np.array_equal(decode_frame(stream, info), _decode_with_pydicom(stream, info, row))
    irreversible = bytes(imagecodecs.htj2k_encode(arr, level=0.5, reversible=False))
    assert fast.htj2k_lossless(irreversible, info_for(arr, HTJ2K_LOSSLESS)) is None


def smooth_picture(rows: int, columns: int, samples: int, bits: int = 8) -> Array:
    """A photo-like frame (gradients, texture, a little noise): what lossy JPEG is made for."""
    y, x = np.mgrid[0:rows, 0:columns]
    planes = [0.5 + 0.3 * np.sin(x / (7 + 3 * k)) * np.cos(y / (5 + 2 * k)) + rng.normal(0, 0.01, (rows, columns))
              for k in range(samples)]
    arr = np.clip(np.stack(planes, axis=-1), 0, 1) * ((1 << bits) - 1)
    return arr.astype("u1" if bits <= 8 else "<u2").squeeze()


def pillow_decode(stream: bytes, *, as_rgb: bool) -> Array:
    """What a client decoding with Pillow (libjpeg-turbo) gets: RGB, or the YCbCr samples."""
    image_module = pytest.importorskip("PIL.Image", reason="Pillow is not installed")
    image = image_module.open(io.BytesIO(stream))
    if image.mode == "RGB" and not as_rgb:
        image.draft("YCbCr", image.size)  # no colour conversion in libjpeg-turbo
    return np.asarray(image)


# (label, subsampling, encoder colour space, whether pydicom shows it as RGB)
LOSSY_COLOUR = [
    ("YBR_FULL_422", "422", None, False),  # whole-slide tiles: stay YCbCr
    ("YBR_FULL", "444", None, False),
    ("RGB", "420", None, True),  # a JFIF stream labelled RGB: pydicom shows RGB
    ("RGB", "444", "RGB", False),  # component IDs "RGB", Adobe: the samples are RGB already
]


@pytest.mark.parametrize(("photometric", "subsampling", "colorspace", "as_rgb"), LOSSY_COLOUR)
@pytest.mark.parametrize("ts", ["1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"])
def test_lossy_jpeg_colour_frames_decode_in_pydicom_colour_space_with_libjpeg_turbo(
        ts: str, photometric: str, subsampling: str, colorspace: str | None, as_rgb: bool) -> None:
    source = smooth_picture(48, 64, 3)
    kwargs = {"colorspace": colorspace, "outcolorspace": colorspace} if colorspace else {}
    stream = bytes(imagecodecs.jpeg8_encode(source, level=85, subsampling=subsampling, **kwargs))
    info = info_for(source, ts, photometric=photometric)
    row = syntax(ts)
    assert row is not None
    ours = fast.FAST_DECODERS[ts](stream, info)
    assert ours is not None, "the fast path declined a plain stream"
    assert np.array_equal(decode_frame(stream, info), ours)
    theirs = _decode_with_pydicom(stream, info, row)  # pylibjpeg, as tessel decoded before
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    # Same colour space as pydicom; the samples differ at most by the decoders' rounding.
    difference = np.abs(ours.astype(int) - theirs.astype(int))
    assert difference.max() <= (8 if as_rgb else 2) and difference.mean() < 0.5
    # Exactly what Pillow gives (the checksum a client decoding with libjpeg-turbo computes).
    if colorspace is None:
        assert np.array_equal(ours, pillow_decode(stream, as_rgb=as_rgb))
    # And the right colours: RGB frames look like the source, YBR ones like its YCbCr.
    # (A colour-space mix-up is off by tens on average; JPEG at level 85 by a few.)
    expected = source if as_rgb or colorspace == "RGB" else convert_color_space(source, "RGB", "YBR_FULL")
    assert np.abs(ours.astype(int) - expected.astype(int)).mean() < 5


@pytest.mark.parametrize(("bits", "ts"), [(8, "1.2.840.10008.1.2.4.50"), (8, "1.2.840.10008.1.2.4.51"),
                                          (12, "1.2.840.10008.1.2.4.51")])
@pytest.mark.parametrize("bits_allocated_stored", ["as-precision", "wider"])
def test_lossy_jpeg_grey_frames_decode_with_libjpeg_turbo(bits: int, ts: str, bits_allocated_stored: str) -> None:
    source = smooth_picture(40, 56, 1, bits)
    stream = bytes(imagecodecs.jpeg8_encode(source, level=90, bitspersample=bits))
    info = info_for(source, ts, bits_stored=bits)
    row = syntax(ts)
    assert row is not None
    if bits_allocated_stored == "wider" and bits == 8:
        # Bits Allocated 16 for an 8-bit stream: the fast path declines and pydicom decides
        # (it refuses this one, as it did before the fast path).
        info = replace(info, bits_allocated=16)
        assert fast.jpeg_lossy(stream, info) is None
        with pytest.raises(CodecError, match="could not be decoded: pylibjpeg: "):
            decode_frame(stream, info)
        return
    if bits_allocated_stored == "wider":
        info = replace(info, bits_stored=10, high_bit=9)  # pydicom clears the bits above Bits Stored
    ours = fast.jpeg_lossy(stream, info)
    assert ours is not None
    theirs = _decode_with_pydicom(stream, info, row)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    # Rounding differences, counted modulo Bits Stored (1023 and 1024 masked to 10 bits are 1 apart).
    modulus = 1 << info.bits_stored
    difference = np.mod(ours.astype(int) - theirs.astype(int), modulus)
    assert np.minimum(difference, modulus - difference).max() <= 2
    assert int(ours.max()) < modulus
    if bits == 8:
        assert np.array_equal(ours, pillow_decode(stream, as_rgb=False))


def test_lossy_jpeg_the_fast_path_does_not_take_goes_to_pydicom() -> None:
    source = smooth_picture(32, 32, 3)
    stream = bytes(imagecodecs.jpeg8_encode(source, level=85))
    ybr = info_for(source, "1.2.840.10008.1.2.4.50", photometric="YBR_FULL")
    assert fast.jpeg_lossy(stream, replace(ybr, planar_configuration=1)) is None
    grey = np.ascontiguousarray(source[..., 0])
    progressive = bytes(imagecodecs.jpeg8_encode(grey, level=85))
    progressive = progressive.replace(b"\xff\xc0", b"\xff\xc2", 1)  # SOF2 marker, not a baseline process
    assert fast.jpeg_lossy(progressive, info_for(grey, "1.2.840.10008.1.2.4.50")) is None


def test_corrupt_lossy_jpeg_frames_raise_codec_error_naming_the_plugins() -> None:
    source = smooth_picture(32, 32, 3)
    whole = bytes(imagecodecs.jpeg8_encode(source, level=85))
    stream = whole[:whole.index(b"\xff\xc4") + 10]  # cut off inside its first Huffman table
    info = info_for(source, "1.2.840.10008.1.2.4.50", photometric="YBR_FULL_422")
    with pytest.raises(RuntimeError):
        fast.jpeg_lossy(stream, info)  # libjpeg-turbo refuses it; pydicom's plugins then say why
    with pytest.raises(CodecError, match=r"JPEG Baseline \(Process 1\) frame could not be decoded: pylibjpeg: "):
        decode_frame(stream, info)


@pytest.mark.parametrize(("dtype", "bits", "samples"), [("u1", 8, 1), ("u2", 12, 1), ("u2", 16, 1), ("u1", 8, 3)])
def test_jpeg_xl_and_part2_j2k_decode_best_effort_for_previews(dtype: str, bits: int, samples: int) -> None:
    # pydicom has no decoder for these; they are kept as they came, decoded only to be shown.
    shape = (12, 20, samples) if samples > 1 else (12, 20)
    arr = rng.integers(0, 1 << bits, shape, dtype=dtype)
    jxl = bytes(imagecodecs.jpegxl_encode(arr, lossless=True, bitspersample=bits))
    assert np.array_equal(decode_frame(jxl, info_for(arr, "1.2.840.10008.1.2.4.110", bits_stored=bits)), arr)
    j2k = bytes(imagecodecs.jpeg2k_encode(arr, level=0, reversible=True, codecformat="J2K"))
    assert np.array_equal(decode_frame(j2k, info_for(arr, "1.2.840.10008.1.2.4.92", bits_stored=bits)), arr)


def test_rle_frames_decode_with_pydicom() -> None:
    arr = full_range((2, 9, 13, 3), "u2")
    info = replace(info_for(arr[0], "1.2.840.10008.1.2.5"), number_of_frames=2)
    ds = dataset(info, b"")
    ds.compress("1.2.840.10008.1.2.5", arr, encoding_plugin="pydicom")
    frames = list(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=2))
    for frame, expected in zip(frames, arr):
        assert np.array_equal(decode_frame(frame, info), expected)


def test_corrupt_compressed_frames_raise_codec_error_naming_syntax_and_plugins() -> None:
    info = PixelInfo("1.2.840.10008.1.2.4.90", 8, 8, 1, 16, 16, 15, 0, "MONOCHROME2", 0, 1)
    with pytest.raises(CodecError, match=r"JPEG 2000 Lossless frame could not be decoded: pylibjpeg: ") as caught:
        decode_frame(b"\xff\x4f\xff\x51garbage", info)
    assert caught.value.fields["transfer_syntax_uid"] == "1.2.840.10008.1.2.4.90"


@pytest.mark.parametrize(("ts", "message"), [
    ("1.2.3.4", "unknown transfer syntax"),
    ("1.2.840.10008.1.2.4.102", "not decoded one by one"),
    ("1.2.840.10008.1.2.4.94", "not decoded one by one"),
])
def test_frames_that_cannot_be_decoded_raise_codec_error(ts: str, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        decode_frame(b"\x00" * 16, PixelInfo(ts, 2, 2, 1, 8, 8, 7, 0, "MONOCHROME2", 0, 1))


# --- storage: encode, decode back, and what the stored streams look like ------------------

ARRAYS: dict[str, Callable[[], Array]] = {
    "uint8": lambda: ct_like(64, 48, "u1"),
    "uint16-12bit": lambda: rng.integers(0, 4096, (64, 48), dtype="<u2"),
    "uint16-full": lambda: full_range((33, 47), "<u2"),
    "int16-ct": lambda: ct_like(64, 64),
    "int16-full": lambda: full_range((33, 47), "<i2"),
    "int8": lambda: full_range((9, 11), "i1"),
    "rgb8": lambda: full_range((30, 40, 3), "u1"),
    "rgb16": lambda: full_range((30, 40, 3), "<u2"),
    "1x1": lambda: full_range((1, 1), "<u2"),
    "1x7": lambda: full_range((1, 7), "<i2"),
}


@pytest.mark.parametrize("name", list(ARRAYS))
@pytest.mark.parametrize("stored_ts", [HTJ2K_LOSSLESS_RPCL, HTJ2K_LOSSLESS, J2K_LOSSLESS, EXPLICIT_VR_LE])
def test_frames_round_trip_exactly(name: str, stored_ts: str) -> None:
    arr = ARRAYS[name]()
    info = info_for(arr)
    stored = encode_frame(arr, info, stored_ts)
    back = decode_stored(stored, info, stored_ts)
    assert back.dtype == arr.dtype and back.shape == arr.shape
    assert frame_checksum(back) == frame_checksum(arr) and np.array_equal(back, arr)


@pytest.mark.parametrize("photometric", ["YBR_FULL", "YBR_FULL_422"])
@pytest.mark.parametrize("stored_ts", [HTJ2K_LOSSLESS_RPCL, J2K_LOSSLESS, EXPLICIT_VR_LE])
def test_ybr_frames_round_trip_without_a_colour_transform(photometric: str, stored_ts: str) -> None:
    arr = full_range((12, 10, 3), "u1")
    info = info_for(arr, photometric=photometric, planar=1)
    stored = encode_frame(arr, info, stored_ts)
    assert np.array_equal(decode_stored(stored, info, stored_ts), arr)
    if stored_ts != EXPLICIT_VR_LE:
        assert _cod(stored)["mct"] == 0


def test_frames_that_only_ele_can_hold_round_trip_through_their_plan() -> None:
    cases = [
        (rng.integers(0, 2, (5, 5), dtype="u1"), {"bits_allocated": 1, "bits_stored": 1}),
        (rng.normal(0, 1, (4, 6)).astype("<f4"), {}),
        (rng.normal(0, 1, (4, 6)).astype("<f8"), {}),
        (full_range((4, 6), "<u4"), {}),
        (full_range((4, 6, 3), "<u4"), {}),
    ]
    for arr, change in cases:
        info = replace(info_for(arr), **change)  # type: ignore[arg-type]
        plan = storage_plan(info)
        assert plan.stored_transfer_syntax_uid == EXPLICIT_VR_LE
        stored = encode_frame(arr, info, plan.stored_transfer_syntax_uid)
        back = decode_stored(stored, info, plan.stored_transfer_syntax_uid)
        assert back.dtype == arr.dtype and np.array_equal(back, arr)


def test_bit_packed_frames_are_stored_from_bit_zero_like_pack_bits() -> None:
    bits = rng.integers(0, 2, (3, 5), dtype="u1")
    info = PixelInfo(EXPLICIT_VR_LE, 3, 5, 1, 1, 1, 0, 0, "MONOCHROME2", 0, 1)
    assert encode_frame(bits, info, EXPLICIT_VR_LE) == pack_bits(bits, pad=False)


def test_big_endian_and_planar_sources_are_stored_little_endian_interleaved() -> None:
    arr = full_range((4, 5, 3), "<u2")
    info = info_for(arr, EVRBE, planar=1)
    source = np.ascontiguousarray(arr.transpose(2, 0, 1)).astype(">u2").tobytes()
    frame = decode_frame(source, info)
    assert frame.dtype == np.dtype("<u2") and np.array_equal(frame, arr)
    assert encode_frame(frame, info, EXPLICIT_VR_LE) == arr.tobytes()
    assert np.array_equal(decode_stored(arr.tobytes(), info, EXPLICIT_VR_LE), arr)


def test_frames_kept_as_they_came_decode_as_the_source() -> None:
    arr = rng.integers(0, 4096, (16, 16), dtype="<u2")
    stream = bytes(imagecodecs.jpegls_encode(arr))
    info = info_for(arr, "1.2.840.10008.1.2.4.81", bits_stored=12)
    assert np.array_equal(decode_stored(stream, info, "1.2.840.10008.1.2.4.81"), arr)


def test_encoding_checks_shape_and_type() -> None:
    arr = ct_like(8, 8)
    with pytest.raises(CodecError, match="does not match"):
        encode_frame(arr[:4], info_for(arr), HTJ2K_LOSSLESS_RPCL)
    floats = arr.astype("f4")
    with pytest.raises(CodecError, match="cannot hold float32"):
        encode_frame(floats, info_for(floats), HTJ2K_LOSSLESS_RPCL)
    with pytest.raises(CodecError, match="does not encode JPEG Baseline"):
        encode_frame(arr, info_for(arr), "1.2.840.10008.1.2.4.50")
    with pytest.raises(CodecError, match="cannot be stored natively with Bits Allocated 16"):
        encode_frame(arr.astype("u1"), info_for(arr), EXPLICIT_VR_LE)


def test_corrupt_stored_frames_raise_codec_error() -> None:
    arr = ct_like(8, 8)
    stored = encode_frame(arr, info_for(arr), HTJ2K_LOSSLESS_RPCL)
    with pytest.raises(CodecError, match="HTJ2K Lossless RPCL decode failed"):
        decode_stored(stored[: len(stored) // 3], info_for(arr), HTJ2K_LOSSLESS_RPCL)
    with pytest.raises(CodecError, match="decoded to shape"):
        decode_stored(stored, info_for(ct_like(8, 9)), HTJ2K_LOSSLESS_RPCL)


def _markers(stream: bytes) -> list[tuple[int, bytes]]:
    """Main-header marker segments, then one (SOT, segment) per tile-part."""
    out, offset = [], 2
    while offset + 4 <= len(stream):
        marker, length = struct.unpack_from(">HH", stream, offset)
        out.append((marker, stream[offset + 4:offset + 2 + length]))
        if marker == 0xFF90:  # SOT: Psot is the whole tile-part's length
            psot = struct.unpack_from(">I", stream, offset + 6)[0]
            offset += psot
        else:
            offset += 2 + length
        if marker == 0xFFD9:
            break
    return out


def _cod(stream: bytes) -> dict[str, int]:
    body = next(seg for marker, seg in _markers(stream) if marker == 0xFF52)
    return {"progression": body[1], "mct": body[4], "decompositions": body[5], "transform": body[9]}


@pytest.mark.parametrize("stored_ts", [HTJ2K_LOSSLESS_RPCL, HTJ2K_LOSSLESS])
def test_stored_htj2k_is_rpcl_reversible_with_tlm_and_a_tile_part_per_resolution(stored_ts: str) -> None:
    arr = ct_like(64, 64)
    stream = encode_frame(arr, info_for(arr), stored_ts)
    assert stream[:4] == b"\xff\x4f\xff\x51"  # a bare codestream, no JP2 box
    markers = [m for m, _ in _markers(stream)]
    assert 0xFF50 in markers and 0xFF55 in markers  # CAP (Part 15) and TLM
    cod = _cod(stream)
    assert cod == {"progression": 2, "mct": 0, "decompositions": 5, "transform": 1}  # 2 = RPCL, 1 = 5/3
    assert markers.count(0xFF90) == cod["decompositions"] + 1
    siz = next(seg for m, seg in _markers(stream) if m == 0xFF51)
    assert siz[36] == 0x80 | 15  # Ssiz: signed, 16 bits


def test_stored_rgb_uses_the_reversible_colour_transform() -> None:
    arr = full_range((20, 20, 3), "u1")
    for stored_ts in (HTJ2K_LOSSLESS_RPCL, J2K_LOSSLESS):
        assert _cod(encode_frame(arr, info_for(arr), stored_ts))["mct"] == 1


@pytest.mark.parametrize("name", list(ARRAYS))
@pytest.mark.parametrize("stored_ts", [HTJ2K_LOSSLESS_RPCL, J2K_LOSSLESS])
def test_stored_frames_decode_the_same_with_pydicom(name: str, stored_ts: str) -> None:
    arr = ARRAYS[name]()
    info = info_for(arr)
    plan = storage_plan(info, stored_ts)
    stored = encode_frame(arr, info, plan.stored_transfer_syntax_uid)
    theirs = read_with_pydicom(stored, info, plan.stored_transfer_syntax_uid, plan.stored_photometric)
    assert np.array_equal(theirs, arr)


def read_with_pydicom(stored: bytes, info: PixelInfo, stored_ts: str, photometric: str) -> Array:
    """What a client decoding the stored frame with pydicom (OpenJPEG) gets."""
    options: dict[str, Any] = {
        "rows": info.rows, "columns": info.columns, "samples_per_pixel": info.samples_per_pixel,
        "bits_allocated": info.bits_allocated, "bits_stored": info.bits_stored,
        "pixel_representation": info.pixel_representation, "photometric_interpretation": photometric,
        "planar_configuration": 0, "number_of_frames": 1, "as_rgb": False,
    }
    arr, _ = get_decoder(stored_ts).as_array(encapsulate([stored]), decoding_plugin="pylibjpeg", **options)
    return arr


# --- checksums -----------------------------------------------------------------------------

def test_checksum_is_the_crc32_of_little_endian_c_order_bytes() -> None:
    arr = full_range((6, 5, 3), "<i2")
    expected = zlib.crc32(arr.tobytes())
    assert frame_checksum(arr) == expected
    assert frame_checksum(arr.astype(">i2")) == expected
    assert frame_checksum(np.asfortranarray(arr)) == expected
    assert frame_checksum(np.full((2, 2), 255, "u1")) == zlib.crc32(b"\xff" * 4) > 2**31  # unsigned


# A fresh process whose frame threads all start encoding HTJ2K at once: OpenJPH's unguarded
# first-use set-up wrote a corrupt stream in 2 to 3 such processes in 100 before the module
# warmed it up at import, so 30 of them find that regression about half the time (the cost
# of each is its imports). Each child prints how many of its 8 frames failed the round trip.
_FIRST_USE_RACE = """
import threading, sys
import numpy as np
from tessel.codecs import HTJ2K_LOSSLESS_RPCL, decode_stored, encode_frame, frame_checksum
from tessel.dicom.models import PixelInfo
info = PixelInfo("1.2.840.10008.1.2.1", 32, 32, 1, 16, 12, 11, 0, "MONOCHROME2", 0, 1)
frames = [np.random.default_rng(seed).integers(0, 4096, (32, 32), dtype=np.uint16) for seed in range(8)]
start, failed = threading.Barrier(len(frames)), []
def round_trip(frame):
    start.wait()
    try:
        ok = frame_checksum(decode_stored(encode_frame(frame, info, HTJ2K_LOSSLESS_RPCL), info,
                                          HTJ2K_LOSSLESS_RPCL)) == frame_checksum(frame)
    except Exception:
        ok = False
    if not ok:
        failed.append(1)
threads = [threading.Thread(target=round_trip, args=(f,)) for f in frames]
[t.start() for t in threads]
[t.join() for t in threads]
print(len(failed))
"""


def test_fresh_processes_encode_htj2k_on_many_threads_at_once_without_corruption() -> None:
    import subprocess
    import sys

    children = [subprocess.Popen([sys.executable, "-c", _FIRST_USE_RACE], stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, text=True) for _ in range(30)]
    failures = [int(child.communicate(timeout=120)[0]) for child in children]
    assert sum(failures) == 0, failures
