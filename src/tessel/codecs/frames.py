"""Decode, encode and verify one frame at a time.

`decode_frame` gives what `pydicom.pixels.iter_pixels(ds, as_rgb=False)` gives for that
frame. Native layouts are handled in `native`; lossless JPEG, JPEG-LS and HTJ2K streams
take the exact imagecodecs paths in `fast`; everything else goes through pydicom's own
decoder machinery (pylibjpeg first, as the corpus CRCs were made), so quirks such as J2K
signedness or precision that disagree with the header are corrected the same way. Two
refinements for lossy frames, which are only decoded to be shown: a JFIF stream labelled
RGB comes out as RGB (pydicom's default), not as the YCbCr samples it holds; and lossy
JPEG (baseline, extended) is decoded by libjpeg-turbo (`fast.jpeg_lossy`), whose samples
may differ from libjpeg's by a rounding step, as lossy decoders may.

Frames tessel writes itself (HTJ2K, J2K, native ELE) are encoded and decoded with
imagecodecs directly: that is the path every ingested frame takes (decode, encode, verify).

>>> import numpy as np
>>> from tessel.dicom.models import PixelInfo
>>> info = PixelInfo("1.2.840.10008.1.2.1", 2, 3, 1, 16, 16, 15, 1, "MONOCHROME2", 0, 1)
>>> frame = decode_frame(np.arange(-3, 3, dtype="<i2").tobytes(), info)
>>> frame.tolist()
[[-3, -2, -1], [0, 1, 2]]
>>> stored = encode_frame(frame, info, HTJ2K_LOSSLESS_RPCL)
>>> frame_checksum(decode_stored(stored, info, HTJ2K_LOSSLESS_RPCL)) == frame_checksum(frame)
True
"""

from __future__ import annotations

import zlib
from dataclasses import replace
from typing import Any, Callable

import imagecodecs
import numpy as np
import numpy.typing as npt
from pydicom.encaps import encapsulate
from pydicom.pixels.decoders.base import get_decoder

from tessel.codecs.errors import CodecError
from tessel.codecs.fast import FAST_DECODERS, YBR_FULL, conformed_photometric
from tessel.codecs.native import (
    correct_unused_bits,
    decode_native,
    encode_native,
    frame_shape,
    inflate,
    pixel_dtype,
)
from tessel.codecs.plan import uses_rct
from tessel.codecs.syntaxes import (
    EXPLICIT_VR_BE,
    EXPLICIT_VR_LE,
    HTJ2K_LOSSLESS,
    HTJ2K_LOSSLESS_RPCL,
    J2K_LOSSLESS,
    J2K_MC,
    J2K_MC_LOSSLESS,
    JPEG_PROGRESSIVE,
    JPEG_SPECTRAL,
    JPEG_XL,
    JPEG_XL_JPEG_RECOMPRESSION,
    JPEG_XL_LOSSLESS,
    Layout,
    TransferSyntax,
    syntax,
)
from tessel.dicom.models import PixelInfo

Array = npt.NDArray[Any]
Buffer = bytes | bytearray | memoryview

# pylibjpeg first: the reference CRCs were made with it, and for lossy JPEG the
# decoders differ (libjpeg vs GDCM); the others are fallbacks for streams it refuses
# (lossy JPEG reaches pydicom only when the libjpeg-turbo fast path declined or failed).
_PLUGIN_ORDER = ("pylibjpeg", "gdcm", "pydicom")

# Five wavelet decompositions: six resolutions to serve thumbnails from (OpenJPH's default).
_DECOMPOSITIONS = 5

_HTJ2K_STORED = frozenset({HTJ2K_LOSSLESS, HTJ2K_LOSSLESS_RPCL})

# Syntaxes pydicom cannot decode; imagecodecs gives a best-effort picture. They are never
# transcoded (see syntaxes.TRANSCODABLE), so nothing is lost if a quirk slips through.
_BEST_EFFORT: dict[str, Callable[..., Array]] = {
    J2K_MC_LOSSLESS: imagecodecs.jpeg2k_decode,
    J2K_MC: imagecodecs.jpeg2k_decode,
    JPEG_XL_LOSSLESS: imagecodecs.jpegxl_decode,
    JPEG_XL_JPEG_RECOMPRESSION: imagecodecs.jpegxl_decode,
    JPEG_XL: imagecodecs.jpegxl_decode,
}

# Retired JPEG processes pydicom cannot decode: libjpeg-turbo can, for previews. Colour
# frames are refused, since which colour space libjpeg-turbo returns is not pydicom's rule.
_RETIRED_JPEG = frozenset({JPEG_SPECTRAL, JPEG_PROGRESSIVE})


def _warm_up_openjph() -> None:
    """OpenJPH sets up its block encoder on first use without a lock: frame threads that
    start encoding at the same moment in a fresh process can write a corrupt stream (3 fresh
    processes in 100 with 8 threads, measured; the stream then fails to decode, an error
    imagecodecs only prints). One encode and decode while the module is imported, before any
    thread can reach the codec, does that set-up first (0 in 200 with it)."""
    probe = np.arange(64, dtype=np.uint16).reshape(8, 8)
    imagecodecs.htj2k_decode(imagecodecs.htj2k_encode(probe, reversible=True, resolutions=1))


_warm_up_openjph()


def decode_frame(data: Buffer, info: PixelInfo, *, bit_offset: int = 0) -> Array:
    """One frame of `info.transfer_syntax_uid` as pydicom would give it (may be a read-only view)."""
    row = _row(info.transfer_syntax_uid)
    if row.layout is Layout.NATIVE:
        return decode_native(data, info, bit_offset=bit_offset, big_endian=row.uid == EXPLICIT_VR_BE)
    if row.layout is Layout.ENCAPSULATED_NATIVE:
        return decode_native(data, info)
    if row.layout is Layout.DEFLATED_FRAME:
        return decode_native(inflate(data, info), info)
    if row.layout is not Layout.COMPRESSED:
        raise CodecError(f"{row.name} frames are not decoded one by one", transfer_syntax_uid=row.uid)
    if info.pixel_keyword != "PixelData":
        raise CodecError(f"{info.pixel_keyword} cannot be encapsulated", transfer_syntax_uid=row.uid)
    if row.uid in _RETIRED_JPEG:
        return _decode_retired_jpeg(data, info, row)
    best_effort = _BEST_EFFORT.get(row.uid)
    if best_effort is not None:
        return _checked(_call(best_effort, row, "decode", bytes(data)), info, row)
    fast = FAST_DECODERS.get(row.uid)
    if fast is not None:
        frame = bytes(data)
        try:
            arr = fast(frame, info)
        except (RuntimeError, ValueError):
            arr = None  # imagecodecs refused the stream; pydicom's plugins may still take it
        if arr is not None:
            return arr
    return _decode_with_pydicom(data, info, row)


def encode_frame(arr: Array, info: PixelInfo, stored_transfer_syntax_uid: str) -> bytes:
    """The stored bytes of one decoded frame: HTJ2K/J2K lossless or native Explicit VR LE."""
    row = _row(stored_transfer_syntax_uid)
    if arr.shape != frame_shape(info):
        raise CodecError(
            f"frame of shape {arr.shape} does not match {frame_shape(info)} from the header",
            transfer_syntax_uid=row.uid,
        )
    if row.uid == EXPLICIT_VR_LE:
        if arr.dtype.itemsize != pixel_dtype(info).itemsize:
            # A J2K stream of lower precision than Bits Allocated decodes to a smaller dtype.
            raise CodecError(
                f"{arr.dtype} frame cannot be stored natively with Bits Allocated {info.bits_allocated}",
                transfer_syntax_uid=row.uid,
            )
        return encode_native(arr, info)
    if row.uid not in _HTJ2K_STORED and row.uid != J2K_LOSSLESS:
        raise CodecError(f"tessel does not encode {row.name}", transfer_syntax_uid=row.uid)
    if arr.dtype.kind not in "ui" or arr.dtype.itemsize > 4:
        raise CodecError(f"{row.name} cannot hold {arr.dtype} pixels losslessly", transfer_syntax_uid=row.uid)
    rct = uses_rct(info)
    if row.uid == J2K_LOSSLESS:
        encoded = _call(
            imagecodecs.jpeg2k_encode, row, "encode", arr,
            codecformat=imagecodecs.JPEG2K.CODEC.J2K,  # a bare codestream, as PS3.5 A.4.4 requires
            reversible=True, mct=rct, planar=False, resolutions=_DECOMPOSITIONS + 1,
        )
    else:
        # OpenJPH writes RPCL order by default; TLM plus one tile-part per resolution let a
        # client read a lower resolution from a prefix of the stream (.4.202).
        encoded = _call(
            imagecodecs.htj2k_encode, row, "encode", arr,
            reversible=True, rgb=rct, planar=False, resolutions=_DECOMPOSITIONS,
            tlm=True, tilepart=imagecodecs.HTJ2K.TILEPART.RESOLUTIONS,
        )
    return bytes(encoded)


def decode_stored(data: Buffer, info: PixelInfo, stored_transfer_syntax_uid: str) -> Array:
    """Decode stored bytes back to the array `decode_frame` gave (RCT undone, so RGB again)."""
    row = _row(stored_transfer_syntax_uid)
    if row.uid == EXPLICIT_VR_LE:
        stored = replace(
            info,
            transfer_syntax_uid=EXPLICIT_VR_LE,
            planar_configuration=0,
            photometric_interpretation=(
                "YBR_FULL" if info.photometric_interpretation == "YBR_FULL_422" else info.photometric_interpretation
            ),
        )
        return decode_native(data, stored)
    if row.uid in _HTJ2K_STORED:
        # planar=False: OpenJPH reports 3-sample streams without a colour transform as planar.
        return _checked(_call(imagecodecs.htj2k_decode, row, "decode", data, planar=False), info, row)
    if row.uid == J2K_LOSSLESS:
        return _checked(_call(imagecodecs.jpeg2k_decode, row, "decode", data, planar=False), info, row)
    # Kept as it came (lossy, or lossless without an exact decoder): decode as the source.
    return decode_frame(data, replace(info, transfer_syntax_uid=row.uid))


def frame_checksum(arr: Array) -> int:
    """zlib.crc32 of the frame's C-order little-endian bytes, as the corpus index records them."""
    # No copy for a contiguous little-endian array: crc32 reads the array's own buffer.
    a = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
    return _crc32(a.reshape(-1).view(np.uint8).data) & 0xFFFFFFFF


# libdeflate's CRC-32 (the same IEEE/zlib polynomial) runs 4x faster than zlib's; every
# ingested frame is checksummed twice (source and re-encoded), so it shows in import speed.
_crc32: Callable[[Any], int] = imagecodecs.deflate_crc32 if imagecodecs.DEFLATE.available else zlib.crc32


def _row(uid: str) -> TransferSyntax:
    row = syntax(uid)
    if row is None:
        raise CodecError(f"unknown transfer syntax {uid}", transfer_syntax_uid=uid)
    return row


def _call(func: Callable[..., Any], row: TransferSyntax, step: str, *args: Any, **kwargs: Any) -> Any:
    try:
        return func(*args, **kwargs)
    except (RuntimeError, ValueError, TypeError) as exc:  # imagecodecs' errors derive from these
        raise CodecError(
            f"{row.name} {step} failed: {exc}", transfer_syntax_uid=row.uid, cause=type(exc).__name__
        ) from exc


def _checked(arr: Array, info: PixelInfo, row: TransferSyntax) -> Array:
    if arr.shape != frame_shape(info):
        raise CodecError(
            f"{row.name} frame decoded to shape {arr.shape}, the header says {frame_shape(info)}",
            transfer_syntax_uid=row.uid,
        )
    return arr


def _decode_retired_jpeg(data: Buffer, info: PixelInfo, row: TransferSyntax) -> Array:
    if info.samples_per_pixel != 1:
        raise CodecError(f"{row.name} colour frames are not decoded here", transfer_syntax_uid=row.uid)
    arr = _checked(_call(imagecodecs.jpeg8_decode, row, "decode", bytes(data)), info, row)
    dtype = pixel_dtype(info)
    # As pydicom treats other JPEG: the samples in the header's dtype, bits above Bits Stored fixed.
    arr = arr.view(dtype) if arr.dtype.itemsize == dtype.itemsize else arr.astype(dtype)
    return correct_unused_bits(arr, info) if info.bits_stored < info.bits_allocated else arr


def _decode_with_pydicom(data: Buffer, info: PixelInfo, row: TransferSyntax) -> Array:
    try:
        decoder = get_decoder(row.uid)
    except NotImplementedError as exc:
        raise CodecError(f"pydicom has no decoder for {row.name}", transfer_syntax_uid=row.uid) from exc
    available = decoder.available_plugins
    plugins = [p for p in _PLUGIN_ORDER if p in available] + [p for p in available if p not in _PLUGIN_ORDER]
    if not plugins:
        missing = "; ".join(decoder.missing_dependencies)
        raise CodecError(f"no {row.name} decoder is installed ({missing})", transfer_syntax_uid=row.uid)
    # One frame, wrapped as a one-frame Pixel Data value, so pydicom's runner treats it
    # exactly as it treats a frame of a file (plugin options, sign and colour handling).
    frame = bytes(data)
    src = encapsulate([frame], has_bot=False)
    photometric = conformed_photometric(frame, info, row.uid)
    options: dict[str, Any] = {
        "rows": info.rows,
        "columns": info.columns,
        "samples_per_pixel": info.samples_per_pixel,
        "bits_allocated": info.bits_allocated,
        "bits_stored": info.bits_stored,
        "pixel_representation": info.pixel_representation,
        "photometric_interpretation": photometric,
        "planar_configuration": info.planar_configuration,
        "number_of_frames": 1,
        # Lossless: the stored samples, whatever the label. Lossy (kept as is, decoded only
        # to be shown): pydicom's default, which turns a JFIF stream labelled RGB into RGB;
        # frames labelled YBR_FULL(_422) stay in that colour space either way (fast.lossy_as_rgb).
        "as_rgb": not row.lossless and info.photometric_interpretation not in YBR_FULL,
    }
    failures = []
    for plugin in plugins:
        try:
            arr, _ = next(decoder.iter_array(src, validate=False, decoding_plugin=plugin, **options))
        except Exception as exc:  # plugins raise their libraries' own types; all are reported below
            # pydicom wraps each plugin's message in "Unable to decode ... plugins:\n  name: ..."
            failures.append(f"{plugin}: {str(exc).rsplit(f'{plugin}: ', 1)[-1]}")
            continue
        return _checked(arr, info, row)
    raise CodecError(
        f"{row.name} frame could not be decoded: {' | '.join(failures)}", transfer_syntax_uid=row.uid
    )
