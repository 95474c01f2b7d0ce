"""SearchImageSets benchmark: 100,000 synthetic image_sets rows, p50/p99 per query shape.

Rows are inserted in bulk (no documents), with the skew real archives have: a
de-identified "ANON" patient owning 10% of the rows, StudyID "1" on half of
them, 2% without a study date, 1% deleted. Two passes, both with maxResults 50:
- catalog: each query through `search_image_sets` (SQL + row conversion + cursor),
  with its SQLite plan printed, so a missing index shows as a SCAN or a temp B-tree;
- API: the same catalog served by `tessel serve`, each query sent by boto3's
  `search_image_sets` over loopback (SigV4, parsing, JSON both ways). Target: p99 < 50 ms.
The load average is printed with the figures (other work on the machine shows in them).

    .venv/bin/python benchmarks/search.py [--rows 100000] [--runs 200] [--skip-catalog] [--skip-api]
                                          [--cache DIR]

Loading 110,000 rows takes a minute; --cache DIR keeps the loaded catalog there (one file per
--rows) and later runs copy it instead, so that A/B runs of two versions can follow each other.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import sqlalchemy as sa

from tessel.catalog import Catalog
from tessel.catalog.search import SearchCriteria, SearchFilter, search_image_sets
from tessel.catalog.sql.tables import image_sets
from tessel.documents import study_date_time

DS = "d" * 32
OTHER_DS = "e" * 32
YEAR = 365 * 86400.0
T0 = 1_700_000_000.0


def make_rows(count: int, datastore_id: str, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    studies = max(1, count // 3)
    for n in range(count):
        study = rng.randrange(studies)
        created = T0 + rng.random() * YEAR
        has_date = rng.random() > 0.02
        date = f"{2005 + study % 20:04d}{1 + study % 12:02d}{1 + study % 28:02d}" if has_date else None
        time_ = f"{study % 24:02d}{study % 60:02d}{(study * 7) % 60:02d}" if has_date and study % 5 else None
        rows.append({
            "id": f"{datastore_id[:4]}{n:028x}", "datastore_id": datastore_id, "latest_version": 1,
            "state": "DELETED" if rng.random() < 0.01 else "ACTIVE", "workflow_status": "CREATED",
            "message": None, "is_primary": rng.random() < 0.9, "group_key": f"g{n}",
            "created_at": created, "updated_at": created + rng.random() * 30 * 86400,
            "deleted_at": None, "last_accessed_at": None, "storage_tier": "FREQUENT_ACCESS",
            "patient_id": "ANON" if rng.random() < 0.1 else f"PAT{study % 20000:05d}",
            "patient_name": f"Patient^{study}", "patient_birth_date": "19700101", "patient_sex": "O",
            "study_instance_uid": f"1.2.826.0.1.{study}", "study_id": "1" if rng.random() < 0.5 else str(study),
            "study_description": "CT CHEST", "accession_number": f"ACC{study:07d}",
            "study_date": date, "study_time": time_, "study_date_time": study_date_time(date, time_),
            "series_instance_uid": f"1.2.826.0.1.{study}.{n}", "series_modality": "CT",
            "series_body_part": "CHEST", "series_number": n % 10, "number_of_series": 1,
            "number_of_instances": 100,
        })
    return rows


def load(catalog: Catalog, rows: list[dict[str, Any]]) -> float:
    start = time.perf_counter()
    with catalog.write() as conn:
        for i in range(0, len(rows), 2000):
            conn.execute(sa.insert(image_sets), rows[i:i + 2000])
    return time.perf_counter() - start


def timed(runs: int, call: Callable[[int], Any]) -> tuple[float, float, int]:
    samples, found = [], 0
    for i in range(runs):
        start = time.perf_counter()
        found = len(call(i).image_sets)
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))], found


def plan(catalog: Catalog, criteria: SearchCriteria) -> str:
    """SQLite's plan for the first page of `criteria` (captured from the statement search runs)."""
    statements: list[Any] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        statements.append((statement, parameters))

    sa.event.listen(catalog.engine, "before_cursor_execute", capture)
    try:
        search_image_sets(catalog, DS, criteria, limit=50, cursor=None)
    finally:
        sa.event.remove(catalog.engine, "before_cursor_execute", capture)
    with catalog.read() as conn:
        lines = []
        for statement, parameters in statements:
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).fetchall()
            lines.append("; ".join(r[-1] for r in rows))
    return " | ".join(line for line in lines if line)


def loadavg() -> str:
    return "load " + " ".join(Path("/proc/loadavg").read_text().split()[:3])


def api_criteria(criteria: SearchCriteria) -> dict[str, Any]:
    """SearchCriteria as boto3's searchCriteria."""
    def value(field: str, v: Any) -> dict[str, Any]:
        if field == "DICOMStudyDateAndTime":
            date, time_ = v
            return {field: {"DICOMStudyDate": date, **({"DICOMStudyTime": time_} if time_ else {})}}
        if field in ("createdAt", "updatedAt"):
            return {field: dt.datetime.fromtimestamp(v, dt.timezone.utc)}
        return {field: v}

    out: dict[str, Any] = {}
    if criteria.filters:
        out["filters"] = [{"operator": f.operator, "values": [value(f.field, v) for v in f.values]}
                          for f in criteria.filters]
    if criteria.sort_field:
        out["sort"] = {"sortField": criteria.sort_field, "sortOrder": criteria.sort_order}
    return out


def build(path: Path, rows: list[dict[str, Any]], other: list[dict[str, Any]]) -> float:
    """A catalog file holding both datastores and their rows; the seconds the rows took to load."""
    from tessel.catalog.models import Datastore, DatastoreId, DatastoreStatus, LosslessStorageFormat

    catalog = Catalog.open(f"sqlite:///{path}")
    try:
        with catalog.write() as conn:
            for ds_id in (DS, OTHER_DS):
                catalog.insert_datastore(conn, Datastore(
                    id=DatastoreId(ds_id), name=f"bench-{ds_id[0]}", status=DatastoreStatus.ACTIVE,
                    lossless_storage_format=LosslessStorageFormat.HTJ2K, kms_key_arn=None,
                    lambda_authorizer_arn=None, client_token=None, created_at=T0, updated_at=T0))
        return load(catalog, rows) + load(catalog, other)
    finally:
        catalog.close()


def api_pass(source: Path, runs: int, queries: list[tuple[str, Callable[[int], SearchCriteria]]]) -> None:
    """The same rows behind a real server (a copy of the `source` catalog); every query through boto3."""
    import boto3
    import httpx
    from botocore.config import Config

    key_id, secret = "TSLBENCHSEARCH000001", "tessel-benchmark-secret-0123456789abcdef"
    with tempfile.TemporaryDirectory(prefix="tessel-bench-search-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        shutil.copyfile(source, data / "catalog.sqlite")
        ports = []
        for _ in range(2):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                ports.append(s.getsockname()[1])
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TESSEL_", "AWS_"))}
        env.update(TESSEL_ACCESS_KEY_ID=key_id, TESSEL_SECRET_ACCESS_KEY=secret)
        proc = subprocess.Popen([sys.executable, "-m", "tessel.cli.main", "serve", "--data-dir", str(data),
                                 "--port", str(ports[0]), "--dicom-port", str(ports[1])], env=env,
                                stdout=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{ports[0]}"
        try:
            for _ in range(600):
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            hi = boto3.client("medical-imaging", endpoint_url=url, region_name="us-east-1",
                              aws_access_key_id=key_id, aws_secret_access_key=secret,
                              config=Config(inject_host_prefix=False, retries={"max_attempts": 1}))
            token = None
            for _ in range(20):
                token = hi.search_image_sets(datastoreId=DS, maxResults=50, **(
                    {"nextToken": token} if token else {}))["nextToken"]
            print(f"\nAPI: boto3 search_image_sets against tessel serve [{loadavg()}]")
            print(f"{'query (maxResults 50)':58} {'p50 ms':>8} {'p99 ms':>8} {'rows':>5}")
            shapes: list[tuple[str, Callable[[int], dict[str, Any]]]] = [
                ("no filter, page 21 via nextToken", lambda i: {"nextToken": token})]
            shapes += [(name, lambda i, make=make: {"searchCriteria": api_criteria(make(i))})
                       for name, make in queries]
            for name, kwargs in shapes:
                samples, found = [], 0
                for i in range(runs):
                    began = time.perf_counter()
                    found = len(hi.search_image_sets(datastoreId=DS, maxResults=50, **kwargs(i))[
                        "imageSetsMetadataSummaries"])
                    samples.append((time.perf_counter() - began) * 1000)
                samples.sort()
                p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
                print(f"{name:58} {statistics.median(samples):8.2f} {p99:8.2f} {found:5d}", flush=True)
            print(f"[{loadavg()} at the end]")
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--analyze", action="store_true", help="run ANALYZE before measuring")
    parser.add_argument("--skip-catalog", action="store_true", help="only the API pass")
    parser.add_argument("--skip-api", action="store_true", help="only the catalog pass")
    parser.add_argument("--cache", type=Path, help="keep the loaded catalog in this directory and reuse it")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, {loadavg()} at start")
    with tempfile.TemporaryDirectory() as tmp:
        rows, other = make_rows(args.rows, DS, 1), make_rows(args.rows // 10, OTHER_DS, 2)
        cached = args.cache / f"search-{args.rows}.sqlite" if args.cache else None
        source = cached or Path(tmp) / "source.sqlite"
        if cached is not None and cached.exists():
            print(f"catalog of {args.rows:,} + {args.rows // 10:,} rows from {cached}")
        else:
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
            seconds = build(Path(f"{source}.part"), rows, other)
            os.replace(f"{source}.part", source)
            print(f"inserted {args.rows:,} + {args.rows // 10:,} rows in {seconds:.1f} s "
                  f"({(args.rows * 1.1) / seconds:,.0f} rows/s with every search index)")
        shutil.copyfile(source, Path(tmp) / "catalog.db")
        catalog = Catalog.open(f"sqlite:///{Path(tmp) / 'catalog.db'}")
        if args.analyze:
            with catalog.write() as conn:
                conn.exec_driver_sql("ANALYZE")
        live = [r for r in rows if r["state"] == "ACTIVE"]
        rng = random.Random(3)
        samples = [rng.choice(live) for _ in range(args.runs)]

        def eq(field: str, key: str, sort: str | None = None, order: str = "DESC") -> Callable[[int], SearchCriteria]:
            return lambda i: SearchCriteria((SearchFilter("EQUAL", field, (samples[i][key],)),), sort, order)

        def around(field: str, key: str, width: float) -> Callable[[int], tuple[float, float]]:
            return lambda i: (samples[i][key] - width / 2, samples[i][key] + width / 2)

        narrow_created = around("createdAt", "created_at", 86400.0)
        wide_created = around("createdAt", "created_at", YEAR / 2)
        week_updated = around("updatedAt", "updated_at", 7 * 86400.0)
        deep_cursor = None  # the nextToken of page 20 of the default search
        for _ in range(20):
            deep_cursor = search_image_sets(catalog, DS, SearchCriteria(), limit=50, cursor=deep_cursor).next_cursor

        def deep(i: int) -> Any:  # page 21 (rows 1001-1050)
            return search_image_sets(catalog, DS, SearchCriteria(), limit=50, cursor=deep_cursor)

        queries: list[tuple[str, Callable[[int], SearchCriteria] | None, Callable[[int], Any] | None]] = [
            ("no filter, updatedAt DESC (default)", lambda i: SearchCriteria(), None),
            ("no filter, page 21 via nextToken", None, deep),
            ("no filter, DICOMStudyDateAndTime ASC (nulls first)",
             lambda i: SearchCriteria((), "DICOMStudyDateAndTime", "ASC"), None),
            ("EQUAL DICOMPatientId", eq("DICOMPatientId", "patient_id"), None),
            ("EQUAL DICOMPatientId='ANON' (10% of rows)",
             lambda i: SearchCriteria((SearchFilter("EQUAL", "DICOMPatientId", ("ANON",)),)), None),
            ("EQUAL DICOMAccessionNumber", eq("DICOMAccessionNumber", "accession_number"), None),
            ("EQUAL DICOMStudyId='1' (50%), createdAt ASC",
             lambda i: SearchCriteria((SearchFilter("EQUAL", "DICOMStudyId", ("1",)),), "createdAt", "ASC"), None),
            ("EQUAL DICOMStudyInstanceUID", eq("DICOMStudyInstanceUID", "study_instance_uid"), None),
            ("EQUAL DICOMSeriesInstanceUID", eq("DICOMSeriesInstanceUID", "series_instance_uid"), None),
            ("EQUAL isPrimary=false, DICOMStudyDateAndTime DESC",
             lambda i: SearchCriteria((SearchFilter("EQUAL", "isPrimary", (False,)),), "DICOMStudyDateAndTime"),
             None),
            ("BETWEEN createdAt (1 day), updatedAt DESC",
             lambda i: SearchCriteria((SearchFilter("BETWEEN", "createdAt", narrow_created(i)),)), None),
            ("BETWEEN createdAt (6 months), updatedAt DESC",
             lambda i: SearchCriteria((SearchFilter("BETWEEN", "createdAt", wide_created(i)),)), None),
            ("BETWEEN createdAt (1 day), createdAt ASC",
             lambda i: SearchCriteria((SearchFilter("BETWEEN", "createdAt", narrow_created(i)),), "createdAt",
                                      "ASC"), None),
            ("BETWEEN updatedAt (1 week) + EQUAL series, updatedAt ASC",
             lambda i: SearchCriteria((SearchFilter("BETWEEN", "updatedAt", week_updated(i)),
                                       SearchFilter("EQUAL", "DICOMSeriesInstanceUID",
                                                    (samples[i]["series_instance_uid"],))), "updatedAt", "ASC"),
             None),
            ("BETWEEN DICOMStudyDateAndTime (1 year), same sort DESC",
             lambda i: SearchCriteria((SearchFilter("BETWEEN", "DICOMStudyDateAndTime", (
                 (f"{2005 + i % 20}0101", None), (f"{2005 + i % 20}1231", "235959"))),),
                 "DICOMStudyDateAndTime"), None),
            ("BETWEEN DICOMStudyDateAndTime (1 year) + EQUAL patient",
             lambda i: SearchCriteria((SearchFilter("BETWEEN", "DICOMStudyDateAndTime", (
                 ("20050101", None), ("20251231", None))),
                 SearchFilter("EQUAL", "DICOMPatientId", (samples[i]["patient_id"],)))), None),
        ]
        if not args.skip_catalog:
            print(f"\ncatalog: search_image_sets in this process [{loadavg()}]")
            print(f"{'query (maxResults 50)':58} {'p50 ms':>8} {'p99 ms':>8} {'rows':>5}")
            for name, criteria, call in queries:
                if call is None:
                    assert criteria is not None
                    make = criteria
                    call = lambda i, make=make: search_image_sets(catalog, DS, make(i), limit=50,  # noqa: E731
                                                                  cursor=None)
                p50, p99, found = timed(args.runs, call)
                print(f"{name:58} {p50:8.2f} {p99:8.2f} {found:5d}")
                if criteria is not None:
                    print(f"    plan: {plan(catalog, criteria(0))}")
        catalog.close()
        if not args.skip_api:
            api_pass(source, args.runs, [(name, criteria) for name, criteria, _ in queries if criteria is not None])


if __name__ == "__main__":
    main()
