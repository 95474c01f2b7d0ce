"""Staging a whole-slide level of JPEG tiles: kept as they came, checksummed as libjpeg-turbo
decodes them, on several frame threads; a tile no decoder reads is kept with a warning."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest

from tessel.blobs import keys
from tessel.blobs.memory import MemoryBlobStore
from tessel.demo import write_wsi_pyramid
from tessel.dicom import read_frame, read_instance
from tessel.ingest.staging import StagingOptions, stage_file
from tests.codecs.test_frames import pillow_decode

DATASTORE = "w" * 32


@pytest.fixture(scope="module")
def level(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 4 x 2 tiles of 64 px: tissue and glass, JPEG baseline 4:2:2, labelled YBR_FULL_422.
    (path,) = write_wsi_pyramid(tmp_path_factory.mktemp("wsi"), base_width=256, base_height=128, tile=64,
                                levels=1, workers=1)
    return path


def test_wsi_tiles_are_stored_as_they_came_with_the_checksums_a_libjpeg_turbo_client_computes(level: Path) -> None:
    parsed = read_instance(level)
    assert parsed.pixel is not None and parsed.pixel.photometric_interpretation == "YBR_FULL_422"
    blobs = MemoryBlobStore()
    staged = stage_file(level, blobs, StagingOptions(datastore_id=DATASTORE, frame_threads=2))
    assert staged["warnings"] == [] and staged["stored_transfer_syntax_uid"] == "1.2.840.10008.1.2.4.50"
    entries = staged["instance"]["ImageFrames"]
    assert len(entries) == len(parsed.frames) == 8
    for index, entry in enumerate(entries):
        tile = read_frame(parsed, index)
        assert blobs.get(keys.frame(DATASTORE, entry["ID"])) == tile  # lossy: never re-encoded
        # YCbCr samples, as the label says, exactly as Pillow (libjpeg-turbo) decodes them.
        pixels = pillow_decode(tile, as_rgb=False)
        (checksum,) = entry["PixelDataChecksumFromBaseToFullResolution"]
        assert checksum == {"Width": 64, "Height": 64, "Checksum": zlib.crc32(pixels.tobytes())}
        assert (entry["MinPixelValue"], entry["MaxPixelValue"]) == (int(pixels.min()), int(pixels.max()))


def test_a_tile_no_decoder_reads_is_kept_with_a_warning_and_the_others_are_checksummed(level: Path,
                                                                                       tmp_path: Path) -> None:
    parsed = read_instance(level)
    data = bytearray(level.read_bytes())
    ((offset, length),) = parsed.frames[5].segments
    tile = bytes(data[offset:offset + length])
    dht = tile.index(b"\xff\xc4")
    data[offset + dht + 2:offset + dht + 4] = b"\x00\x03"  # a Huffman table segment 1 byte long
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(bytes(data))

    blobs = MemoryBlobStore()
    staged = stage_file(broken, blobs, StagingOptions(datastore_id=DATASTORE, frame_threads=2))
    (warning,) = staged["warnings"]
    assert warning["type"] == "TRANSCODING_EXCEPTION" and warning["warning_reason_code"] == 45312
    assert "JPEG Baseline (Process 1) frame could not be decoded" in warning["message"]
    entries = staged["instance"]["ImageFrames"]
    assert "PixelDataChecksumFromBaseToFullResolution" not in entries[5]
    assert all("PixelDataChecksumFromBaseToFullResolution" in e for i, e in enumerate(entries) if i != 5)
    stored = blobs.get(keys.frame(DATASTORE, entries[5]["ID"]))
    assert stored == read_frame(read_instance(broken), 5)  # kept byte for byte
    assert np.frombuffer(stored, np.uint8).size == length
