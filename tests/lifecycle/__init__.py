"""Builders for life-cycle tests: image sets committed through ingest.assemble from hand-made
staged instances (the shape staging.stage_parsed returns), with tiny frame blobs."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tessel import retrieve
from tessel.blobs import keys
from tessel.ingest.assemble import assemble
from tessel.stores import Stores

HTJ2K = "1.2.840.10008.1.2.4.202"
CT = "1.2.840.10008.5.1.4.1.1.2"


def uid(*parts: object) -> str:
    """A valid, deterministic DICOM UID."""
    digits = int(hashlib.sha256(repr(parts).encode()).hexdigest(), 16) % 10**30
    return f"1.2.826.0.1.3680043.10.9999.{digits}"


def staged(stores: Stores, datastore_id: str, *, study: str, series: str, sop: str, frames: int = 1,
           patient_id: str = "P1", patient_name: str = "Doe^John", accession: str = "ACC1",
           study_id: str = "1", study_date: str = "20240101", study_time: str = "101500",
           series_number: int = 1, instance_number: int = 1, description: str = "CHEST",
           extra: dict[str, Any] | None = None) -> dict[str, Any]:
    frame_rows, image_frames = [], []
    for index in range(frames):
        data = f"{sop}/{index}".encode()
        frame_id = hashlib.blake2b(data, digest_size=16).hexdigest()
        stores.blobs.put(keys.frame(datastore_id, frame_id), data)
        frame_rows.append({"frame_id": frame_id, "frame_number": index + 1, "transfer_syntax_uid": HTJ2K,
                           "size": len(data)})
        image_frames.append({"ID": frame_id, "PixelDataChecksumFromBaseToFullResolution": [
            {"Width": 2, "Height": 2, "Checksum": index}], "MinPixelValue": 0, "MaxPixelValue": 9,
            "FrameSizeInBytes": 8})
    patient = {"PatientName": patient_name, "PatientID": patient_id, "PatientBirthDate": None}
    study_level = {"StudyInstanceUID": study, "StudyDate": study_date, "StudyTime": study_time,
                   "AccessionNumber": accession, "StudyID": study_id, "StudyDescription": description}
    series_level = {"SeriesInstanceUID": series, "SeriesNumber": str(series_number), "Modality": "CT",
                    "SoftwareVersions": ["1.0"]}
    dicom = {"MediaStorageSOPInstanceUID": sop, "TransferSyntaxUID": "1.2.840.10008.1.2.1",
             "SOPClassUID": CT, "SOPInstanceUID": sop, "InstanceNumber": str(instance_number),
             "ImageType": ["ORIGINAL", "PRIMARY"], "Rows": 2, "Columns": 2, "BitsAllocated": 16,
             "SliceThickness": "1.0", "ImageComments": "ok",
             "ReferencedImageSequence": [{"ReferencedSOPClassUID": CT}],
             "00091001": "GE", "PixelData": None, **(extra or {})}
    node = {"DICOM": dicom, "DICOMVRs": {"00091001": "LO"}, "StoredTransferSyntaxUID": HTJ2K,
            "ImageFrames": image_frames}
    body = {"patient": patient, "study": study_level, "series": series_level, "instance": node}
    return {**body, "sop_instance_uid": sop, "sop_class_uid": CT, "study_instance_uid": study,
            "series_instance_uid": series, "instance_number": instance_number,
            "stored_transfer_syntax_uid": HTJ2K,
            "study_keys": {"PatientID": patient_id, "StudyDate": study_date, "AccessionNumber": accession,
                           "StudyID": study_id},
            "series_keys": {"SeriesNumber": str(series_number)}, "frames": frame_rows, "warnings": [],
            "digest": hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest(), "size": 100}


def make_image_set(stores: Stores, datastore_id: str, *, study: str, series: str, count: int = 2,
                   frames: int = 1, start: int = 0, **kwargs: Any) -> str:
    """Commit instances start..start+count-1 of one series; returns the image set they landed in."""
    items = [staged(stores, datastore_id, study=study, series=series, sop=uid(series, i), frames=frames,
                    instance_number=i + 1, **kwargs) for i in range(start, start + count)]
    placements = assemble(stores.catalog, stores.blobs, datastore_id, items)
    assert len({p.image_set_id for p in placements}) == 1
    return placements[0].image_set_id


def document(stores: Stores, datastore_id: str, image_set_id: str, version: int | None = None) -> dict[str, Any]:
    return retrieve.get_metadata(stores, datastore_id, image_set_id, version)


def sops(doc: dict[str, Any]) -> dict[str, str]:
    """sop -> series of every instance in a document."""
    return {sop: series_uid for series_uid, series in doc["Study"]["Series"].items()
            for sop in series["Instances"]}
