"""Decide how an instance's frames are stored: transcoded to one lossless format, or kept.

>>> from tessel.dicom.models import PixelInfo
>>> ct = PixelInfo("1.2.840.10008.1.2.1", 512, 512, 1, 16, 12, 11, 0, "MONOCHROME2", 0, 1)
>>> storage_plan(ct)
StoragePlan(stored_transfer_syntax_uid='1.2.840.10008.1.2.4.202', transcode=True, stored_photometric='MONOCHROME2')
"""

from __future__ import annotations

from dataclasses import dataclass

from tessel.codecs.errors import CodecError
from tessel.codecs.syntaxes import (
    EXPLICIT_VR_LE,
    HTJ2K_LOSSLESS_RPCL,
    LOSSLESS_FORMATS,
    TRANSCODABLE,
    syntax,
)
from tessel.dicom.models import PixelInfo

# Photometric interpretations whose decoded samples are R, G, B (J2K decoders undo RCT/ICT).
RGB_LIKE = frozenset({"RGB", "YBR_RCT", "YBR_ICT"})

# OpenJPH writes 32-bit HTJ2K losslessly, but OpenJPEG (pydicom, GDCM, most viewers) cannot
# read it back, and OpenJPEG's own 32-bit J2K is not lossless; such frames stay native.
J2K_BITS_ALLOCATED = (8, 16)


@dataclass(frozen=True, slots=True)
class StoragePlan:
    """How one instance's frames are stored.

    Stored frames are always colour-by-pixel (Planar Configuration 0), and YBR_FULL_422
    sources are stored at full resolution, hence `stored_photometric` "YBR_FULL".
    """

    stored_transfer_syntax_uid: str
    transcode: bool  # False: the frames are stored byte for byte as they came
    stored_photometric: str


def uses_rct(info: PixelInfo) -> bool:
    """Whether a J2K-family encoding of this frame applies the reversible colour transform."""
    # Browser HTJ2K decoders assume RCT for 3-sample RGB; YBR_FULL stays untransformed.
    return info.samples_per_pixel == 3 and info.photometric_interpretation in RGB_LIKE


def fits_j2k(info: PixelInfo) -> bool:
    """Whether HTJ2K/J2K can hold this frame exactly and other decoders can read it back."""
    return (
        info.pixel_keyword == "PixelData"
        and info.bits_allocated in J2K_BITS_ALLOCATED
        and info.samples_per_pixel in (1, 3)
    )


def storage_plan(info: PixelInfo, lossless_format: str = HTJ2K_LOSSLESS_RPCL) -> StoragePlan:
    """Lossless frames go to `lossless_format` (or native ELE if it cannot hold them); lossy stay as is."""
    if lossless_format not in LOSSLESS_FORMATS:
        raise CodecError(
            f"{lossless_format} is not a lossless storage format ({', '.join(sorted(LOSSLESS_FORMATS))})",
            transfer_syntax_uid=lossless_format,
        )
    row = syntax(info.transfer_syntax_uid)
    if row is None:
        raise CodecError(
            f"unknown transfer syntax {info.transfer_syntax_uid}", transfer_syntax_uid=info.transfer_syntax_uid
        )
    photometric = info.photometric_interpretation
    if row.uid not in TRANSCODABLE:
        return StoragePlan(row.uid, False, photometric)

    target = lossless_format if fits_j2k(info) else EXPLICIT_VR_LE
    if target == EXPLICIT_VR_LE:
        if photometric == "YBR_FULL_422":
            photometric = "YBR_FULL"  # decoded frames are upsampled to full resolution
        elif photometric in ("YBR_RCT", "YBR_ICT"):
            photometric = "RGB"  # J2K decoders return RGB samples; these labels are J2K-only
        return StoragePlan(target, True, photometric)
    if uses_rct(info):
        return StoragePlan(target, True, "YBR_RCT")
    if photometric in ("YBR_FULL", "YBR_FULL_422"):
        return StoragePlan(target, True, "YBR_FULL")
    return StoragePlan(target, True, photometric)
