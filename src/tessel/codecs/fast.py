"""imagecodecs fast paths for lossless streams whose decoding the standards fix exactly.

JPEG lossless (SOF3), JPEG-LS and reversible HTJ2K decode to the same integers in every
conforming decoder, and imagecodecs (libjpeg-turbo, CharLS, OpenJPH) is 3-6x faster here
than pydicom's plugins. What pydicom does after decoding (dtype, sign and unused-bit
corrections) is repeated below rule for rule, citing `pydicom.pixels.decoders.base`.
Each function returns None when a stream falls outside what it has been checked
against, and the caller then uses pydicom itself.
"""

from __future__ import annotations

import struct
from typing import Any, Callable

import imagecodecs
import numpy as np
import numpy.typing as npt
from pydicom.pixels.utils import _get_jpg_parameters, get_j2k_parameters

from tessel.codecs.native import correct_unused_bits, frame_shape, pixel_dtype
from tessel.codecs.syntaxes import (
    HTJ2K_LOSSLESS,
    HTJ2K_LOSSLESS_RPCL,
    JPEG_LOSSLESS,
    JPEG_LOSSLESS_SV1,
    JPEG_LS_LOSSLESS,
)
from tessel.dicom.models import PixelInfo

Array = npt.NDArray[Any]

_SOF3 = 0xC3  # lossless, Huffman; anything else labelled lossless goes to pydicom
_SOF55 = 0xF7  # JPEG-LS
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RSTn: markers without a length


def _jpeg_sof(frame: bytes) -> int | None:
    """The SOFn marker code of a JPEG/JPEG-LS stream, or None if it cannot be found."""
    if frame[:2] != b"\xff\xd8":
        return None
    offset = 2
    while offset + 4 <= len(frame):
        if frame[offset] != 0xFF:
            return None
        code = frame[offset + 1]
        if code == 0xFF:  # fill byte
            offset += 1
            continue
        if code in _STANDALONE:
            offset += 2
            continue
        if (0xC0 <= code <= 0xCF and code not in (0xC4, 0xC8, 0xCC)) or code == _SOF55:  # not DHT/JPG/DAC
            return code
        if code == 0xDA:  # SOS before any SOF
            return None
        offset += 2 + struct.unpack_from(">H", frame, offset + 2)[0]
    return None


def _as_pydicom_dtype(arr: Array, info: PixelInfo) -> Array:
    # pydicom reads the decoded bytes with the Pixel Representation's kind and the
    # container size the plugin reports; same itemsize here, so a view.
    kind = "i" if info.pixel_representation == 1 else "u"
    return arr.view(np.dtype(f"<{kind}{arr.dtype.itemsize}"))


def _sign_correct(arr: Array, precision: int) -> Array:
    # `_apply_sign_correction`: shift the precision's top bit up to the container's and back.
    shift = 8 * arr.dtype.itemsize - precision
    if shift <= 0:
        return arr
    out = np.left_shift(arr, shift)
    np.right_shift(out, shift, out=out)
    return out


def jpeg_lossless(frame: bytes, info: PixelInfo) -> Array | None:
    """SOF3 greyscale frames with libjpeg-turbo; colour is left to pydicom (libjpeg)."""
    if info.samples_per_pixel != 1 or _jpeg_sof(frame) != _SOF3:
        return None
    arr = imagecodecs.jpeg8_decode(frame)
    if arr.shape != frame_shape(info) or arr.dtype.itemsize != pixel_dtype(info).itemsize:
        return None  # pydicom would size this by Bits Allocated; let it decide
    arr = _as_pydicom_dtype(arr, info)
    # JPEG runners use `correct_unused_bits` (base.py `_correct_unused_bits`).
    return correct_unused_bits(arr, info) if info.bits_stored < info.bits_allocated else arr


def jpeg_ls(frame: bytes, info: PixelInfo) -> Array | None:
    """JPEG-LS with CharLS; HP colour transforms (APP8 "mrfx") are left to pydicom."""
    if _jpeg_sof(frame) != _SOF55:
        return None
    params = _get_jpg_parameters(frame)
    if info.samples_per_pixel != 1 and any(app.startswith(b"mrfx") for app in params.get("app", {}).values()):
        return None
    precision = int(params.get("precision", info.bits_stored))
    arr = imagecodecs.jpegls_decode(frame)
    # pylibjpeg sizes JPEG-LS output by the stream's precision and always interleaves.
    if arr.shape != frame_shape(info) or arr.dtype.itemsize != (1 if precision <= 8 else 2):
        return None
    arr = _as_pydicom_dtype(arr, info)
    # JPEG-LS cannot say it is signed: pydicom sign-extends whenever Pixel Representation is 1.
    return _sign_correct(arr, precision) if info.pixel_representation == 1 else arr


def _reversible_single_style(frame: bytes) -> bool:
    """A bare codestream whose COD says 5/3 reversible and that has no COC/QCC overrides."""
    if frame[:4] != b"\xff\x4f\xff\x51":
        return False  # JP2 wrapped or not J2K: OpenJPEG via pydicom handles the odd ones
    offset, reversible = 2, False
    while offset + 4 <= len(frame):
        marker, length = struct.unpack_from(">HH", frame, offset)
        if marker in (0xFF90, 0xFF93):  # SOT / SOD: main header done
            return reversible
        if marker in (0xFF53, 0xFF5D, 0xFF5F):  # COC, QCC, POC
            return False
        if marker == 0xFF52 and offset + 13 < len(frame):
            reversible = frame[offset + 13] == 1  # SPcod wavelet transform: 1 = 5/3
        offset += 2 + length
    return False


def htj2k_lossless(frame: bytes, info: PixelInfo) -> Array | None:
    """Reversible HTJ2K with OpenJPH, corrected the way pydicom corrects OpenJPEG's output."""
    if info.samples_per_pixel != 1 and info.planar_configuration != 0:
        return None  # pydicom reshapes by the header's planar configuration; reproduce via pydicom
    if not _reversible_single_style(frame):
        return None
    params = get_j2k_parameters(frame)
    arr = imagecodecs.htj2k_decode(frame, planar=False)
    precision = int(params.get("precision", info.bits_stored))
    expected_itemsize = 1 if precision <= 8 else 2 if precision <= 16 else 4
    if arr.shape != frame_shape(info) or arr.dtype.itemsize != expected_itemsize:
        return None
    arr = _as_pydicom_dtype(arr, info)
    # Sign correction only for monochrome, and only when stream and header disagree.
    signed = bool(params.get("is_signed", info.pixel_representation))
    if info.photometric_interpretation in ("MONOCHROME1", "MONOCHROME2") and signed != bool(
        info.pixel_representation
    ):
        return _sign_correct(arr, precision)
    return arr


FAST_DECODERS: dict[str, Callable[[bytes, PixelInfo], Array | None]] = {
    JPEG_LOSSLESS: jpeg_lossless,
    JPEG_LOSSLESS_SV1: jpeg_lossless,
    JPEG_LS_LOSSLESS: jpeg_ls,
    HTJ2K_LOSSLESS: htj2k_lossless,
    HTJ2K_LOSSLESS_RPCL: htj2k_lossless,
}
