"""Deterministic synthetic DICOM Part 10 instances: CT, MR, radiographs, ultrasound, WSI.

Every builder takes a seed (numpy Generator for pixels, seed-hashed UIDs) and writes
the same bytes for the same arguments. Patients carry their own Specific Character
Set, so names in Latin-1, ISO 2022 (Japanese, Korean), GB18030 or UTF-8 round-trip.
Each builder writes into `out_dir` and returns the paths it wrote, in instance order.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom import Dataset
from pydicom.uid import (
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    MRImageStorage,
    UltrasoundMultiFrameImageStorage,
)

from tessel.demo import phantoms
from tessel.demo.iod import (
    Patient,
    Uids,
    acquired_at,
    add_content_time,
    add_equipment,
    add_grayscale_pixel_module,
    add_series,
    add_study,
    check_transfer_syntax,
    new_instance,
    output_dir,
    sequence,
    set_pixels,
    set_sop_instance_uid,
    write,
)
from tessel.demo.wsi import write_wsi_pyramid
from tessel.errors import InvalidInput

__all__ = [
    "Patient",
    "write_ct_series",
    "write_mr_series",
    "write_radiograph",
    "write_radiograph_set",
    "write_us_clip",
    "write_wsi_pyramid",
]

RADIOGRAPH_MODALITIES = ("DX", "CR")
PHOTOMETRICS = ("MONOCHROME2", "MONOCHROME1")
FRONTAL_VIEWS = ("PA", "AP")  # the phantom is a frontal chest, so no laterals


def write_ct_series(
    out_dir: Path | str,
    *,
    slices: int = 300,
    size: int = 512,
    seed: int = 0,
    patient: Patient | None = None,
    transfer_syntax: str = ExplicitVRLittleEndian,
) -> list[Path]:
    """An axial chest-abdomen CT: one study, one series, `slices` files of size x size.

    Stored values are 12-bit unsigned with Rescale Intercept -1024 (HU = value - 1024).
    """
    _check_positive(slices=slices, size=size)
    syntax = check_transfer_syntax(transfer_syntax)
    patient = patient or Patient("Phantom^Thorax", "TESSEL-CT", birth_date="19640312", sex="M")
    out = output_dir(out_dir)
    phantom = phantoms.CtPhantom(slices=slices, size=size, rng=np.random.default_rng(seed))
    uids = Uids("ct", seed, patient.patient_id, slices, size)
    moment = acquired_at(seed, "ct")

    ds = new_instance(CTImageStorage, syntax, patient)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    add_study(
        ds,
        uid=uids("study"),
        moment=moment,
        accession_number=f"CT{seed:06d}",
        description="CT CHEST ABDOMEN W CONTRAST",
    )
    add_series(
        ds,
        uid=uids("series"),
        modality="CT",
        number=2,
        description="Axial soft tissue",
        moment=moment,
        body_part="CHEST",
    )
    add_equipment(ds, "Synthetic CT")
    add_content_time(ds, moment)
    _add_axial_geometry(ds, uids("frame-of-reference"), phantom.pixel_spacing, phantom.slice_spacing)
    ds.KVP = 120
    ds.XRayTubeCurrent = 250
    ds.ConvolutionKernel = "STANDARD"
    ds.AcquisitionNumber = 1
    ds.RescaleIntercept = phantoms.CT_RESCALE_INTERCEPT
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.WindowCenter = [40, -600]
    ds.WindowWidth = [400, 1500]
    ds.WindowCenterWidthExplanation = ["SOFT TISSUE", "LUNG"]
    add_grayscale_pixel_module(ds, rows=size, columns=size)

    paths = []
    for k, z in enumerate(phantom.z_positions):
        _set_slice(ds, uids("instance", k + 1), k + 1, size, phantom.pixel_spacing, z)
        set_pixels(ds, phantom.slice_pixels(k), syntax)
        paths.append(write(ds, out / f"ct-{k + 1:04d}.dcm"))
    return paths


def write_mr_series(
    out_dir: Path | str,
    *,
    slices: int = 24,
    size: int = 256,
    seed: int = 0,
    patient: Patient | None = None,
    transfer_syntax: str = ExplicitVRLittleEndian,
) -> list[Path]:
    """An axial T1-weighted head MR: one series of `slices` files, 12-bit unsigned."""
    _check_positive(slices=slices, size=size)
    syntax = check_transfer_syntax(transfer_syntax)
    patient = patient or Patient("Phantom^Head", "TESSEL-MR", birth_date="19811105", sex="F")
    out = output_dir(out_dir)
    phantom = phantoms.MrPhantom(slices=slices, size=size, rng=np.random.default_rng(seed))
    uids = Uids("mr", seed, patient.patient_id, slices, size)
    moment = acquired_at(seed, "mr")

    ds = new_instance(MRImageStorage, syntax, patient)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    add_study(
        ds,
        uid=uids("study"),
        moment=moment,
        accession_number=f"MR{seed:06d}",
        description="MR BRAIN WO CONTRAST",
    )
    add_series(
        ds,
        uid=uids("series"),
        modality="MR",
        number=3,
        description="AX T1 SE",
        moment=moment,
        body_part="HEAD",
    )
    add_equipment(ds, "Synthetic MR 1.5T")
    add_content_time(ds, moment)
    _add_axial_geometry(ds, uids("frame-of-reference"), phantom.pixel_spacing, phantom.slice_spacing)
    ds.ScanningSequence = "SE"
    ds.SequenceVariant = "SP"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "2D"
    ds.SequenceName = "se2d1"
    ds.AngioFlag = "N"
    ds.RepetitionTime = 500
    ds.EchoTime = 12
    ds.EchoTrainLength = 1
    ds.NumberOfAverages = 1
    ds.ImagingFrequency = 63.87
    ds.ImagedNucleus = "1H"
    ds.MagneticFieldStrength = 1.5
    ds.FlipAngle = 90
    ds.SpacingBetweenSlices = _mm(phantom.slice_spacing)
    ds.WindowCenter = 500
    ds.WindowWidth = 1000
    add_grayscale_pixel_module(ds, rows=size, columns=size)

    paths = []
    for k, z in enumerate(phantom.z_positions):
        _set_slice(ds, uids("instance", k + 1), k + 1, size, phantom.pixel_spacing, z)
        set_pixels(ds, phantom.slice_pixels(k), syntax)
        paths.append(write(ds, out / f"mr-{k + 1:04d}.dcm"))
    return paths


def write_radiograph(
    out_dir: Path | str,
    *,
    size: int = 1024,
    modality: str = "DX",
    photometric: str = "MONOCHROME2",
    seed: int = 0,
    patient: Patient | None = None,
    transfer_syntax: str = ExplicitVRLittleEndian,
) -> list[Path]:
    """One PA chest radiograph, DX (For Presentation) or CR, 16 bits allocated, 12 stored."""
    _check_positive(size=size)
    syntax = check_transfer_syntax(transfer_syntax)
    patient = patient or Patient("Phantom^Chest", "TESSEL-DX", birth_date="19550720", sex="M")
    out = output_dir(out_dir)
    uids = Uids("radiograph", seed, patient.patient_id, size, modality)
    moment = acquired_at(seed, "radiograph")
    study = _Study(uids("study"), moment, f"XR{seed:06d}", "XR CHEST PA")
    pixels = phantoms.chest_radiograph(size, np.random.default_rng(seed))
    ds = _radiograph(
        modality=modality,
        photometric=photometric,
        patient=patient,
        study=study,
        series_uid=uids("series"),
        series_number=1,
        instance_uid=uids("instance", 1),
        instance_number=1,
        view="PA",
        pixels=pixels,
        transfer_syntax=syntax,
    )
    return [write(ds, out / f"{modality.lower()}-0001.dcm")]


def write_us_clip(
    out_dir: Path | str,
    *,
    frames: int = 20,
    rows: int = 240,
    columns: int = 320,
    seed: int = 0,
    patient: Patient | None = None,
) -> list[Path]:
    """A colour-Doppler ultrasound cine loop: one Ultrasound Multi-frame instance, RGB 8-bit."""
    _check_positive(frames=frames, rows=rows, columns=columns)
    if rows < 64 or columns < 64:
        raise InvalidInput("an ultrasound clip needs at least 64 x 64 pixels", rows=rows, columns=columns)
    patient = patient or Patient("Phantom^Abdomen", "TESSEL-US", birth_date="19900214", sex="F")
    out = output_dir(out_dir)
    uids = Uids("us", seed, patient.patient_id, frames, rows, columns)
    moment = acquired_at(seed, "us")
    pixels = phantoms.ultrasound_frames(frames, rows, columns, np.random.default_rng(seed))

    ds = new_instance(UltrasoundMultiFrameImageStorage, ExplicitVRLittleEndian, patient)
    set_sop_instance_uid(ds, uids("instance", 1))
    ds.ImageType = ["ORIGINAL", "PRIMARY", "ABDOMINAL", "0011"]
    add_study(
        ds,
        uid=uids("study"),
        moment=moment,
        accession_number=f"US{seed:06d}",
        description="US ABDOMEN DOPPLER",
    )
    add_series(
        ds,
        uid=uids("series"),
        modality="US",
        number=1,
        description="Colour Doppler cine",
        moment=moment,
        body_part="ABDOMEN",
    )
    add_equipment(ds, "Synthetic US")
    add_content_time(ds, moment)
    ds.InstanceNumber = 1
    ds.PatientOrientation = ""
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.NumberOfFrames = frames
    frame_time_ms = 50.0
    ds.FrameTime = frame_time_ms
    ds.FrameIncrementPointer = 0x00181063  # Frame Time
    ds.CineRate = int(1000 / frame_time_ms)
    ds.RecommendedDisplayFrameRate = int(1000 / frame_time_ms)
    ds.LossyImageCompression = "00"
    ds.UltrasoundColorDataPresent = 1
    ds.TransducerData = ["C5-2", "", ""]
    ds.SequenceOfUltrasoundRegions = sequence(_ultrasound_region(rows, columns))
    set_pixels(ds, pixels, ExplicitVRLittleEndian)
    return [write(ds, out / "us-0001.dcm")]


def write_radiograph_set(
    out_dir: Path | str,
    *,
    count: int = 2000,
    patients: int | Sequence[Patient] = 200,
    seed: int = 0,
    size: int = 64,
) -> list[Path]:
    """Many small CR/DX instances across patients and studies, for search and load tests.

    `patients` is a number of generated patients (mostly Latin names, some in Latin-1,
    Greek, Cyrillic, Japanese, Korean and Chinese character sets) or explicit Patients.
    Each patient has one to four studies over 2012-2024, each with its own accession
    number, date and modality; instances are spread evenly over the patients.
    """
    pool = _generated_patients(patients, seed) if isinstance(patients, int) else list(patients)
    _check_positive(count=count, size=size, patients=len(pool))
    if count < len(pool):
        raise InvalidInput("need at least one instance per patient", count=count, patients=len(pool))
    out = output_dir(out_dir)
    rng = np.random.default_rng(seed)
    # A few base images plus per-instance noise: each instance differs, generation stays cheap.
    bank = [phantoms.chest_radiograph(size, rng) for _ in range(8)]
    paths: list[Path] = []
    study_number = 0
    for p, patient in enumerate(pool):
        start, stop = p * count // len(pool), (p + 1) * count // len(pool)
        n = stop - start
        studies = int(rng.integers(1, min(4, n) + 1))
        days = np.sort(rng.integers(0, 13 * 365, size=studies))
        for s in range(studies):
            study_number += 1
            uids = Uids("radiograph-set", seed, patient.patient_id, s)
            moment = dt.datetime(2012, 1, 2, 7, 0) + dt.timedelta(
                days=int(days[s]), minutes=int(rng.integers(0, 720))
            )
            modality = RADIOGRAPH_MODALITIES[int(rng.integers(0, 2))]
            first, last = s * n // studies, (s + 1) * n // studies  # this study's share of the patient's
            study = _Study(
                uids("study"),
                moment,
                f"A{seed:02d}{study_number:07d}",
                "XR CHEST 2 VIEWS" if last - first > 1 else "XR CHEST 1 VIEW",
                study_id=str(s + 1),
                referring_physician=REFERRING[int(rng.integers(0, len(REFERRING)))],
            )
            for j in range(last - first):
                view = FRONTAL_VIEWS[j % 2]
                noise = rng.integers(-40, 41, size=(size, size))
                pixels = np.clip(
                    bank[int(rng.integers(0, len(bank)))] + noise, 0, phantoms.MAX_12_BIT
                ).astype(np.uint16)
                ds = _radiograph(
                    modality=modality,
                    photometric="MONOCHROME2",
                    patient=patient,
                    study=study,
                    # Each view its own series, so series attributes agree within a series.
                    series_uid=uids("series", view),
                    series_number=1 + j % 2,
                    instance_uid=uids("instance", j + 1),
                    instance_number=j + 1,
                    view=view,
                    pixels=pixels,
                    transfer_syntax=ExplicitVRLittleEndian,
                )
                paths.append(write(ds, out / f"rs-{start + first + j + 1:06d}.dcm"))
    return paths


# -- shared pieces ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Study:
    uid: str
    moment: dt.datetime
    accession_number: str
    description: str
    study_id: str = "1"
    referring_physician: str = ""


def _radiograph(
    *,
    modality: str,
    photometric: str,
    patient: Patient,
    study: _Study,
    series_uid: str,
    series_number: int,
    instance_uid: str,
    instance_number: int,
    view: str,
    pixels: np.ndarray,
    transfer_syntax: str,
) -> Dataset:
    if modality not in RADIOGRAPH_MODALITIES:
        raise InvalidInput(f"radiograph modality must be one of {RADIOGRAPH_MODALITIES}", modality=modality)
    if photometric not in PHOTOMETRICS:
        raise InvalidInput(
            f"photometric interpretation must be one of {PHOTOMETRICS}", photometric=photometric
        )
    sop_class = (
        DigitalXRayImageStorageForPresentation if modality == "DX" else ComputedRadiographyImageStorage
    )
    rows, columns = pixels.shape
    ds = new_instance(sop_class, transfer_syntax, patient)
    set_sop_instance_uid(ds, instance_uid)
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    add_study(
        ds,
        uid=study.uid,
        moment=study.moment,
        accession_number=study.accession_number,
        description=study.description,
        study_id=study.study_id,
        referring_physician=study.referring_physician,
    )
    add_series(
        ds,
        uid=series_uid,
        modality=modality,
        number=series_number,
        description=f"CHEST {view}",
        moment=study.moment,
        body_part="CHEST",
    )
    add_equipment(ds, f"Synthetic {modality}")
    add_content_time(ds, study.moment)
    ds.InstanceNumber = instance_number
    ds.ViewPosition = view
    ds.PatientOrientation = ["L", "F"]  # frontal views, shown as if facing the patient
    ds.ImageLaterality = "U"
    ds.KVP = 120
    ds.ExposureTime = 10
    ds.DistanceSourceToDetector = 1800
    spacing = _mm(430.0 / max(rows, columns))  # a 43 cm detector, whatever the matrix
    ds.ImagerPixelSpacing = [spacing, spacing]
    ds.PixelSpacing = [spacing, spacing]
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    if modality == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.DetectorType = "SCINTILLATOR"
        ds.DetectorConfiguration = "AREA"
        ds.PixelIntensityRelationship = "LOG"
        ds.PixelIntensityRelationshipSign = 1
        ds.RescaleIntercept = 0
        ds.RescaleSlope = 1
        ds.RescaleType = "US"
        # DX: IDENTITY goes with MONOCHROME2 and INVERSE with MONOCHROME1.
        ds.PresentationLUTShape = "IDENTITY" if photometric == "MONOCHROME2" else "INVERSE"
    if photometric == "MONOCHROME1":  # same picture, stored inverted
        pixels = (phantoms.MAX_12_BIT - pixels.astype(np.int32)).astype(np.uint16)
    low, high = np.percentile(pixels, [1, 99])
    ds.WindowCenter = int((low + high) / 2)
    ds.WindowWidth = max(int(high - low), 2)
    add_grayscale_pixel_module(ds, rows=rows, columns=columns, photometric=photometric)
    set_pixels(ds, pixels, check_transfer_syntax(transfer_syntax))
    return ds


def _add_axial_geometry(
    ds: Dataset, frame_of_reference: str, pixel_spacing: float, slice_spacing: float
) -> None:
    ds.FrameOfReferenceUID = frame_of_reference
    ds.PositionReferenceIndicator = ""
    ds.PatientPosition = "HFS"
    ds.PatientOrientation = ""
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [_mm(pixel_spacing), _mm(pixel_spacing)]
    ds.SliceThickness = _mm(slice_spacing)


def _set_slice(ds: Dataset, uid: str, number: int, size: int, pixel_spacing: float, z: float) -> None:
    set_sop_instance_uid(ds, uid)
    ds.InstanceNumber = number
    corner = _mm(-(size - 1) / 2 * pixel_spacing)  # centre of the first pixel; the grid is centred on 0
    ds.ImagePositionPatient = [corner, corner, _mm(z)]
    ds.SliceLocation = _mm(z)


def _ultrasound_region(rows: int, columns: int) -> Dataset:
    """One 2D tissue region over the whole image, so viewers can measure in cm."""
    region = Dataset()
    region.RegionSpatialFormat = 1  # 2D
    region.RegionDataType = 2  # colour flow
    region.RegionFlags = 0
    region.RegionLocationMinX0 = 0
    region.RegionLocationMinY0 = 0
    region.RegionLocationMaxX1 = columns - 1
    region.RegionLocationMaxY1 = rows - 1
    region.PhysicalUnitsXDirection = 3  # cm
    region.PhysicalUnitsYDirection = 3
    region.PhysicalDeltaX = 16.0 / rows  # a 16 cm deep sector
    region.PhysicalDeltaY = 16.0 / rows
    region.ReferencePixelX0 = columns // 2
    region.ReferencePixelY0 = 0
    return region


def _mm(value: float) -> float:
    """Rounded so that every Decimal String stays within its 16 characters."""
    return round(float(value), 4)


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise InvalidInput(f"{name} must be at least 1", **{name: value})


# -- generated patients for the radiograph set ------------------------------------------------

FAMILY_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Wilson", "Anderson",
    "Taylor", "Thomas", "Moore", "Martin", "Lee", "Thompson", "White", "Harris", "Clark", "Lewis",
    "Walker", "Hall", "Young", "King", "Wright", "Scott", "Green", "Baker", "Adams", "Nelson",
    "O'Brien", "van der Berg", "Smith-Jones", "McDonald", "Peters", "Jansen", "Rossi", "Novak",
)  # fmt: skip
GIVEN_NAMES = (
    "James", "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda", "William", "Susan",
    "David", "Barbara", "Richard", "Sarah", "Joseph", "Karen", "Anna", "Peter", "Maria", "Paul",
)  # fmt: skip
LATIN1_FAMILY_NAMES = (
    "Müller",
    "Schäfer",
    "Groß",
    "García",
    "Núñez",
    "Lefèvre",
    "Åström",
    "Sørensen",
    "Ødegård",
    "Brontë",
)
LATIN1_GIVEN_NAMES = ("Jürgen", "Zoë", "José", "François", "Björn", "Åsa", "Søren", "Inés", "Hélène", "Jörg")
# Names with their character sets: ideographic and phonetic groups where the culture has them.
MULTI_SCRIPT_NAMES: tuple[tuple[str, str | tuple[str, ...]], ...] = (
    ("Yamada^Tarou=山田^太郎=やまだ^たろう", ("", "ISO 2022 IR 87")),
    ("Suzuki^Hanako=鈴木^花子=すずき^はなこ", ("", "ISO 2022 IR 87")),
    ("Tanaka^Ichirou=田中^一郎=たなか^いちろう", ("", "ISO 2022 IR 87")),
    ("Hong^Gildong=洪^吉洞=홍^길동", ("", "ISO 2022 IR 149")),
    ("Kim^Minjun=金^敏俊=김^민준", ("", "ISO 2022 IR 149")),
    ("Wang^XiaoDong=王^小東", "GB18030"),
    ("Zhang^Wei=张^伟", "GB18030"),
    ("Li^Na=李^娜", "ISO_IR 192"),
    ("Παπαδόπουλος^Νίκος", "ISO_IR 126"),
    ("Иванов^Иван", "ISO_IR 144"),
    ("Nguyễn^Văn An", "ISO_IR 192"),
)
REFERRING = ("House^Gregory", "Grey^Meredith", "Kildare^James", "Quinn^Michaela", "")


def _generated_patients(count: int, seed: int) -> list[Patient]:
    rng = np.random.default_rng([seed, 7])
    pool = []
    for p in range(count):
        roll = rng.random()
        if roll < 0.72:
            family = FAMILY_NAMES[rng.integers(len(FAMILY_NAMES))]
            name = f"{family}^{GIVEN_NAMES[rng.integers(len(GIVEN_NAMES))]}"
            charset: str | tuple[str, ...] = ""
        elif roll < 0.90:
            family = LATIN1_FAMILY_NAMES[rng.integers(len(LATIN1_FAMILY_NAMES))]
            name = f"{family}^{LATIN1_GIVEN_NAMES[rng.integers(len(LATIN1_GIVEN_NAMES))]}"
            charset = "ISO_IR 100"
        else:
            name, charset = MULTI_SCRIPT_NAMES[rng.integers(len(MULTI_SCRIPT_NAMES))]
        birth = dt.date(1930, 1, 1) + dt.timedelta(days=int(rng.integers(0, 85 * 365)))
        sex = "MF"[int(rng.integers(0, 2))]
        pool.append(Patient(name, f"RS{seed:02d}-{p + 1:05d}", charset, birth.strftime("%Y%m%d"), sex))
    return pool
