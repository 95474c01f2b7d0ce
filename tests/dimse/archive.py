"""What a datastore holds, read back through tessel.retrieve: for comparing C-STORE with import jobs."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from tessel import documents
from tessel.blobs import keys
from tessel.catalog.models import ImageSet
from tessel.ingest import jobs
from tessel.retrieve import get_image_frame, get_metadata
from tessel.stores import Stores

# File Meta elements that name who wrote the file (the importer's file, or tessel for DIMSE).
WRITER_META = {"ImplementationClassUID", "ImplementationVersionName", "SourceApplicationEntityTitle",
               "FileMetaInformationVersion",
               "FileMetaInformationGroupLength", "PrivateInformationCreatorUID", "PrivateInformation",
               "SendingApplicationEntityTitle", "ReceivingApplicationEntityTitle",
               "SourcePresentationAddress", "SendingPresentationAddress", "ReceivingPresentationAddress"}


def image_sets(stores: Stores, datastore_id: str) -> list[ImageSet]:
    with stores.catalog.read() as conn:
        return stores.catalog.find_image_sets(conn, datastore_id)


def instances(stores: Stores, datastore_id: str) -> dict[str, dict[str, Any]]:
    """SOP Instance UID -> what the metadata documents say of it, File Meta writer fields left out,
    with the study/series/patient levels it sits in and the image set's primary flag."""
    out: dict[str, dict[str, Any]] = {}
    for image_set in image_sets(stores, datastore_id):
        doc = get_metadata(stores, datastore_id, image_set.id)
        for series_uid, sop, node in documents.iter_instances(doc):
            dicom = {k: v for k, v in node["DICOM"].items() if k not in WRITER_META}
            frames = [{k: v for k, v in f.items() if k != "ID"} for f in node.get("ImageFrames") or []]
            out[sop] = {"instance": {**node, "DICOM": dicom, "ImageFrames": frames},
                        "series": doc["Study"]["Series"][series_uid]["DICOM"],
                        "study": doc["Study"]["DICOM"], "patient": doc["Patient"]["DICOM"],
                        "primary": image_set.is_primary}
    return out


def frames_by_instance(stores: Stores, datastore_id: str) -> dict[str, list[tuple[Any, str]]]:
    """SOP Instance UID -> [(CRC32 checksum of the decoded frame, sha256 of the stored frame bytes)]."""
    out: dict[str, list[tuple[Any, str]]] = {}
    for image_set in image_sets(stores, datastore_id):
        doc = get_metadata(stores, datastore_id, image_set.id)
        for _series, sop, node in documents.iter_instances(doc):
            frames = []
            for frame in node.get("ImageFrames") or []:
                checksum = (frame.get("PixelDataChecksumFromBaseToFullResolution") or [{}])[0].get("Checksum")
                data = get_image_frame(stores, datastore_id, image_set.id, frame["ID"]).data
                frames.append((checksum, hashlib.sha256(data).hexdigest()))
            out[sop] = frames
    return out


def unreferenced_frames(stores: Stores, datastore_id: str) -> list[str]:
    """Frame blobs of the datastore that no version of any image set refers to (left behind by a failure)."""
    referenced = set()
    for image_set in image_sets(stores, datastore_id):
        for version in range(1, image_set.latest_version + 1):
            doc = get_metadata(stores, datastore_id, image_set.id, version)
            for _series, _sop, node in documents.iter_instances(doc):
                referenced.update(keys.frame(datastore_id, f["ID"]) for f in node.get("ImageFrames") or [])
    prefix = keys.frame(datastore_id, "").rsplit("/frames/", 1)[0] + "/frames/"
    return sorted(k for k in stores.blobs.list(prefix) if k not in referenced)


def import_folder(stores: Stores, datastore_id: str, folder: Path) -> jobs.JobSummary:
    """Import `folder` with an import job, in this process."""
    job = jobs.start_import_job(stores, datastore_id, folder.resolve().as_uri(),
                                (folder.parent / f"{folder.name}-out").resolve().as_uri())
    return jobs.run_import_job(stores, job.id)


def manifest(summary: jobs.JobSummary, kind: str) -> dict[str, dict[str, Any]]:
    """An import job's WARNING or FAILURE manifest: input file path -> its entry."""
    import json
    from urllib.parse import unquote, urlparse

    folder = Path(unquote(urlparse(summary.output_uri).path)) / kind.upper()
    lines = (folder / f"{kind.lower()}.ndjson").read_text().splitlines()
    return {json.loads(line)["inputFile"]: json.loads(line) for line in lines if line.strip()}
