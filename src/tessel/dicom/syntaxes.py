"""How each transfer syntax tessel reads encodes its dataset and Pixel Data.

This is the reader's view only (byte order, VR encoding, encapsulation, how a
frame starts); `tessel.codecs.syntaxes` answers the codec questions. Kept apart
so that `dicom` does not import `codecs`, which imports `dicom.models`.

>>> SYNTAXES["1.2.840.10008.1.2.2"].little_endian, SYNTAXES["1.2.840.10008.1.2.4.50"].encapsulated
(False, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class FrameStart(StrEnum):
    """What the first bytes of a compressed frame look like (to split fragments into frames)."""

    NONE = "none"  # no recognisable signature: need an offset table or one fragment per frame
    JPEG = "jpeg"  # SOI marker FF D8 (JPEG, JPEG-LS, JPEG lossless)
    J2K = "j2k"  # SOC marker FF 4F, or a JP2 signature box
    RLE = "rle"  # 64-byte RLE header: segment count 1..15, first offset 64
    JXL = "jxl"  # JPEG XL codestream FF 0A, or its ISO BMFF signature box


@dataclass(frozen=True, slots=True)
class SyntaxInfo:
    implicit_vr: bool = False
    little_endian: bool = True
    deflated: bool = False  # the whole dataset after File Meta is a raw deflate stream
    encapsulated: bool = False  # Pixel Data is a sequence of fragments
    frame_start: FrameStart = FrameStart.NONE


_JPEG = SyntaxInfo(encapsulated=True, frame_start=FrameStart.JPEG)
_J2K = SyntaxInfo(encapsulated=True, frame_start=FrameStart.J2K)
_JXL = SyntaxInfo(encapsulated=True, frame_start=FrameStart.JXL)
_OTHER = SyntaxInfo(encapsulated=True)

SYNTAXES: dict[str, SyntaxInfo] = {
    "1.2.840.10008.1.2": SyntaxInfo(implicit_vr=True),
    "1.2.840.10008.1.2.1": SyntaxInfo(),
    "1.2.840.10008.1.2.1.98": _OTHER,  # Encapsulated Uncompressed Explicit VR LE
    # Deflated datasets are inflated into memory before parsing (they are small in practice).
    "1.2.840.10008.1.2.1.99": SyntaxInfo(deflated=True),
    "1.2.840.10008.1.2.2": SyntaxInfo(little_endian=False),
    "1.2.840.10008.1.2.5": SyntaxInfo(encapsulated=True, frame_start=FrameStart.RLE),
    "1.2.840.10008.1.2.8.1": _OTHER,  # Deflated Image Frame Compression
    "1.2.840.10008.1.2.4.94": SyntaxInfo(),  # JPIP Referenced: pixels live at a URL
    "1.2.840.10008.1.2.4.95": SyntaxInfo(deflated=True),  # JPIP Referenced Deflate
    **{f"1.2.840.10008.1.2.4.{n}": _JPEG for n in (*range(50, 67), 70, 80, 81)},
    **{f"1.2.840.10008.1.2.4.{n}": _J2K for n in (90, 91, 92, 93, 201, 202, 203)},
    # MPEG-2/4, HEVC: one stream for every frame; never split here.
    **{f"1.2.840.10008.1.2.4.{n}": _OTHER for n in range(100, 109)},
    **{f"1.2.840.10008.1.2.4.{n}": _JXL for n in (110, 111, 112)},
}

VIDEO_SYNTAXES = frozenset(f"1.2.840.10008.1.2.4.{n}" for n in range(100, 109))


def frame_starts_here(kind: FrameStart, head: bytes) -> bool:
    """Whether a fragment beginning with `head` (at least 8 bytes if available) starts a frame."""
    if kind is FrameStart.JPEG:
        return head[:2] == b"\xff\xd8"
    if kind is FrameStart.J2K:
        return head[:2] == b"\xff\x4f" or head[:8] == b"\x00\x00\x00\x0cjP  "
    if kind is FrameStart.JXL:
        return head[:2] == b"\xff\x0a" or head[:8] == b"\x00\x00\x00\x0cJXL "
    if kind is FrameStart.RLE:
        if len(head) < 8:
            return False
        count = int.from_bytes(head[:4], "little")
        return 1 <= count <= 15 and int.from_bytes(head[4:8], "little") == 64
    return False
