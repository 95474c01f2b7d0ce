"""Native (uncompressed) frames: bytes <-> arrays, shaped exactly as pydicom shapes them.

This is layout, not a codec: numpy views, byte swaps and bit unpacking. The rules
follow pydicom 3.0 `Decoder._as_array_native` and `_correct_unused_bits`, so a frame
decoded here equals the one `pydicom.pixels.iter_pixels(ds, as_rgb=False)` yields.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import numpy.typing as npt

from tessel.codecs.errors import CodecError
from tessel.dicom.models import PixelInfo

Array = npt.NDArray[Any]

_FLOAT_DTYPES = {"FloatPixelData": "f4", "DoubleFloatPixelData": "f8"}


def pixel_dtype(info: PixelInfo) -> np.dtype[Any]:
    """The little-endian dtype pydicom gives this pixel data (uint8 for 1-bit)."""
    if info.pixel_keyword in _FLOAT_DTYPES:
        return np.dtype("<" + _FLOAT_DTYPES[info.pixel_keyword])
    if info.pixel_keyword != "PixelData":
        raise CodecError(f"unknown pixel keyword {info.pixel_keyword!r}", pixel_keyword=info.pixel_keyword)
    if info.bits_allocated == 1:
        return np.dtype("u1")
    if info.bits_allocated not in (8, 16, 32, 64):
        raise CodecError(
            f"Bits Allocated {info.bits_allocated} is not 1 or 8, 16, 32, 64", bits_allocated=info.bits_allocated
        )
    if info.pixel_representation not in (0, 1):
        raise CodecError(f"Pixel Representation {info.pixel_representation} is not 0 or 1")
    return np.dtype(f"<{'ui'[info.pixel_representation]}{info.bits_allocated // 8}")


def frame_shape(info: PixelInfo) -> tuple[int, ...]:
    """(rows, columns) or (rows, columns, samples): the shape of one decoded frame."""
    if info.samples_per_pixel == 1:
        return (info.rows, info.columns)
    return (info.rows, info.columns, info.samples_per_pixel)


def correct_unused_bits(arr: Array, info: PixelInfo) -> Array:
    """Clear (unsigned) or sign-extend (signed) the bits above Bits Stored, as pydicom does.

    Returns a new array; `arr` may be a read-only view of the source bytes.
    """
    shift = info.bits_allocated - info.bits_stored
    if arr.dtype.kind == "u":
        # Same result as pydicom's shift left then right, in one pass.
        masked: Array = np.bitwise_and(arr, np.array((1 << info.bits_stored) - 1, dtype=arr.dtype))
        return masked
    out = np.left_shift(arr, shift)
    np.right_shift(out, shift, out=out)
    return out


def _needs_bit_correction(info: PixelInfo) -> bool:
    return info.pixel_keyword == "PixelData" and 1 < info.bits_allocated and info.bits_stored < info.bits_allocated


def decode_native(data: bytes | bytearray | memoryview, info: PixelInfo, *, bit_offset: int = 0,
                  big_endian: bool = False) -> Array:
    """One native frame as an array; read-only when it can be a view of `data`."""
    if info.rows < 1 or info.columns < 1 or info.samples_per_pixel < 1:
        raise CodecError(f"frame of {info.rows}x{info.columns}x{info.samples_per_pixel} has no pixels")
    if info.pixel_keyword == "PixelData" and not 1 <= info.bits_stored <= info.bits_allocated:
        raise CodecError(f"Bits Stored {info.bits_stored} is not in 1..{info.bits_allocated} (Bits Allocated)")
    dtype = pixel_dtype(info)
    pixels = info.rows * info.columns * info.samples_per_pixel
    if info.bits_allocated == 1 and info.pixel_keyword == "PixelData":
        if not 0 <= bit_offset < 8:
            raise CodecError(f"bit offset {bit_offset} is not in 0..7")
        needed = (bit_offset + pixels + 7) // 8
        _check_length(data, needed, info)
        bits = np.unpackbits(np.frombuffer(data, dtype="u1", count=needed), bitorder="little")
        return _shape(bits[bit_offset : bit_offset + pixels], info)

    ybr422 = info.photometric_interpretation == "YBR_FULL_422"
    count = pixels // 3 * 2 if ybr422 else pixels  # 4:2:2 stores two samples per pixel (PS3.3 C.7.6.3.1.2)
    _check_length(data, count * dtype.itemsize, info)
    arr: Array = np.frombuffer(data, dtype=dtype.newbyteorder(">") if big_endian else dtype, count=count)
    if big_endian and dtype.itemsize > 1:
        arr = arr.astype(dtype)  # tessel hands out little-endian arrays only
    if ybr422:
        arr = _expand_ybr422(arr)
    if _needs_bit_correction(info):
        arr = correct_unused_bits(arr, info)
    return _shape(arr, info)


def _check_length(data: bytes | bytearray | memoryview, needed: int, info: PixelInfo) -> None:
    if len(data) < needed:
        raise CodecError(
            f"native frame has {len(data)} bytes, {needed} needed for {info.rows}x{info.columns}"
            f"x{info.samples_per_pixel} at {info.bits_allocated} bits",
            transfer_syntax_uid=info.transfer_syntax_uid,
        )


def _expand_ybr422(arr: Array) -> Array:
    # Y1 Y2 Cb Cr -> Y1 Cb Cr Y2 Cb Cr, like pydicom (each chroma pair shared by two pixels).
    out = np.empty(arr.shape[0] // 2 * 3, dtype=arr.dtype)
    out[::6] = arr[::4]
    out[3::6] = arr[1::4]
    out[1::6] = out[4::6] = arr[2::4]
    out[2::6] = out[5::6] = arr[3::4]
    return out


def _shape(flat: Array, info: PixelInfo) -> Array:
    spp = info.samples_per_pixel
    if spp == 1:
        return flat.reshape(info.rows, info.columns)
    if info.planar_configuration == 1:
        # Colour-by-plane becomes colour-by-pixel, as pydicom returns it.
        return np.ascontiguousarray(flat.reshape(spp, info.rows, info.columns).transpose(1, 2, 0))
    return flat.reshape(info.rows, info.columns, spp)


def encode_native(arr: Array, info: PixelInfo) -> bytes:
    """Explicit VR Little Endian bytes of one frame: interleaved, 1-bit packed from bit 0."""
    if info.bits_allocated == 1 and info.pixel_keyword == "PixelData":
        # Same order as pydicom.pixels.pack_bits, without its padding to an even length.
        return np.packbits(np.ascontiguousarray(arr).reshape(-1), bitorder="little").tobytes()
    return np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()


def inflate(data: bytes | bytearray | memoryview, info: PixelInfo) -> bytes:
    """Undo Deflated Image Frame Compression: raw deflate (RFC 1951), or zlib-wrapped as some writers do."""
    try:
        return zlib.decompress(data, -zlib.MAX_WBITS)
    except zlib.error as raw_error:
        try:
            return zlib.decompress(data)
        except zlib.error:
            raise CodecError(
                f"deflated frame could not be inflated: {raw_error}",
                transfer_syntax_uid=info.transfer_syntax_uid,
            ) from raw_error
