"""Two `tessel serve` processes on one PostgreSQL catalog and one S3 bucket, as behind a load balancer.

They keep no state of their own: what one writes the other serves at once, concurrent
updates of one image set through both make exactly one version each round (the rest
get ConflictException, nothing is lost), and neither leaves files in its data directory.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.ahi.conftest import (KEY_ID, ROLE_ARN, SECRET, make_client, server_env, start_server, stop_server,
                                wait_for_job)
from tests.factory import make_series
from tests.stack import Stack

CONTENDERS = 6  # per server and round
ROUNDS = 3
# Each round's winner writes its own attribute: a lost update would drop an earlier round's value.
ATTRIBUTES = ("StudyDescription", "ReferringPhysicianName", "AdditionalPatientHistory")


@pytest.fixture(scope="module")
def pair(scaleout: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any, list[Path]]]:
    env = server_env(TESSEL_ACCESS_KEY_ID=KEY_ID, TESSEL_SECRET_ACCESS_KEY=SECRET, **scaleout.env())
    root = tmp_path_factory.mktemp("pair")
    data_dirs = [root / "a" / "data", root / "b" / "data"]
    procs: list[tuple[Any, int, Path]] = []
    try:
        with ThreadPoolExecutor(2) as pool:  # started together: they race for the first migration too
            starts = [(pool.submit(start_server, d, env, timeout=180), d) for d in data_dirs]
        procs.extend((*f.result(), d) for f, d in starts if f.exception() is None)
        for f, _ in starts:
            f.result()  # a server that did not start fails the fixture (after the other is stopped)
        clients = [make_client(f"http://127.0.0.1:{port}", KEY_ID, SECRET, max_pool_connections=CONTENDERS)
                   for _, port, _ in procs]
        yield clients[0], clients[1], data_dirs
    finally:
        errors = [stop_server(proc, data_dir)[1] for proc, _, data_dir in procs]
        for err in errors:
            assert "Traceback" not in err, err


def test_what_one_server_writes_the_other_serves_at_once(pair: tuple[Any, Any, list[Path]],
                                                         tmp_path: Path) -> None:
    a, b, _ = pair
    datastore = a.create_datastore(datastoreName="shared")["datastoreId"]
    assert b.get_datastore(datastoreId=datastore)["datastoreProperties"]["datastoreStatus"] == "ACTIVE"
    image_set = _import(a, b, datastore, tmp_path)
    for round_ in range(1, 4):
        update = {"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyDescription": f"through a, {round_}"}}}
        out = a.update_image_set_metadata(
            datastoreId=datastore, imageSetId=image_set, latestVersionId=str(round_),
            updateImageSetMetadataUpdates={"DICOMUpdates": {"updatableAttributes": json.dumps(update).encode()}})
        assert out["latestVersionId"] == str(round_ + 1)
        # the very next request, through the other server
        assert b.get_image_set(datastoreId=datastore, imageSetId=image_set)["versionId"] == str(round_ + 1)
        assert _metadata(b, datastore, image_set)["Study"]["DICOM"]["StudyDescription"] == f"through a, {round_}"


def test_concurrent_updates_through_both_servers_make_one_version_per_round_and_lose_nothing(
        pair: tuple[Any, Any, list[Path]], tmp_path: Path) -> None:
    a, b, _ = pair
    datastore = a.create_datastore(datastoreName="contended")["datastoreId"]
    image_set = _import(a, b, datastore, tmp_path)
    winners: list[str] = []
    for round_, attribute in enumerate(ATTRIBUTES[:ROUNDS], start=1):
        outcomes: list[tuple[str, str]] = []  # (contender, "ok" | "conflict" | other error)
        start = threading.Barrier(2 * CONTENDERS)

        def contend(client: Any, name: str) -> None:
            update = {"SchemaVersion": 1.1, "Study": {"DICOM": {attribute: name}}}
            start.wait()
            try:
                out = client.update_image_set_metadata(
                    datastoreId=datastore, imageSetId=image_set, latestVersionId=str(round_),
                    updateImageSetMetadataUpdates={"DICOMUpdates": {
                        "updatableAttributes": json.dumps(update).encode()}})
                assert out["latestVersionId"] == str(round_ + 1)
                outcomes.append((name, "ok"))
            except client.exceptions.ConflictException:
                outcomes.append((name, "conflict"))
            except Exception as exc:  # recorded, so the assertion below shows it
                outcomes.append((name, repr(exc)))

        threads = [threading.Thread(target=contend, args=(client, f"{label}{i}"))
                   for label, client in (("a", a), ("b", b)) for i in range(CONTENDERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ok = [name for name, result in outcomes if result == "ok"]
        assert len(ok) == 1, outcomes
        assert sorted(result for _, result in outcomes) == ["conflict"] * (2 * CONTENDERS - 1) + ["ok"], outcomes
        winners.append(ok[0])
    for reader in (a, b):
        doc = _metadata(reader, datastore, image_set)
        assert [doc["Study"]["DICOM"][attr] for attr in ATTRIBUTES[:ROUNDS]] == winners  # every round's change
        versions = reader.list_image_set_versions(datastoreId=datastore, imageSetId=image_set)
        assert sorted(int(v["versionId"]) for v in versions["imageSetPropertiesList"]) == list(range(1, ROUNDS + 2))


def test_servers_on_the_shared_stores_keep_nothing_in_their_data_directories(
        pair: tuple[Any, Any, list[Path]]) -> None:
    *_, data_dirs = pair
    for data_dir in data_dirs:
        kept = sorted(str(p.relative_to(data_dir)) for p in data_dir.rglob("*")) if data_dir.exists() else []
        assert kept == [], kept


def _import(a: Any, b: Any, datastore: str, tmp_path: Path) -> str:
    """Import a 3-instance series through `a`; wait for it through `b`; returns the image set id."""
    folder = tmp_path / "series"
    make_series(folder, 3)
    job = a.start_dicom_import_job(datastoreId=datastore, dataAccessRoleArn=ROLE_ARN,
                                   inputS3Uri=folder.as_uri() + "/", outputS3Uri=(tmp_path / "out").as_uri() + "/")
    props = wait_for_job(b, datastore, job["jobId"])
    assert props["jobStatus"] == "COMPLETED", props
    (summary,) = b.search_image_sets(datastoreId=datastore)["imageSetsMetadataSummaries"]
    assert summary["version"] == 1
    return str(summary["imageSetId"])


def _metadata(client: Any, datastore: str, image_set: str) -> dict[str, Any]:
    import gzip

    out = client.get_image_set_metadata(datastoreId=datastore, imageSetId=image_set)
    return dict(json.loads(gzip.decompress(out["imageSetMetadataBlob"].read())))
