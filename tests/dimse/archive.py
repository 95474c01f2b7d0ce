"""What a datastore holds, read back through tessel.retrieve: for comparing C-STORE with import jobs."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from tessel import documents
from tessel.catalog.models import ImageSet
from tessel.ingest import jobs
from tessel.retrieve import get_image_frame, get_metadata
from tessel.stores import Stores


def image_sets(stores: Stores, datastore_id: str) -> list[ImageSet]:
    with stores.catalog.read() as conn:
        return stores.catalog.find_image_sets(conn, datastore_id)


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


def import_folder(stores: Stores, datastore_id: str, folder: Path) -> jobs.JobSummary:
    """Import `folder` with an import job, in this process."""
    job = jobs.start_import_job(stores, datastore_id, folder.resolve().as_uri(),
                                (folder.parent / f"{folder.name}-out").resolve().as_uri())
    return jobs.run_import_job(stores, job.id)
