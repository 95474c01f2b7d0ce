"""Where each frame's bytes lie: native slices, or fragments grouped into frames.

Nothing here reads pixel values; encapsulated data costs at most the offset
table and the first 8 bytes of each fragment (only when frames must be found
by their start markers).
"""

from __future__ import annotations

import struct
from typing import Any, BinaryIO

from tessel.dicom.models import FrameRef, PixelInfo
from tessel.dicom.syntaxes import VIDEO_SYNTAXES, FrameStart, SyntaxInfo, frame_starts_here
from tessel.errors import InvalidInput

INVALID_OFFSET_TABLE = 45330


def stored_frame_bits(info: PixelInfo) -> int:
    """Bits of one stored native frame. YBR_FULL_422 stores 2 samples per pixel, not 3."""
    samples = info.samples_per_pixel
    if info.photometric_interpretation == "YBR_FULL_422" and samples == 3:
        samples = 2
    return info.rows * info.columns * samples * info.bits_allocated


def native_frames(info: PixelInfo, value_offset: int, length: int,
                  warnings: list[dict[str, Any]]) -> list[FrameRef]:
    """One segment per frame; refuse Pixel Data whose length cannot hold the declared frames."""
    frame_bits = stored_frame_bits(info)
    count = info.number_of_frames
    needed = (frame_bits * count + 7) // 8
    if length < needed:
        raise InvalidInput(
            f"Pixel Data holds {length} bytes, but Rows x Columns x Samples per Pixel x Bits "
            f"Allocated x Number of Frames ({info.rows} x {info.columns} x "
            f"{info.samples_per_pixel} x {info.bits_allocated} x {count}) needs {needed}",
            reason="pixel-length")
    frame_bytes = max(frame_bits // 8, 1)
    excess = length - needed
    if excess >= frame_bytes and excess > 1:
        raise InvalidInput(
            f"Pixel Data holds {length} bytes, room for more frames than the {count} that "
            f"Number of Frames declares ({needed} bytes)", reason="pixel-length")
    if excess > 1:
        warnings.append({"warning_reason_code": 45056, "type": "COERCION_OF_DATA_ELEMENTS",
                         "message": f"Pixel Data has {excess} bytes of padding after the last "
                                    f"frame; they are ignored"})
    if frame_bits % 8 == 0:
        step = frame_bits // 8
        return [FrameRef(((value_offset + i * step, step),)) for i in range(count)]
    frames = []
    for i in range(count):  # 1-bit frames need not start on a byte boundary
        first_bit = i * frame_bits
        bit_offset = first_bit % 8
        frames.append(FrameRef(((value_offset + first_bit // 8, (bit_offset + frame_bits + 7) // 8),),
                               bit_offset))
    return frames


def encapsulated_frames(fp: BinaryIO, items: list[tuple[int, int]], count: int, syntax_uid: str,
                        syntax: SyntaxInfo, extended: list[int] | None,
                        warnings: list[dict[str, Any]]) -> list[FrameRef]:
    """Group fragments into `count` frames.

    `items` are (value offset, length) of every item, the Basic Offset Table first;
    `extended` is the Extended Offset Table, if the dataset has one.
    """
    if not items:
        raise InvalidInput("encapsulated Pixel Data has no Basic Offset Table item", reason="malformed")
    bot_offset, bot_length = items[0]
    fragments = items[1:]
    if not fragments:
        raise InvalidInput("encapsulated Pixel Data has no fragments", reason="malformed")
    if syntax_uid in VIDEO_SYNTAXES:
        # An MPEG/HEVC stream spans every frame: it is kept as one unit, never split.
        return [FrameRef(tuple(fragments))]
    if len(fragments) < count:
        raise InvalidInput(f"encapsulated Pixel Data has {len(fragments)} fragments for {count} "
                           f"frames; every frame needs at least one", reason="pixel-length")

    first_item = fragments[0][0] - 8
    starts = {offset - 8 - first_item: i for i, (offset, _) in enumerate(fragments)}
    tables: list[tuple[str, list[int]]] = []
    if bot_length:
        fp.seek(bot_offset)
        raw = fp.read(bot_length)
        if bot_length % 4 == 0:
            tables.append(("Basic Offset Table", list(struct.unpack(f"<{bot_length // 4}L", raw))))
        else:
            _warn_table(warnings, f"the Basic Offset Table has {bot_length} bytes, not a multiple of 4")
    elif extended is not None:
        tables.append(("Extended Offset Table", extended))
    for name, offsets in tables:
        problem = _check_table(offsets, count, starts)
        if problem is None:
            bounds = [starts[o] for o in offsets] + [len(fragments)]
            return [FrameRef(tuple(fragments[bounds[i]:bounds[i + 1]])) for i in range(count)]
        _warn_table(warnings, f"the {name} was ignored: {problem}")

    if len(fragments) == count:
        return [FrameRef((fragment,)) for fragment in fragments]
    if count == 1:
        return [FrameRef(tuple(fragments))]
    if syntax.frame_start is not FrameStart.NONE:
        firsts = []
        for i, (offset, length) in enumerate(fragments):
            fp.seek(offset)
            if frame_starts_here(syntax.frame_start, fp.read(min(length, 8))):
                firsts.append(i)
        if len(firsts) == count and firsts[0] == 0:
            bounds = firsts + [len(fragments)]
            return [FrameRef(tuple(fragments[bounds[i]:bounds[i + 1]])) for i in range(count)]
        found = f"{len(firsts)} fragments start a {syntax.frame_start.value.upper()} frame"
    else:
        found = "this transfer syntax has no frame signature to look for"
    raise InvalidInput(f"cannot tell which of the {len(fragments)} fragments belong to which of the "
                       f"{count} frames: there is no usable offset table and {found}",
                       reason="frames")


def _check_table(offsets: list[int], count: int, starts: dict[int, int]) -> str | None:
    if len(offsets) != count:
        return f"it lists {len(offsets)} frames, but Number of Frames is {count}"
    if offsets[0] != 0:
        return f"its first offset is {offsets[0]}, not 0"
    if any(b <= a for a, b in zip(offsets, offsets[1:])):
        return "its offsets do not increase"
    missing = next((o for o in offsets if o not in starts), None)
    if missing is not None:
        return f"offset {missing} is not the start of a fragment"
    return None


def _warn_table(warnings: list[dict[str, Any]], message: str) -> None:
    warnings.append({"warning_reason_code": INVALID_OFFSET_TABLE, "type": "INVALID_OFFSET_TABLE",
                     "message": message})
