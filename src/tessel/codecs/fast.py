"""imagecodecs fast paths: 3-6x faster than pydicom's plugins, and off the GIL.

JPEG lossless (SOF3), JPEG-LS and reversible HTJ2K decode to the same integers in every
conforming decoder, and imagecodecs (libjpeg-turbo, CharLS, OpenJPH) gives them exactly.
Lossy JPEG (baseline and extended, the tiles of most whole-slide images) is decoded with
libjpeg-turbo too: see `jpeg_lossy` for why its pixels, not libjpeg's, are tessel's.
What pydicom does after decoding (dtype, sign, unused-bit and colour corrections) is
repeated below rule for rule, citing `pydicom.pixels.decoders.base`. Each function
returns None when a stream falls outside what it has been checked against, and the
caller then uses pydicom itself.
"""

from __future__ import annotations

import struct
from typing import Any, Callable

import imagecodecs
import numpy as np
import numpy.typing as npt
from pydicom.pixels.utils import _get_jpg_parameters, get_j2k_parameters
from pydicom.uid import JPEGLSTransferSyntaxes, JPEGTransferSyntaxes

from tessel.codecs.native import correct_unused_bits, frame_shape, pixel_dtype
from tessel.codecs.syntaxes import (
    HTJ2K_LOSSLESS,
    HTJ2K_LOSSLESS_RPCL,
    JPEG_BASELINE_8BIT,
    JPEG_EXTENDED_12BIT,
    JPEG_LOSSLESS,
    JPEG_LOSSLESS_SV1,
    JPEG_LS_LOSSLESS,
)
from tessel.dicom.models import PixelInfo

Array = npt.NDArray[Any]

_SOF3 = 0xC3  # lossless, Huffman; anything else labelled lossless goes to pydicom
_SOF_LOSSY = frozenset({0xC0, 0xC1})  # baseline, extended Huffman: what .50 and .51 hold
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


YBR_FULL = ("YBR_FULL", "YBR_FULL_422")  # colour spaces pydicom does not turn into RGB
_RGB_COMPONENT_IDS = ([82, 71, 66], [114, 103, 98])  # "RGB" / "rgb" in ASCII
_YCC, _RGB = imagecodecs.JPEG8.CS.YCbCr, imagecodecs.JPEG8.CS.RGB


def conformed_photometric(frame: bytes, info: PixelInfo, uid: str) -> str:
    """The colour space pydicom infers from a JPEG/JPEG-LS stream's markers.

    pydicom's runner applies the same rules (`DecodeRunner._conform_jpg_colorspace`) but
    warns each time; passing the conformed value gives the same pixels without the warning.
    """
    pi = info.photometric_interpretation
    if info.samples_per_pixel != 3 or uid not in (*JPEGTransferSyntaxes, *JPEGLSTransferSyntaxes):
        return pi
    params = _get_jpg_parameters(frame)
    if params.get("component_ids") in _RGB_COMPONENT_IDS:
        return "RGB"
    if "YBR" not in pi and any(app.startswith(b"JFIF") for app in params.get("app", {}).values()):
        return "YBR_FULL_422" if uid == JPEG_BASELINE_8BIT else "YBR_FULL"
    return pi


def lossy_as_rgb(frame: bytes, info: PixelInfo, uid: str) -> bool:
    """Whether a lossy colour frame is shown as RGB: pydicom's default (`as_rgb`) turns a
    stream it takes for YBR_FULL(_422) into RGB, except that frames labelled YBR_FULL(_422)
    stay in that colour space (`_process_color_space`)."""
    if info.samples_per_pixel != 3 or info.photometric_interpretation in YBR_FULL:
        return False
    return conformed_photometric(frame, info, uid) in YBR_FULL


def jpeg_lossy(frame: bytes, info: PixelInfo) -> Array | None:
    """Baseline and extended (8/12-bit Huffman) JPEG with libjpeg-turbo, in pydicom's colour space.

    Lossy JPEG has no exact decoding: the standard lets the inverse DCT and the chroma
    upsampling differ by a little, and libjpeg-turbo and pydicom's libjpeg (pylibjpeg) give
    samples that differ by 1 (rarely up to 4) here and there. tessel's checksums and Min/Max
    of a lossy frame are those of this decoder, the one most viewers and Pillow use (their
    decodes are identical), which is 5x faster than libjpeg and releases the GIL, so the
    tiles of a whole-slide level decode on every core. The stored frame is the original
    stream either way; only what tessel computes from it, and the pixels it renders, follow.

    Colour is pydicom's: the stream's samples as they are (libjpeg-turbo asked for no
    colour conversion, as pylibjpeg does), except where pydicom would convert to RGB
    (`lossy_as_rgb`), done here by libjpeg-turbo itself.
    """
    if _jpeg_sof(frame) not in _SOF_LOSSY or info.samples_per_pixel not in (1, 3):
        return None
    if info.samples_per_pixel == 3:
        if info.planar_configuration != 0:
            return None  # pydicom would reorder by the header; let it
        out = _RGB if lossy_as_rgb(frame, info, info.transfer_syntax_uid) else _YCC
        # Telling libjpeg-turbo the stream is YCbCr makes "out" YCbCr a plain copy of the
        # samples, whatever markers (Adobe, component IDs) say: pylibjpeg's raw output.
        arr = imagecodecs.jpeg8_decode(frame, colorspace=_YCC, outcolorspace=out)
    else:
        arr = imagecodecs.jpeg8_decode(frame)
    if arr.shape != frame_shape(info) or arr.dtype.itemsize != pixel_dtype(info).itemsize:
        return None  # pydicom would size this by Bits Allocated; let it decide
    arr = _as_pydicom_dtype(arr, info)
    return correct_unused_bits(arr, info) if info.bits_stored < info.bits_allocated else arr


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
    JPEG_BASELINE_8BIT: jpeg_lossy,
    JPEG_EXTENDED_12BIT: jpeg_lossy,
    JPEG_LOSSLESS: jpeg_lossless,
    JPEG_LOSSLESS_SV1: jpeg_lossless,
    JPEG_LS_LOSSLESS: jpeg_ls,
    HTJ2K_LOSSLESS: htj2k_lossless,
    HTJ2K_LOSSLESS_RPCL: htj2k_lossless,
}
