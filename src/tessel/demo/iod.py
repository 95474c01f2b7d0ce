"""The IOD modules every demo builder shares: patient, study, series, equipment, file meta.

Builders fill one template `Dataset` and change only the per-instance attributes
between writes, so a 300-file series costs one template plus 300 `dcmwrite` calls.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom import Dataset, dcmwrite
from pydicom.dataset import FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
    generate_uid,
)

from tessel import __version__
from tessel.errors import Unsupported

NATIVE_TRANSFER_SYNTAXES = frozenset(
    {ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian}
)
MANUFACTURER = "tessel"


@dataclass(frozen=True, slots=True)
class Patient:
    """Whose instances a builder writes; `name` is encoded in `character_set` on write.

    `character_set` is the Specific Character Set value(s), e.g. "ISO_IR 100" or
    ("", "ISO 2022 IR 87") for Japanese with code extensions; "" leaves it out.
    """

    name: str = "Phantom^Demo"
    patient_id: str = "TESSEL-DEMO"
    character_set: str | tuple[str, ...] = "ISO_IR 100"
    birth_date: str = "19700101"
    sex: str = "O"


class Uids:
    """Deterministic UIDs: one namespace (builder, seed, patient) and a role give one UID.

    pydicom hashes the entropy sources under its UID root (SHA-512), so the same seed
    reproduces every UID and a different seed changes all of them. (With prefix=None
    pydicom would ignore the entropy and return a random 2.25 UID.)
    """

    def __init__(self, *namespace: object) -> None:
        self._namespace = ["tessel-demo", *(str(part) for part in namespace)]

    def __call__(self, *role: object) -> UID:
        return generate_uid(entropy_srcs=[*self._namespace, *(str(part) for part in role)])


def acquired_at(seed: int, kind: str) -> dt.datetime:
    """A fixed, seed-dependent acquisition moment, so files never depend on today's date."""
    offset = sum(map(ord, kind))
    return dt.datetime(2024, 1, 8, 8, 0) + dt.timedelta(
        days=(seed * 17 + offset) % 360, minutes=(seed * 37 + offset) % 540
    )


def da(moment: dt.date) -> str:
    return moment.strftime("%Y%m%d")


def tm(moment: dt.datetime) -> str:
    return moment.strftime("%H%M%S")


def new_instance(sop_class_uid: str, transfer_syntax: str, patient: Patient) -> Dataset:
    """An empty instance with File Meta, character set and Patient module filled in."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)
    # The character set goes first: pydicom encodes every text value with it on write.
    charset = patient.character_set
    if charset:  # "" keeps the default repertoire (ISO_IR 6): no Specific Character Set at all
        ds.SpecificCharacterSet = list(charset) if isinstance(charset, tuple) else charset
    ds.SOPClassUID = sop_class_uid
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    return ds


def set_sop_instance_uid(ds: Dataset, uid: str) -> None:
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = UID(uid)


def add_study(
    ds: Dataset,
    *,
    uid: str,
    moment: dt.datetime,
    accession_number: str,
    description: str,
    study_id: str = "1",
    referring_physician: str = "",
) -> None:
    ds.StudyInstanceUID = uid
    ds.StudyDate = da(moment)
    ds.StudyTime = tm(moment)
    ds.AccessionNumber = accession_number
    ds.StudyDescription = description
    ds.StudyID = study_id
    ds.ReferringPhysicianName = referring_physician


def add_series(
    ds: Dataset,
    *,
    uid: str,
    modality: str,
    number: int,
    description: str,
    moment: dt.datetime,
    body_part: str = "",
) -> None:
    ds.SeriesInstanceUID = uid
    ds.Modality = modality
    ds.SeriesNumber = number
    ds.SeriesDescription = description
    ds.SeriesDate = da(moment)
    ds.SeriesTime = tm(moment)
    if body_part:
        ds.BodyPartExamined = body_part


def add_equipment(ds: Dataset, model: str) -> None:
    """General (and Enhanced General) Equipment: WSI requires all four values."""
    ds.Manufacturer = MANUFACTURER
    ds.InstitutionName = "Tessel Demo Hospital"
    ds.StationName = "TESSEL"
    ds.ManufacturerModelName = model
    ds.DeviceSerialNumber = "TSL-0001"
    ds.SoftwareVersions = __version__


def add_content_time(ds: Dataset, moment: dt.datetime) -> None:
    ds.ContentDate = da(moment)
    ds.ContentTime = tm(moment)
    ds.AcquisitionDate = da(moment)
    ds.AcquisitionTime = tm(moment)
    ds.InstanceCreationDate = da(moment)
    ds.InstanceCreationTime = tm(moment)


def add_grayscale_pixel_module(
    ds: Dataset, *, rows: int, columns: int, photometric: str = "MONOCHROME2"
) -> None:
    """Image Pixel for 12 bits stored in 16, unsigned: what CT, MR and DX here all use."""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0


def code_item(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def sequence(*items: Dataset) -> DicomSequence:
    return DicomSequence(list(items))


def check_transfer_syntax(transfer_syntax: str) -> UID:
    """Native syntaxes, or any compressed one pydicom has a lossless encoder for here."""
    uid = UID(transfer_syntax)
    if uid in NATIVE_TRANSFER_SYNTAXES:
        return uid
    from pydicom.pixels.encoders.base import get_encoder  # only compressed output needs it

    try:
        encoder = get_encoder(uid)
    except NotImplementedError as exc:
        raise Unsupported(f"no encoder for transfer syntax {uid}", transfer_syntax_uid=str(uid)) from exc
    if not encoder.is_available:
        raise Unsupported(f"the encoder for {uid.name} is not installed", transfer_syntax_uid=str(uid))
    return uid


def set_pixels(ds: Dataset, pixels: np.ndarray, transfer_syntax: UID) -> None:
    """Pixel Data from stored values: raw for native syntaxes, else encoded and encapsulated."""
    if transfer_syntax in NATIVE_TRANSFER_SYNTAXES:
        ds.file_meta.TransferSyntaxUID = transfer_syntax
        vr = "OW" if ds.BitsAllocated > 8 else "OB"
        ds.add_new(0x7FE00010, vr, pixels.astype(pixels.dtype.newbyteorder("<"), copy=False).tobytes())
        return
    # generate_instance_uid=False: the UID is ours and deterministic, not a random one.
    plugin = "pydicom" if transfer_syntax == RLELossless else ""
    ds.compress(transfer_syntax, pixels, encoding_plugin=plugin, generate_instance_uid=False)


def write(ds: Dataset, path: Path) -> Path:
    """Part 10 with preamble and File Meta; pydicom fills the group length and implementation."""
    dcmwrite(path, ds, enforce_file_format=True)
    return path


def output_dir(out_dir: Path | str) -> Path:
    path = Path(out_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path
