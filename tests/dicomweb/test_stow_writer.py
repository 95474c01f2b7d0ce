"""STOW-RS through the server's ingest writer: concurrent one-instance requests are committed in
groups, each answered instance is readable at once, the result is what an import job stores,
and a server killed in the middle of uploads loses nothing it acknowledged."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pydicom
import sqlalchemy as sa

from tessel import retrieve
from tessel.blobs import keys
from tessel.catalog.sql.tables import frames, image_sets, instances
from tessel.config import Settings
from tessel.stores import open_stores
from tests.ahi.conftest import ROLE_ARN
from tests.dicomweb.conftest import KEY_ID, SECRET, Server, start_server, stop_server
from tests.dicomweb.test_stow import multipart
from tests.factory import make_series

FRAME_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1'


def _store_and_read_back(http: httpx.Client, datastore: str, path: Path) -> str:
    """STOW one instance, then at once fetch its frame: it must be there, pixel for pixel."""
    ds = pydicom.dcmread(path)
    body, content_type = multipart(path.read_bytes())
    answer = http.post(f"/datastore/{datastore}/studies", content=body, headers={"Content-Type": content_type})
    assert answer.status_code == 200, answer.text
    frame = http.get(f"/datastore/{datastore}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
                     f"/instances/{ds.SOPInstanceUID}/frames/1", headers={"Accept": FRAME_ACCEPT})
    assert frame.status_code == 200, frame.text
    assert ds.PixelData in frame.content  # the one part's body is the native frame
    return str(ds.SOPInstanceUID)


def _documents(ahi: Any, datastore: str) -> list[dict[str, Any]]:
    import gzip
    import json

    found = ahi.search_image_sets(datastoreId=datastore)["imageSetsMetadataSummaries"]
    docs = []
    for summary in found:
        blob = ahi.get_image_set_metadata(datastoreId=datastore, imageSetId=summary["imageSetId"])
        docs.append(json.loads(gzip.decompress(blob["imageSetMetadataBlob"].read())))
    return docs


def _comparable(doc: dict[str, Any]) -> dict[str, Any]:
    """A document without what differs between datastores (ids) or writers (File Meta)."""
    series = {}
    for uid, s in doc["Study"]["Series"].items():
        nodes = {}
        for sop, node in s["Instances"].items():
            node = dict(node)
            node["ImageFrames"] = [{k: v for k, v in f.items() if k != "ID"} for f in node.get("ImageFrames", [])]
            node["DICOM"] = {k: v for k, v in node["DICOM"].items() if not k.startswith(("Implementation", "Source"))}
            nodes[sop] = node
        series[uid] = {"DICOM": s["DICOM"], "Instances": nodes}
    return {"Patient": doc["Patient"], "Study": {"DICOM": doc["Study"]["DICOM"], "Series": series}}


def test_concurrent_uploads_are_readable_when_answered_and_stored_as_an_import(server: Server,
                                                                                tmp_path: Path) -> None:
    ahi = server.ahi()
    stowed = ahi.create_datastore(datastoreName=f"writer-{uuid.uuid4().hex[:8]}")["datastoreId"]
    imported = ahi.create_datastore(datastoreName=f"writer-{uuid.uuid4().hex[:8]}")["datastoreId"]
    paths = make_series(tmp_path / "series", 24, rows=64, columns=64)
    with server.http() as http, ThreadPoolExecutor(4) as pool:
        sops = list(pool.map(lambda p: _store_and_read_back(http, stowed, p), paths))
    assert len(set(sops)) == 24

    out = tmp_path / "out"
    out.mkdir()
    job = ahi.start_dicom_import_job(datastoreId=imported, dataAccessRoleArn=ROLE_ARN,
                                     inputS3Uri=(tmp_path / "series").as_uri() + "/", outputS3Uri=out.as_uri() + "/")
    deadline = time.monotonic() + 300
    while ahi.get_dicom_import_job(datastoreId=imported, jobId=job["jobId"])["jobProperties"]["jobStatus"] not in (
            "COMPLETED", "FAILED") and time.monotonic() < deadline:
        time.sleep(0.2)
    (by_stow,) = _documents(ahi, stowed)  # one image set: the series, whatever the commit groups
    (by_import,) = _documents(ahi, imported)
    assert _comparable(by_stow) == _comparable(by_import)

    # Sending them all again changes nothing: no new version.
    (summary,) = ahi.search_image_sets(datastoreId=stowed)["imageSetsMetadataSummaries"]
    with server.http() as http, ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda p: _store_and_read_back(http, stowed, p), paths))
    (again,) = ahi.search_image_sets(datastoreId=stowed)["imageSetsMetadataSummaries"]
    assert again["version"] == summary["version"] <= 24


def test_a_server_killed_during_uploads_keeps_every_acknowledged_instance(tmp_path: Path) -> None:
    paths = make_series(tmp_path / "series", 200, rows=128, columns=128)
    data = tmp_path / "node" / "data"
    proc, port = start_server(data)
    acknowledged: list[str] = []
    lock = threading.Lock()
    try:
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}", auth=(KEY_ID, SECRET), timeout=60)
        import boto3
        from botocore.config import Config

        ahi = boto3.client("medical-imaging", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                           aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET,
                           config=Config(inject_host_prefix=False, retries={"max_attempts": 1}))
        datastore = ahi.create_datastore(datastoreName="killed")["datastoreId"]

        def upload(path: Path) -> None:
            body, content_type = multipart(path.read_bytes())
            try:
                answer = http.post(f"/datastore/{datastore}/studies", content=body,
                                   headers={"Content-Type": content_type})
            except httpx.HTTPError:
                return  # the server died under this request: it was not acknowledged
            if answer.status_code == 200:
                with lock:
                    acknowledged.append(str(pydicom.dcmread(path).SOPInstanceUID))

        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(upload, p) for p in paths]
            deadline = time.monotonic() + 300
            while len(acknowledged) < 30 and time.monotonic() < deadline:
                time.sleep(0.01)
            os.kill(proc.pid, signal.SIGKILL)
            for f in futures:
                f.result()
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert 30 <= len(acknowledged) < len(paths), "the uploads finished before the server could be killed"

    stores = open_stores(Settings(data_dir=data))
    try:
        with stores.catalog.read() as conn:
            (image_set,) = conn.execute(sa.select(image_sets)).all()
            stored = set(conn.execute(sa.select(instances.c.sop_instance_uid)).scalars())
            frame_ids = conn.execute(sa.select(frames.c.frame_id)).scalars().all()
        assert set(acknowledged) <= stored  # nothing acknowledged is lost
        assert image_set.number_of_instances == len(stored) == len(frame_ids)
        doc = retrieve.get_metadata(stores, image_set.datastore_id, image_set.id)
        (series,) = doc["Study"]["Series"].values()
        assert set(series["Instances"]) == stored  # the catalog and the document agree
        for node in series["Instances"].values():
            (frame,) = node["ImageFrames"]
            blob = stores.blobs.get(keys.frame(image_set.datastore_id, frame["ID"]))
            pixels = retrieve.decode_stored_frame(blob, node)
            assert zlib.crc32(np.ascontiguousarray(pixels).tobytes()) == \
                frame["PixelDataChecksumFromBaseToFullResolution"][-1]["Checksum"]
    finally:
        stores.close()
    # And the store serves on: the next start takes the rest.
    proc, port = start_server(data)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", auth=(KEY_ID, SECRET), timeout=60) as http:
            for path in paths[-3:]:
                _store_and_read_back(http, datastore, path)
    finally:
        stop_server(proc, data)
