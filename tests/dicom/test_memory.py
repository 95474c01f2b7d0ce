"""Reading costs the header, never the file: large sparse files parse in a few MB."""

from __future__ import annotations

import io
import struct
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, generate_uid

from tessel.dicom import instance_levels, read_frame, read_instance

LIMIT = 20 * 1024 * 1024


def _header(syntax: str, rows: int, columns: int, frames: int) -> bytes:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.6"  # VL Whole Slide Microscopy
    ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.Modality = "SM"
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, columns, frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = UID(syntax)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _peak(work: Callable[[], Any]) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        result = work()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_300_mb_native_file_parses_in_a_few_mb(tmp_path: Path) -> None:
    rows, columns, frames = 1000, 1500, 100  # 3 MB frames, 300 MB of Pixel Data
    length = rows * columns * 2 * frames
    path = tmp_path / "big.dcm"
    with open(path, "wb") as f:  # written sparsely: only the header and the last byte exist
        f.write(_header("1.2.840.10008.1.2.1", rows, columns, frames))
        f.write(b"\xe0\x7f\x10\x00OW\x00\x00" + struct.pack("<L", length))
        f.truncate(f.tell() + length)
    parsed, peak = _peak(lambda: read_instance(path))
    assert len(parsed.frames) == frames and parsed.frames[-1].length == rows * columns * 2
    assert peak < LIMIT, f"peak {peak / 1e6:.1f} MB"
    frame, peak = _peak(lambda: read_frame(parsed, 99))
    assert len(frame) == rows * columns * 2 and peak < LIMIT
    _, peak = _peak(lambda: instance_levels(parsed, {}))
    assert peak < LIMIT


def test_2_gb_encapsulated_whole_slide_file_parses_in_a_few_mb(tmp_path: Path) -> None:
    frames, fragment = 20_000, 100_000  # 2 GB of JPEG tiles, no Basic Offset Table
    path = tmp_path / "wsi.dcm"
    with open(path, "wb") as f:
        f.write(_header("1.2.840.10008.1.2.4.50", 256, 256, frames))
        f.write(b"\xe0\x7f\x10\x00OB\x00\x00\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0\x00\x00\x00\x00")
        item = b"\xfe\xff\x00\xe0" + struct.pack("<L", fragment)
        for _ in range(frames):
            f.write(item + b"\xff\xd8")
            f.seek(fragment - 2, io.SEEK_CUR)
        f.write(b"\xfe\xff\xdd\xe0\x00\x00\x00\x00")
    assert path.stat().st_size > 2_000_000_000
    parsed, peak = _peak(lambda: read_instance(path))
    assert len(parsed.frames) == frames
    assert peak < LIMIT, f"peak {peak / 1e6:.1f} MB"
    assert read_frame(parsed, frames - 1)[:2] == b"\xff\xd8"
