"""Small synthetic DICOM instances for tests that must not depend on the shared corpus."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def make_instance(path: Path, *, study: str, series: str, sop: str | None = None,
                  patient_id: str = "P1", patient_name: str = "Doe^John", series_number: int = 1,
                  instance_number: int = 1, rows: int = 32, columns: int = 32, seed: int = 0,
                  frames: int = 1, extra: dict[str, Any] | None = None) -> Path:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 4096, size=(frames, rows, columns), dtype=np.uint16)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    sop = sop or generate_uid(entropy_srcs=[study, series, str(instance_number), str(seed)])
    ds.file_meta.MediaStorageSOPClassUID = CT_STORAGE
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = CT_STORAGE
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.PatientID = patient_id
    ds.PatientName = patient_name
    ds.StudyDate = "20240101"
    ds.StudyTime = "101500"
    ds.AccessionNumber = "ACC1"
    ds.StudyID = "1"
    ds.Modality = "CT"
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance_number
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    ds.PixelData = pixels.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def make_series(folder: Path, count: int, *, study: str | None = None, series: str | None = None,
                **kwargs: Any) -> list[Path]:
    study = study or generate_uid(entropy_srcs=[str(folder), "study"])
    series = series or generate_uid(entropy_srcs=[str(folder), "series"])
    return [make_instance(folder / f"{i:04d}.dcm", study=study, series=series, instance_number=i + 1,
                          seed=i, **kwargs) for i in range(count)]
