"""Values the DICOM layer hands to the rest of tessel.

`read_instance` (in `tessel.dicom.read`) turns a Part 10 file into a
`ParsedInstance`: the header without pixel or bulk values, where each frame's
bytes lie in the source, and which large binary attributes were left out.
Nothing here holds pixel data, so a 2 GB file costs only its header.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable


@dataclass(frozen=True, slots=True)
class PixelInfo:
    """What a codec needs to know about one instance's pixel data."""

    transfer_syntax_uid: str
    rows: int
    columns: int
    samples_per_pixel: int
    bits_allocated: int
    bits_stored: int
    high_bit: int
    pixel_representation: int  # 0 unsigned, 1 signed
    photometric_interpretation: str
    planar_configuration: int  # 0 interleaved, 1 planar (only meaningful if samples_per_pixel > 1)
    number_of_frames: int
    pixel_keyword: str = "PixelData"  # or FloatPixelData / DoubleFloatPixelData

    @property
    def frame_length(self) -> int:
        """Bytes of one native (uncompressed) frame; for 1-bit data, rounded up."""
        bits = self.rows * self.columns * self.samples_per_pixel * self.bits_allocated
        return (bits + 7) // 8


@dataclass(frozen=True, slots=True)
class FrameRef:
    """Where one frame's bytes lie in the (possibly inflated) source.

    `segments` are (offset, length) pieces to concatenate: one for native data,
    one per fragment for encapsulated data. `bit_offset` is non-zero only for
    1-bit native data whose frames do not start on a byte boundary.
    """

    segments: tuple[tuple[int, int], ...]
    bit_offset: int = 0

    @property
    def length(self) -> int:
        return sum(length for _, length in self.segments)


@dataclass(frozen=True, slots=True)
class BulkRef:
    """A large binary attribute left out of the header, to be stored as bulk data."""

    tag: str  # GGGGEEEE, uppercase hex; nested ones are a dotted path of tags and item indexes
    vr: str
    offset: int
    length: int


@dataclass(slots=True)
class ParsedInstance:
    """A parsed Part 10 instance: header, frame index and bulk references."""

    dataset: Any  # pydicom.Dataset with PixelData and bulk values removed; stays in dicom/
    transfer_syntax_uid: str
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    pixel: PixelInfo | None
    frames: list[FrameRef]
    bulk: list[BulkRef]
    open_source: Callable[[], BinaryIO]  # opens the bytes that offsets refer to
    warnings: list[dict[str, Any]] = field(default_factory=list)
    # The elements as read (tessel.dicom.document.RawHeader), for instance_levels: reading values
    # through `dataset` converts them in place (pydicom strips IS/DS padding), this copy stays raw.
    header: Any = None
