"""VL Whole Slide Microscopy pyramids: one TILED_FULL, JPEG Baseline file per level.

Tiles are rendered, encoded and written as a stream: the header goes out through
`dcmwrite`, then the encapsulated Pixel Data element is written by hand with a Basic
Offset Table reserved up front and filled in at the end. Each level holds one row of
tiles in memory at a time, and lower levels are made by 2x2 averaging of the level
above: a 20,000-tile (200 MB) pyramid runs in about 220 MB of memory, not gigabytes.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import imagecodecs
import numpy as np
from pydicom import Dataset, dcmwrite
from pydicom.uid import JPEGBaseline8Bit, VLWholeSlideMicroscopyImageStorage

from tessel.demo.iod import (
    Patient,
    Uids,
    acquired_at,
    add_content_time,
    add_equipment,
    add_series,
    add_study,
    code_item,
    new_instance,
    output_dir,
    sequence,
    set_sop_instance_uid,
)
from tessel.demo.phantoms import U8
from tessel.demo.slide import BACKGROUND_RGB, CELL, SlideTexture
from tessel.errors import InvalidInput, Unsupported

BASE_PIXEL_SPACING_MM = 0.0005  # 0.5 um: a 20x scan
SLIDE_ORIGIN_MM = (20.0, 40.0)  # where the scanned area starts on the slide
SECTION_THICKNESS_UM = 4.0
# Explicit VR LE tag and VR of Lossy Image Compression Ratio, found in the encoded header.
RATIO_TAG_BYTES = b"\x28\x00\x12\x21DS"
RATIO_PLACEHOLDER = "1.00000000000000"  # 16 characters: room for the real ratio


@dataclass(frozen=True, slots=True)
class Level:
    """One pyramid level: its total pixel matrix and its tile grid."""

    index: int
    width: int
    height: int
    columns: int  # tiles across
    rows: int  # tiles down

    @property
    def frames(self) -> int:
        return self.columns * self.rows


def pyramid_levels(base_width: int, base_height: int, tile: int, levels: int) -> list[Level]:
    """Each level halves the one above, rounding up, as scanners' pyramids do."""
    out = []
    width, height = base_width, base_height
    for k in range(levels):
        out.append(Level(k, width, height, -(-width // tile), -(-height // tile)))
        width, height = -(-width // 2), -(-height // 2)
    return out


def write_wsi_pyramid(
    out_dir: Path | str,
    *,
    base_width: int = 4096,
    base_height: int = 3072,
    tile: int = 256,
    levels: int = 4,
    seed: int = 0,
    jpeg_quality: int = 85,
    patient: Patient | None = None,
    workers: int | None = None,
) -> list[Path]:
    """A tiled H&E slide pyramid: one series, one VL WSI instance (file) per level.

    Level 0 is ORIGINAL at 0.5 um per pixel; each further level is DERIVED/RESAMPLED at
    half the resolution. Tiles are JPEG Baseline, 4:2:2 chroma (YBR_FULL_422).
    """
    if levels < 1 or base_width < 1 or base_height < 1:
        raise InvalidInput("levels, base_width and base_height must be at least 1", levels=levels)
    if tile % CELL or tile < CELL:
        raise InvalidInput(f"tile must be a positive multiple of {CELL}", tile=tile)
    if not 1 <= jpeg_quality <= 100:
        raise InvalidInput("jpeg_quality must be within 1..100", jpeg_quality=jpeg_quality)
    patient = patient or Patient("Phantom^Slide", "TESSEL-SM", birth_date="19770623", sex="F")
    out = output_dir(out_dir)
    pyramid = pyramid_levels(base_width, base_height, tile, levels)
    uids = Uids("wsi", seed, patient.patient_id, base_width, base_height, tile, levels)
    template = _template(patient, uids, seed)
    texture = SlideTexture(width=base_width, height=base_height, tile=tile, rng=np.random.default_rng(seed))
    paths = [out / f"sm-level-{level.index}.dcm" for level in pyramid]
    headers = [_level_header(template, level, pyramid[0], tile, uids) for level in pyramid]
    files = [
        _LevelFile(path, header, level.frames, tile)
        for path, header, level in zip(paths, headers, pyramid, strict=True)
    ]
    encoder = _TileEncoder(jpeg_quality, tile, with_halves=levels > 1)
    threads = workers if workers is not None else min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=max(threads, 1)) as pool, _closing_all(files):
        bands = {level.index: _Band(level, tile) for level in pyramid[1:]}  # level 0 is never held

        def emit(k: int, results: Iterable[tuple[bytes, U8 | None]]) -> None:
            for column, (frame, half) in enumerate(results):
                files[k].append(frame)
                if half is not None and k + 1 < levels:
                    bands[k + 1].place(column, half)
            if k + 1 < levels:
                bands[k + 1].advance()
                if bands[k + 1].full:
                    flush(k + 1)

        def flush(k: int) -> None:
            emit(k, pool.map(encoder.encode, bands[k].tiles()))
            bands[k].reset()

        base = pyramid[0]
        for row in range(base.rows):
            jobs = [(column * tile, row * tile) for column in range(base.columns)]
            emit(0, pool.map(lambda xy: encoder.render(texture, *xy), jobs))
        for k in range(1, levels):  # the last, partial band of each level, top down
            if bands[k].filled:
                flush(k)
    return paths


# -- tiles ------------------------------------------------------------------------------------


class _TileEncoder:
    """JPEG-encodes a tile and halves it for the next level; glass tiles are encoded once."""

    def __init__(self, quality: int, tile: int, *, with_halves: bool) -> None:
        self._quality = quality
        self._with_halves = with_halves
        self._glass = np.empty((tile, tile, 3), dtype=np.uint8)
        self._glass[:] = BACKGROUND_RGB
        self._glass_frame = self._jpeg(self._glass)
        self._glass_half = _halve(self._glass)

    def render(self, texture: SlideTexture, x0: int, y0: int) -> tuple[bytes, U8 | None]:
        if texture.is_background(x0, y0):
            return self._glass_frame, self._glass_half if self._with_halves else None
        return self.encode(texture.tile_pixels(x0, y0))

    def encode(self, pixels: U8) -> tuple[bytes, U8 | None]:
        if np.array_equal(pixels, self._glass):
            return self._glass_frame, self._glass_half if self._with_halves else None
        return self._jpeg(pixels), _halve(pixels) if self._with_halves else None

    def _jpeg(self, pixels: U8) -> bytes:
        # 4:2:2 chroma subsampling in YCbCr is exactly what YBR_FULL_422 declares.
        return bytes(imagecodecs.jpeg8_encode(pixels, level=self._quality, subsampling="422"))


def _halve(pixels: U8) -> U8:
    """2 x 2 box average, rounded: the resampling of the level below."""
    wide = pixels.astype(np.uint16)
    total = wide[0::2, 0::2] + wide[1::2, 0::2] + wide[0::2, 1::2] + wide[1::2, 1::2] + 2
    return (total >> 2).astype(np.uint8)


class _Band:
    """One row of tiles of a lower level, filled half-tile rows at a time from the level above."""

    def __init__(self, level: Level, tile: int) -> None:
        self._tile = tile
        self._columns = level.columns
        self._pixels = np.empty((tile, level.columns * tile, 3), dtype=np.uint8)
        self.filled = 0
        self.reset()

    @property
    def full(self) -> bool:
        return self.filled >= self._tile

    def place(self, column: int, half: U8) -> None:
        h, w, _ = half.shape
        self._pixels[self.filled : self.filled + h, column * w : (column + 1) * w] = half

    def advance(self) -> None:
        self.filled += self._tile // 2

    def tiles(self) -> list[U8]:
        t = self._tile
        return [np.ascontiguousarray(self._pixels[:, c * t : (c + 1) * t]) for c in range(self._columns)]

    def reset(self) -> None:
        self._pixels[:] = BACKGROUND_RGB  # padding right and below the pixel matrix is glass
        self.filled = 0


# -- the file ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Header:
    data: bytes
    ratio_at: int  # where the Lossy Image Compression Ratio value starts
    ratio_length: int


class _LevelFile:
    """A Part 10 file whose encapsulated Pixel Data is appended one frame at a time."""

    def __init__(self, path: Path, header: _Header, frames: int, tile: int) -> None:
        self._path = path
        self._header = header
        self._frames = frames
        self._raw_frame_bytes = tile * tile * 3
        self._file = path.open("wb")
        self._file.write(header.data)
        # (7FE0,0010) OB, undefined length, then the Basic Offset Table item, zeroed for now.
        self._file.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, 0xFFFFFFFF))
        self._file.write(struct.pack("<HHI", 0xFFFE, 0xE000, 4 * frames))
        self._table_at = self._file.tell()
        self._file.write(bytes(4 * frames))
        self._offsets: list[int] = []
        self._position = 0

    def append(self, frame: bytes) -> None:
        if len(self._offsets) >= self._frames:
            raise AssertionError(f"{self._path.name}: more than {self._frames} frames")
        padded = frame + b"\x00" if len(frame) % 2 else frame  # items have even length
        self._offsets.append(self._position)
        self._file.write(struct.pack("<HHI", 0xFFFE, 0xE000, len(padded)))
        self._file.write(padded)
        self._position += 8 + len(padded)
        if self._position > 0xFFFFFFFF:
            raise Unsupported(
                "a pyramid level over 4 GiB does not fit a Basic Offset Table", path=str(self._path)
            )

    def close(self) -> None:
        if len(self._offsets) != self._frames:
            raise AssertionError(f"{self._path.name}: {len(self._offsets)} of {self._frames} frames written")
        self._file.write(struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))  # Sequence Delimitation Item
        self._file.seek(self._table_at)
        self._file.write(np.asarray(self._offsets, dtype="<u4").tobytes())
        compressed = self._position - 8 * self._frames
        ratio = f"{self._frames * self._raw_frame_bytes / max(compressed, 1):.2f}"
        self._file.seek(self._header.ratio_at)
        self._file.write(ratio.ljust(self._header.ratio_length).encode("ascii"))
        self._file.close()

    def discard(self) -> None:
        self._file.close()
        self._path.unlink(missing_ok=True)


@contextmanager
def _closing_all(files: list[_LevelFile]) -> Iterator[None]:
    """Close every level file on success; on failure remove the partial files."""
    try:
        yield
    except BaseException:
        for level_file in files:
            level_file.discard()
        raise
    for level_file in files:
        level_file.close()


# -- the header -------------------------------------------------------------------------------


def _template(patient: Patient, uids: Uids, seed: int) -> Dataset:
    """Everything the levels share: patient to optical path."""
    moment = acquired_at(seed, "wsi")
    ds = new_instance(VLWholeSlideMicroscopyImageStorage, JPEGBaseline8Bit, patient)
    add_study(
        ds,
        uid=uids("study"),
        moment=moment,
        accession_number=f"SM{seed:06d}",
        description="SURGICAL PATHOLOGY H&E",
    )
    add_series(ds, uid=uids("series"), modality="SM", number=1, description="H&E 20x", moment=moment)
    add_equipment(ds, "Synthetic slide scanner")
    add_content_time(ds, moment)
    ds.AcquisitionDateTime = moment.strftime("%Y%m%d%H%M%S")
    ds.FrameOfReferenceUID = uids("frame-of-reference")
    ds.PositionReferenceIndicator = "SLIDE_CORNER"
    ds.PyramidUID = uids("pyramid")
    ds.PyramidLabel = "H&E"
    ds.VolumetricProperties = "VOLUME"
    ds.SpecimenLabelInImage = "NO"
    ds.BurnedInAnnotation = "NO"
    ds.FocusMethod = "AUTO"
    ds.ExtendedDepthOfField = "NO"
    ds.ImageOrientationSlide = [0, -1, 0, -1, 0, 0]
    origin = Dataset()
    origin.XOffsetInSlideCoordinateSystem = SLIDE_ORIGIN_MM[0]
    origin.YOffsetInSlideCoordinateSystem = SLIDE_ORIGIN_MM[1]
    ds.TotalPixelMatrixOriginSequence = sequence(origin)
    ds.TotalPixelMatrixFocalPlanes = 1
    ds.NumberOfOpticalPaths = 1
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionMethod = "ISO_10918_1"
    ds.LossyImageCompressionRatio = RATIO_PLACEHOLDER
    ds.DimensionOrganizationType = "TILED_FULL"
    organization = uids("dimension-organization")
    ds.DimensionOrganizationSequence = sequence(_item(DimensionOrganizationUID=organization))
    ds.DimensionIndexSequence = sequence(
        *(
            _item(
                DimensionOrganizationUID=organization,
                DimensionIndexPointer=pointer,
                FunctionalGroupPointer=0x0048021A,
            )
            for pointer in (0x0048021E, 0x0048021F)  # column, row position in the total pixel matrix
        )
    )
    ds.ContainerIdentifier = f"SLIDE-{seed:04d}"
    ds.IssuerOfTheContainerIdentifierSequence = sequence()
    ds.ContainerTypeCodeSequence = sequence(code_item("433466003", "SCT", "Microscope slide"))
    ds.AcquisitionContextSequence = sequence()
    ds.SpecimenDescriptionSequence = sequence(_specimen(uids("specimen"), f"SPECIMEN-{seed:04d}"))
    ds.OpticalPathSequence = sequence(_optical_path())
    return ds


def _level_header(template: Dataset, level: Level, base: Level, tile: int, uids: Uids) -> _Header:
    ds = template  # the levels differ only in what is set here, so reuse one Dataset
    set_sop_instance_uid(ds, uids("instance", level.index))
    ds.InstanceNumber = level.index + 1
    original = level.index == 0
    ds.ImageType = (
        ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
        if original
        else ["DERIVED", "PRIMARY", "VOLUME", "RESAMPLED"]
    )
    ds.Rows = tile
    ds.Columns = tile
    ds.NumberOfFrames = level.frames
    ds.TotalPixelMatrixColumns = level.width
    ds.TotalPixelMatrixRows = level.height
    spacing = BASE_PIXEL_SPACING_MM * 2**level.index
    # The imaged area is the base level's; lower levels cover it with coarser pixels.
    ds.ImagedVolumeWidth = round(base.width * BASE_PIXEL_SPACING_MM, 6)
    ds.ImagedVolumeHeight = round(base.height * BASE_PIXEL_SPACING_MM, 6)
    ds.ImagedVolumeDepth = SECTION_THICKNESS_UM
    measures = _item(PixelSpacing=[spacing, spacing], SliceThickness=SECTION_THICKNESS_UM / 1000)
    shared = Dataset()
    shared.PixelMeasuresSequence = sequence(measures)
    shared.WholeSlideMicroscopyImageFrameTypeSequence = sequence(_item(FrameType=list(ds.ImageType)))
    shared.OpticalPathIdentificationSequence = sequence(_item(OpticalPathIdentifier="1"))
    ds.SharedFunctionalGroupsSequence = sequence(shared)
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    data = buffer.getvalue()
    at = data.find(RATIO_TAG_BYTES)
    length = int.from_bytes(data[at + 6 : at + 8], "little")
    if at < 0 or data[at + 8 : at + 8 + length].strip() != RATIO_PLACEHOLDER.encode():
        raise AssertionError("Lossy Image Compression Ratio placeholder not found in the header")
    return _Header(data, at + 8, length)


def _item(**values: object) -> Dataset:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def _specimen(uid: str, identifier: str) -> Dataset:
    """One specimen, stained with hematoxylin and eosin, as Slim lists it."""
    steps = [
        _content("TEXT", ("121041", "DCM", "Specimen Identifier"), text=identifier),
        _content("CODE", ("111701", "DCM", "Processing type"), code=("127790008", "SCT", "Staining")),
        _content(
            "CODE", ("424361007", "SCT", "Using substance"), code=("12710003", "SCT", "hematoxylin stain")
        ),
        _content(
            "CODE",
            ("424361007", "SCT", "Using substance"),
            code=("36879007", "SCT", "water soluble eosin stain"),
        ),
    ]
    preparation = Dataset()
    preparation.SpecimenPreparationStepContentItemSequence = sequence(*steps)
    specimen = Dataset()
    specimen.SpecimenIdentifier = identifier
    specimen.SpecimenUID = uid
    specimen.IssuerOfTheSpecimenIdentifierSequence = sequence()
    specimen.SpecimenPreparationSequence = sequence(preparation)
    specimen.SpecimenShortDescription = "H&E section"
    return specimen


def _content(
    value_type: str, name: tuple[str, str, str], *, text: str = "", code: tuple[str, str, str] | None = None
) -> Dataset:
    item = Dataset()
    item.ValueType = value_type
    item.ConceptNameCodeSequence = sequence(code_item(*name))
    if code is not None:
        item.ConceptCodeSequence = sequence(code_item(*code))
    else:
        item.TextValue = text
    return item


def _optical_path() -> Dataset:
    path = Dataset()
    path.OpticalPathIdentifier = "1"
    path.OpticalPathDescription = "Brightfield"
    path.IlluminationTypeCodeSequence = sequence(code_item("111744", "DCM", "Brightfield illumination"))
    path.IlluminationColorCodeSequence = sequence(code_item("414298005", "SCT", "Full Spectrum"))
    path.ObjectiveLensPower = 20
    path.ICCProfile = srgb_icc_profile()
    path.ColorSpace = "SRGB"
    return path


def srgb_icc_profile() -> bytes:
    """A minimal ICC v2 display profile for sRGB (D50 primaries, gamma 2.2 curves).

    Required in the Optical Path for colour images; built here rather than shipped.
    """

    def s15(value: float) -> bytes:
        return struct.pack(">i", round(value * 65536))

    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ " + bytes(4) + s15(x) + s15(y) + s15(z)

    description = b"tessel sRGB"
    tags: list[tuple[bytes, bytes]] = [
        (
            b"desc",
            b"desc"
            + bytes(4)
            + struct.pack(">I", len(description) + 1)
            + description
            + b"\x00"
            + bytes(4 + 4 + 2 + 1 + 67),
        ),
        (b"cprt", b"text" + bytes(4) + b"No copyright, use freely\x00"),
        (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
        (b"rXYZ", xyz(0.4361, 0.2225, 0.0139)),
        (b"gXYZ", xyz(0.3851, 0.7169, 0.0971)),
        (b"bXYZ", xyz(0.1431, 0.0606, 0.7141)),
    ]
    curve = b"curv" + bytes(4) + struct.pack(">IH", 1, round(2.2 * 256))
    table_size = 4 + 12 * (len(tags) + 3)
    offset = 128 + table_size
    entries, blobs = [], b""
    for signature, blob in tags:
        entries.append(struct.pack(">4sII", signature, offset + len(blobs), len(blob)))
        blobs += blob + bytes(-len(blob) % 4)
    curve_at = offset + len(blobs)
    blobs += curve + bytes(-len(curve) % 4)
    entries += [
        struct.pack(">4sII", signature, curve_at, len(curve)) for signature in (b"rTRC", b"gTRC", b"bTRC")
    ]
    size = offset + len(blobs)
    header = struct.pack(
        ">I4sI4s4s4s6H4s4sI4s4sQI",
        size,
        b"",
        0x02100000,
        b"mntr",
        b"RGB ",
        b"XYZ ",
        2024,
        1,
        1,
        0,
        0,
        0,
        b"acsp",
        b"",
        0,
        b"",
        b"",
        0,
        0,
    )
    header += s15(0.9642) + s15(1.0) + s15(0.8249) + bytes(4) + bytes(44)
    return header + struct.pack(">I", len(tags) + 3) + b"".join(entries) + blobs
