"""Transfer syntaxes tessel knows: how frames are laid out, whether loss is allowed, media types.

One table (`SYNTAXES`) answers every per-syntax question, so adding a syntax is one row.

>>> is_lossless_syntax(HTJ2K_LOSSLESS_RPCL), is_lossless_syntax(JPEG_BASELINE_8BIT)
(True, False)
>>> media_type(HTJ2K_LOSSLESS_RPCL), media_type("1.2.3.4")
('image/jphc', 'application/octet-stream')
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
ENCAPSULATED_UNCOMPRESSED_ELE = "1.2.840.10008.1.2.1.98"
DEFLATED_EXPLICIT_VR_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BE = "1.2.840.10008.1.2.2"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"
DEFLATED_IMAGE_FRAME = "1.2.840.10008.1.2.8.1"
JPEG_BASELINE_8BIT = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED_12BIT = "1.2.840.10008.1.2.4.51"
JPEG_SPECTRAL = "1.2.840.10008.1.2.4.53"
JPEG_PROGRESSIVE = "1.2.840.10008.1.2.4.55"
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.57"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
JPEG_LS_NEAR_LOSSLESS = "1.2.840.10008.1.2.4.81"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
J2K = "1.2.840.10008.1.2.4.91"
J2K_MC_LOSSLESS = "1.2.840.10008.1.2.4.92"
J2K_MC = "1.2.840.10008.1.2.4.93"
JPEG_XL_LOSSLESS = "1.2.840.10008.1.2.4.110"
JPEG_XL_JPEG_RECOMPRESSION = "1.2.840.10008.1.2.4.111"
JPEG_XL = "1.2.840.10008.1.2.4.112"
HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"
HTJ2K_LOSSLESS_RPCL = "1.2.840.10008.1.2.4.202"
HTJ2K = "1.2.840.10008.1.2.4.203"


class Layout(StrEnum):
    """How one frame's bytes are laid out in a syntax."""

    NATIVE = "native"  # a slice of Pixel Data (deflated datasets are inflated by the reader)
    ENCAPSULATED_NATIVE = "encapsulated-native"  # .1.98: one fragment set per frame, native bytes
    DEFLATED_FRAME = "deflated-frame"  # .8.1: each frame's native bytes, deflated on their own
    COMPRESSED = "compressed"  # an image codestream per frame
    VIDEO = "video"  # one stream for all frames; never split or decoded here
    REFERENCED = "referenced"  # pixels live elsewhere (JPIP); nothing to decode


@dataclass(frozen=True, slots=True)
class TransferSyntax:
    """One row of the table."""

    uid: str
    name: str
    lossless: bool  # lossless by definition (a lossy syntax may still carry a reversible stream)
    layout: Layout
    media_type: str = "application/octet-stream"


_OCTET = "application/octet-stream"
_JPEG, _JLS, _J2C, _JPX, _JPHC, _JXL = (
    "image/jpeg", "image/jls", "image/j2c", "image/jpx", "image/jphc", "image/jxl",
)
_N, _C, _V, _R = Layout.NATIVE, Layout.COMPRESSED, Layout.VIDEO, Layout.REFERENCED

_ROWS: tuple[TransferSyntax, ...] = (
    TransferSyntax(IMPLICIT_VR_LE, "Implicit VR Little Endian", True, _N),
    TransferSyntax(EXPLICIT_VR_LE, "Explicit VR Little Endian", True, _N),
    TransferSyntax(ENCAPSULATED_UNCOMPRESSED_ELE, "Encapsulated Uncompressed Explicit VR Little Endian",
                   True, Layout.ENCAPSULATED_NATIVE),
    TransferSyntax(DEFLATED_EXPLICIT_VR_LE, "Deflated Explicit VR Little Endian", True, _N),
    TransferSyntax(EXPLICIT_VR_BE, "Explicit VR Big Endian", True, _N),
    TransferSyntax(RLE_LOSSLESS, "RLE Lossless", True, _C, "image/dicom-rle"),
    TransferSyntax(DEFLATED_IMAGE_FRAME, "Deflated Image Frame Compression", True, Layout.DEFLATED_FRAME),
    TransferSyntax(JPEG_BASELINE_8BIT, "JPEG Baseline (Process 1)", False, _C, _JPEG),
    TransferSyntax(JPEG_EXTENDED_12BIT, "JPEG Extended (Process 2 and 4)", False, _C, _JPEG),
    # Retired, and pydicom has no decoder: stored as they came, never decoded.
    TransferSyntax(JPEG_SPECTRAL, "JPEG Spectral Selection (retired)", False, _C),
    TransferSyntax(JPEG_PROGRESSIVE, "JPEG Full Progression (retired)", False, _C),
    TransferSyntax(JPEG_LOSSLESS, "JPEG Lossless (Process 14)", True, _C, _JPEG),
    TransferSyntax(JPEG_LOSSLESS_SV1, "JPEG Lossless SV1", True, _C, _JPEG),
    TransferSyntax(JPEG_LS_LOSSLESS, "JPEG-LS Lossless", True, _C, _JLS),
    TransferSyntax(JPEG_LS_NEAR_LOSSLESS, "JPEG-LS Near-Lossless", False, _C, _JLS),
    TransferSyntax(J2K_LOSSLESS, "JPEG 2000 Lossless", True, _C, _J2C),
    TransferSyntax(J2K, "JPEG 2000", False, _C, _J2C),
    TransferSyntax(J2K_MC_LOSSLESS, "JPEG 2000 Part 2 Multi-component Lossless", True, _C, _JPX),
    TransferSyntax(J2K_MC, "JPEG 2000 Part 2 Multi-component", False, _C, _JPX),
    TransferSyntax("1.2.840.10008.1.2.4.94", "JPIP Referenced", False, _R),
    TransferSyntax("1.2.840.10008.1.2.4.95", "JPIP Referenced Deflate", False, _R),
    TransferSyntax("1.2.840.10008.1.2.4.100", "MPEG2 MP@ML", False, _V, "video/mpeg"),
    TransferSyntax("1.2.840.10008.1.2.4.100.1", "Fragmentable MPEG2 MP@ML", False, _V, "video/mpeg"),
    TransferSyntax("1.2.840.10008.1.2.4.101", "MPEG2 MP@HL", False, _V, "video/mpeg"),
    TransferSyntax("1.2.840.10008.1.2.4.101.1", "Fragmentable MPEG2 MP@HL", False, _V, "video/mpeg"),
    TransferSyntax("1.2.840.10008.1.2.4.102", "MPEG-4 AVC/H.264 HP@4.1", False, _V, "video/mp4"),
    TransferSyntax("1.2.840.10008.1.2.4.102.1", "Fragmentable MPEG-4 AVC/H.264 HP@4.1", False, _V, "video/mp4"),
    TransferSyntax("1.2.840.10008.1.2.4.103", "MPEG-4 AVC/H.264 BD HP@4.1", False, _V, "video/mp4"),
    TransferSyntax("1.2.840.10008.1.2.4.103.1", "Fragmentable MPEG-4 AVC/H.264 BD HP@4.1", False, _V, "video/mp4"),
    TransferSyntax("1.2.840.10008.1.2.4.104", "MPEG-4 AVC/H.264 HP@4.2 2D", False, _V, "video/mp4"),
    TransferSyntax("1.2.840.10008.1.2.4.104.1", "Fragmentable MPEG-4 AVC/H.264 HP@4.2 2D", False, _V, "video/mp4"),
    TransferSyntax("1.2.840.10008.1.2.4.105", "MPEG-4 AVC/H.264 HP@4.2 3D", False, _V, "video/mp4"),
    TransferSyntax("1.2.840.10008.1.2.4.105.1", "Fragmentable MPEG-4 AVC/H.264 HP@4.2 3D", False, _V, "video/mp4"),
    TransferSyntax("1.2.840.10008.1.2.4.106", "MPEG-4 AVC/H.264 Stereo HP@4.2", False, _V, "video/mp4"),
    TransferSyntax("1.2.840.10008.1.2.4.106.1", "Fragmentable MPEG-4 AVC/H.264 Stereo HP@4.2", False, _V,
                   "video/mp4"),
    TransferSyntax("1.2.840.10008.1.2.4.107", "HEVC/H.265 Main Profile", False, _V, "video/H265"),
    TransferSyntax("1.2.840.10008.1.2.4.108", "HEVC/H.265 Main 10 Profile", False, _V, "video/H265"),
    TransferSyntax(JPEG_XL_LOSSLESS, "JPEG XL Lossless", True, _C, _JXL),
    # Reversible to the original JPEG, whose pixels were lossy: keep the stream as it is.
    TransferSyntax(JPEG_XL_JPEG_RECOMPRESSION, "JPEG XL JPEG Recompression", False, _C, _JXL),
    TransferSyntax(JPEG_XL, "JPEG XL", False, _C, _JXL),
    TransferSyntax(HTJ2K_LOSSLESS, "HTJ2K Lossless", True, _C, _JPHC),
    TransferSyntax(HTJ2K_LOSSLESS_RPCL, "HTJ2K Lossless RPCL", True, _C, _JPHC),
    TransferSyntax(HTJ2K, "HTJ2K", False, _C, _JPHC),
    TransferSyntax("1.2.840.10008.1.2.4.204", "JPIP HTJ2K Referenced", False, _R),
    TransferSyntax("1.2.840.10008.1.2.4.205", "JPIP HTJ2K Referenced Deflate", False, _R),
)

SYNTAXES: dict[str, TransferSyntax] = {row.uid: row for row in _ROWS}

# What storage_plan may transcode lossless frames to.
LOSSLESS_FORMATS = frozenset({HTJ2K_LOSSLESS_RPCL, HTJ2K_LOSSLESS, J2K_LOSSLESS, EXPLICIT_VR_LE})

# Lossless syntaxes whose frames decode here exactly as pydicom decodes them, so the
# originals can be replaced. .4.92 and JPEG XL have no pydicom decoder to agree with,
# so they are kept as they came.
TRANSCODABLE = frozenset({
    IMPLICIT_VR_LE, EXPLICIT_VR_LE, ENCAPSULATED_UNCOMPRESSED_ELE, DEFLATED_EXPLICIT_VR_LE, EXPLICIT_VR_BE,
    DEFLATED_IMAGE_FRAME, RLE_LOSSLESS, JPEG_LOSSLESS, JPEG_LOSSLESS_SV1, JPEG_LS_LOSSLESS, J2K_LOSSLESS,
    HTJ2K_LOSSLESS, HTJ2K_LOSSLESS_RPCL,
})


def _normal(uid: str) -> str:
    # UIDs arrive padded with a trailing NUL or space from some writers.
    return str(uid).strip("\x00 ")


def syntax(uid: str) -> TransferSyntax | None:
    """The table row for `uid`, or None if tessel does not know it."""
    return SYNTAXES.get(_normal(uid))


def is_known_syntax(uid: str) -> bool:
    """Whether tessel knows the transfer syntax `uid`."""
    return _normal(uid) in SYNTAXES


def is_lossless_syntax(uid: str) -> bool:
    """Whether `uid` is lossless by definition (False for unknown syntaxes)."""
    row = syntax(uid)
    return row is not None and row.lossless


def media_type(transfer_syntax_uid: str) -> str:
    """The media type a frame in this syntax is served as (AHI GetImageFrame, DICOMweb)."""
    row = syntax(transfer_syntax_uid)
    return row.media_type if row is not None else _OCTET
