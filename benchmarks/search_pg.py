"""Catalog hot paths on PostgreSQL with 10 million synthetic instances: p50/p99 and plans.

Rows are generated inside PostgreSQL (INSERT ... SELECT FROM generate_series), with the
indexes dropped during the load and rebuilt after, as a bulk load would do:

    instances, frames, dicom_instances   N rows (default 10,000,000; one frame each)
    image_sets, dicom_series             N / 10 (series of 10 instances)
    dicom_studies                        N / 40 (4 series per study)

with the skew real archives have (a de-identified "ANON" patient on 10% of image sets,
StudyID "1" on half, 2% without a study date, 1% deleted). Then each hot query runs
through tessel's own functions (SearchImageSets, QIDO-RS/C-FIND `query`, WADO-RS
`locate` and `get_frames`, GetImageFrame's `get_frame`) and its plan is printed, so a
missing index shows as a Seq Scan or a big Sort.

    .venv/bin/python benchmarks/search_pg.py [--instances 10000000] [--runs 200]
        [--url postgresql+psycopg://user@host:port/db]   # default: a throwaway local cluster

Loading 10 million instances takes ~10-20 minutes on 2 cores; `--keep` leaves the cluster
(and prints its URL) so that `--url ... --no-load` can measure again.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.stack starts PostgreSQL

from tessel.catalog import Catalog, query  # noqa: E402
from tessel.catalog.search import SearchCriteria, SearchFilter, search_image_sets  # noqa: E402
from tessel.config import Settings  # noqa: E402
from tessel.retrieve.instances import get_frames, locate  # noqa: E402
from tessel.stores import Stores  # noqa: E402

DS = "d" * 32
T0 = 1_600_000_000.0
YEAR = 365 * 86400
TABLES = ("image_sets", "dicom_studies", "dicom_series", "dicom_instances", "instances", "frames")
CT = "1.2.840.10008.5.1.4.1.1.2"
HTJ2K = "1.2.840.10008.1.2.4.202"

# SQL expressions over the series number `i` (one image set per series) and study `(i / 4)`.
STUDY = "(i / 4)"
STUDY_UID = f"'1.2.826.0.1.' || {STUDY}"
SERIES_UID = f"'1.2.826.0.1.' || {STUDY} || '.' || i"
HAS_DATE = f"({STUDY} % 50 <> 0)"
DATE = (f"CASE WHEN {HAS_DATE} THEN to_char(2005 + {STUDY} % 20, 'FM0000') || to_char(1 + {STUDY} % 12, 'FM00') "
        f"|| to_char(1 + {STUDY} % 28, 'FM00') END")
TIME = f"CASE WHEN {HAS_DATE} THEN to_char({STUDY} % 24, 'FM00') || to_char({STUDY} % 60, 'FM00') || '00' END"
PATIENT = f"CASE WHEN {STUDY} % 10 = 0 THEN 'ANON' ELSE 'PAT' || lpad(({STUDY} % 200000)::text, 6, '0') END"
CREATED = f"{T0} + ((i * 2654435761) % {YEAR})"
UPDATED = f"{CREATED} + ((i * 40503) % 2592000)"


def generate(conn: Any, instances: int) -> None:
    series, studies = instances // 10, instances // 40

    def run(sql: str) -> None:
        conn.exec_driver_sql(sql.replace("%", "%%"))  # a literal % for the driver's placeholder syntax
    run(f"""INSERT INTO image_sets (id, datastore_id, latest_version, state, workflow_status, message, is_primary,
        group_key, created_at, updated_at, deleted_at, last_accessed_at, storage_tier, patient_id, patient_name,
        patient_birth_date, patient_sex, study_instance_uid, study_id, study_description, accession_number,
        study_date, study_time, study_date_time, series_instance_uid, series_modality, series_body_part,
        series_number, number_of_series, number_of_instances)
        SELECT md5('s' || i), '{DS}', 1,
        CASE WHEN i % 100 = 7 THEN 'DELETED' ELSE 'ACTIVE' END, 'CREATED', NULL, i % 10 <> 3, md5('g' || i),
        {CREATED}, {UPDATED}, NULL, NULL, 'FREQUENT_ACCESS', {PATIENT}, 'Patient^' || {STUDY}, '19700101', 'O',
        {STUDY_UID}, CASE WHEN i % 2 = 0 THEN '1' ELSE {STUDY}::text END, 'CT CHEST',
        'ACC' || lpad({STUDY}::text, 8, '0'), {DATE}, {TIME},
        CASE WHEN {HAS_DATE} THEN ({DATE}) || ({TIME}) || '.000000' END,
        {SERIES_UID}, 'CT', 'CHEST', i % 4 + 1, 1, 10
        FROM generate_series(0::bigint, {series - 1}) AS i""")
    run(f"""INSERT INTO dicom_studies (datastore_id, study_instance_uid, patient_id, patient_name,
        patient_name_words, patient_birth_date, patient_sex, study_date, study_time, accession_number, study_id,
        study_description, referring_physician_name, referring_physician_name_words, modalities_in_study,
        sop_classes_in_study, number_of_series, number_of_instances, updated_at, attrs)
        SELECT '{DS}', '1.2.826.0.1.' || i,
        CASE WHEN i % 10 = 0 THEN 'ANON' ELSE 'PAT' || lpad((i % 200000)::text, 6, '0') END,
        'patient^' || i, ' patient ' || i || ' ', '19700101', 'O',
        CASE WHEN i % 50 <> 0 THEN to_char(2005 + i % 20, 'FM0000') || to_char(1 + i % 12, 'FM00')
             || to_char(1 + i % 28, 'FM00') END,
        CASE WHEN i % 50 <> 0 THEN to_char(i % 24, 'FM00') || to_char(i % 60, 'FM00') || '00.000000' END,
        'ACC' || lpad(i::text, 8, '0'), CASE WHEN i % 2 = 0 THEN '1' ELSE i::text END, 'CT CHEST', NULL, NULL,
        '\\CT\\', '\\{CT}\\', 4, 40, {T0} + ((i * 2654435761) % {YEAR}),
        '{{"StudyInstanceUID": "1.2.826.0.1.' || i || '", "PatientName": "Patient^' || i || '"}}'
        FROM generate_series(0::bigint, {studies - 1}) AS i""")
    run(f"""INSERT INTO dicom_series (image_set_id, series_instance_uid, datastore_id, study_instance_uid,
        version, modality, series_number, series_description, series_date, series_time, body_part_examined,
        number_of_instances, updated_at, attrs, study_attrs)
        SELECT md5('s' || i), {SERIES_UID}, '{DS}', {STUDY_UID}, 1, 'CT', i % 4 + 1,
        'AXIAL', NULL, NULL, 'CHEST', 10, {UPDATED},
        '{{"SeriesInstanceUID": "' || {SERIES_UID} || '", "Modality": "CT"}}', '{{}}'
        FROM generate_series(0::bigint, {series - 1}) AS i""")
    # instances j = 10 i + k: image set i, instance number k + 1, one frame each
    sop = f"{SERIES_UID} || '.' || j"
    instance_rows = f"FROM (SELECT j, j / 10 AS i FROM generate_series(0::bigint, {instances - 1}) AS j) AS g"
    run(f"""INSERT INTO dicom_instances (image_set_id, sop_instance_uid, datastore_id, study_instance_uid,
        series_instance_uid, sop_class_uid, instance_number, number_of_frames, stored_transfer_syntax_uid, pixel,
        digest, attrs, vrs)
        SELECT md5('s' || i), {sop}, '{DS}', {STUDY_UID}, {SERIES_UID}, '{CT}',
        j % 10 + 1, 1, '{HTJ2K}', NULL, substr(md5('d' || j), 1, 32),
        '{{"SOPInstanceUID": "' || {sop} || '", "InstanceNumber": "' || (j % 10 + 1) || '"}}', NULL
        {instance_rows}""")
    run(f"""INSERT INTO instances (image_set_id, sop_instance_uid, datastore_id, study_instance_uid,
        series_instance_uid, sop_class_uid, instance_number, number_of_frames, stored_transfer_syntax_uid, digest,
        version_added)
        SELECT md5('s' || i), {sop}, '{DS}', {STUDY_UID}, {SERIES_UID}, '{CT}',
        j % 10 + 1, 1, '{HTJ2K}', md5('d' || j), 1 {instance_rows}""")
    run(f"""INSERT INTO frames (image_set_id, frame_id, sop_instance_uid, frame_number, transfer_syntax_uid, size)
        SELECT md5('s' || i), md5('f' || j), {sop}, 1, '{HTJ2K}', 40000 + j % 20000
        {instance_rows}""")


def load(url: str, instances: int) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        indexes = [(name, ddl) for name, ddl in conn.exec_driver_sql(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
            "AND tablename = ANY(%(t)s) AND indexname NOT LIKE '%%pkey'", {"t": list(TABLES)})]
        for table in TABLES:
            conn.exec_driver_sql(f"TRUNCATE {table}")
        for name, _ in indexes:
            conn.exec_driver_sql(f'DROP INDEX "{name}"')
        keys = [(table, name, ddl) for table in TABLES for name, ddl in conn.exec_driver_sql(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE contype = 'p' "
            "AND conrelid = %(t)s::regclass", {"t": table})]
        for table, name, _ in keys:  # no primary keys either while loading
            conn.exec_driver_sql(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.exec_driver_sql("SET maintenance_work_mem = '512MB'")
        generate(conn, instances)
    loaded = time.perf_counter()
    with engine.begin() as conn:
        conn.exec_driver_sql("SET maintenance_work_mem = '512MB'")
        for table, name, ddl in keys:
            conn.exec_driver_sql(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {ddl}')
        for _, ddl in indexes:
            conn.exec_driver_sql(ddl)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")
    done = time.perf_counter()
    with engine.connect() as conn:
        size = conn.exec_driver_sql("SELECT pg_size_pretty(pg_database_size(current_database()))").scalar()
    engine.dispose()
    print(f"generated {instances:,} instances ({instances // 10:,} image sets, {instances // 40:,} studies) "
          f"in {loaded - started:.0f} s; primary keys, {len(indexes)} indexes and VACUUM ANALYZE in "
          f"{done - loaded:.0f} s; database {size}")


class NoBlobs:
    """Frame reads return nothing: the benchmark times the catalog lookup alone."""

    def get(self, key: str) -> bytes:
        return b""


def timed(runs: int, call: Callable[[int], Any]) -> tuple[float, float, int]:
    samples, found = [], 0
    call(0)  # warm the connection pool and statement cache
    for i in range(runs):
        start = time.perf_counter()
        result = call(i)
        samples.append((time.perf_counter() - start) * 1000)
        found = len(result.image_sets) if hasattr(result, "image_sets") else len(result) if hasattr(
            result, "__len__") else 1
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))], found


def plan(catalog: Catalog, call: Callable[[], Any]) -> str:
    """The nodes of PostgreSQL's plans for the statements `call` runs (EXPLAIN ANALYZE, compact)."""
    statements: list[Any] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    sa.event.listen(catalog.engine, "before_cursor_execute", capture)
    try:
        call()
    finally:
        sa.event.remove(catalog.engine, "before_cursor_execute", capture)
    out = []
    with catalog.read() as conn:
        for statement, parameters in statements:
            lines = [r[0] for r in conn.exec_driver_sql(f"EXPLAIN (ANALYZE, TIMING OFF, SUMMARY OFF) {statement}",
                                                       parameters)]
            nodes = [line.strip().lstrip("-> ").split("  (")[0] for line in lines
                     if "(cost=" in line and "InitPlan" not in line]
            out.append(" > ".join(nodes))
    return " | ".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--url", help="an existing database (its tessel tables are emptied and refilled)")
    parser.add_argument("--no-load", action="store_true", help="measure the rows already in --url")
    parser.add_argument("--keep", action="store_true", help="leave the throwaway cluster running")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        url = args.url or stack.enter_context(_throwaway(args.keep))
        catalog = Catalog.open(url)
        stack.callback(catalog.close)
        if not args.no_load:
            load(url, args.instances)
        measure(catalog, args.instances, args.runs)
    print(f"load average: {open('/proc/loadavg').read().strip()}")


@contextlib.contextmanager
def _throwaway(keep: bool) -> Iterator[str]:
    from tests.stack import postgres_cluster

    # Sized for the benchmark machine (2 cores, 24 GiB); still no fsync: the data is synthetic.
    settings = {"shared_buffers": "2GB", "effective_cache_size": "8GB", "work_mem": "32MB",
                "max_wal_size": "8GB", "checkpoint_timeout": "30min", "random_page_cost": "1.1"}
    with contextlib.ExitStack() as stack:
        pg = stack.enter_context(postgres_cluster(**settings))
        pg.execute("CREATE DATABASE bench")
        url = pg.url("bench")
        if keep:
            stack.pop_all()
            print(f"cluster kept at {pg.root}: {url}")
        yield url


def measure(catalog: Catalog, instances: int, runs: int) -> None:
    series, studies = instances // 10, instances // 40
    rng = random.Random(3)
    picks = [rng.randrange(series) for _ in range(runs + 1)]
    settings = Settings(catalog_url=str(catalog.engine.url))
    stores = Stores(settings, catalog, NoBlobs())  # type: ignore[arg-type]

    def study(i: int) -> int:
        return picks[i] // 4

    def study_uid(i: int) -> str:
        return f"1.2.826.0.1.{study(i)}"

    def series_uid(i: int) -> str:
        return f"1.2.826.0.1.{study(i)}.{picks[i]}"

    def sop_uid(i: int) -> str:
        return f"{series_uid(i)}.{picks[i] * 10 + 3}"

    def patient(i: int) -> str:
        return "ANON" if study(i) % 10 == 0 else f"PAT{study(i) % 200000:06d}"

    def image_set(i: int) -> str:
        import hashlib

        return hashlib.md5(f"s{picks[i]}".encode()).hexdigest()

    def frame(i: int) -> str:
        import hashlib

        return hashlib.md5(f"f{picks[i] * 10 + 3}".encode()).hexdigest()

    def search(criteria: Callable[[int], SearchCriteria]) -> Callable[[int], Any]:
        return lambda i: search_image_sets(catalog, DS, criteria(i), limit=50, cursor=None)

    def eq(field: str, value: Callable[[int], Any], sort: str | None = None) -> Callable[[int], Any]:
        return search(lambda i: SearchCriteria((SearchFilter("EQUAL", field, (value(i),)),), sort))

    def created(i: int, width: float) -> tuple[float, float]:
        t = T0 + (picks[i] * 2654435761) % YEAR
        return (t - width / 2, t + width / 2)

    deep = None
    for _ in range(20):
        deep = search_image_sets(catalog, DS, SearchCriteria(), limit=50, cursor=deep).next_cursor
    shapes: list[tuple[str, Callable[[int], Any]]] = [
        ("SearchImageSets: no filter, updatedAt DESC", search(lambda i: SearchCriteria())),
        ("SearchImageSets: page 21 via nextToken",
         lambda i: search_image_sets(catalog, DS, SearchCriteria(), limit=50, cursor=deep)),
        ("SearchImageSets: EQUAL DICOMPatientId", eq("DICOMPatientId", patient)),
        ("SearchImageSets: EQUAL DICOMPatientId='ANON' (10%)", eq("DICOMPatientId", lambda i: "ANON")),
        ("SearchImageSets: EQUAL DICOMAccessionNumber",
         eq("DICOMAccessionNumber", lambda i: f"ACC{study(i):08d}")),
        ("SearchImageSets: EQUAL DICOMStudyId='1' (50%), createdAt",
         eq("DICOMStudyId", lambda i: "1", "createdAt")),
        ("SearchImageSets: EQUAL DICOMStudyInstanceUID", eq("DICOMStudyInstanceUID", study_uid)),
        ("SearchImageSets: EQUAL DICOMSeriesInstanceUID", eq("DICOMSeriesInstanceUID", series_uid)),
        ("SearchImageSets: BETWEEN createdAt 1 day, updatedAt DESC",
         search(lambda i: SearchCriteria((SearchFilter("BETWEEN", "createdAt", created(i, 86400)),)))),
        ("SearchImageSets: BETWEEN createdAt 1 day, createdAt",
         search(lambda i: SearchCriteria((SearchFilter("BETWEEN", "createdAt", created(i, 86400)),), "createdAt"))),
        ("SearchImageSets: BETWEEN StudyDateAndTime 1 month, same sort",
         search(lambda i: SearchCriteria((SearchFilter("BETWEEN", "DICOMStudyDateAndTime", (
             (f"{2005 + i % 20}0301", None), (f"{2005 + i % 20}0331", "235959"))),), "DICOMStudyDateAndTime"))),
        ("QIDO studies: PatientID", lambda i: query.query(catalog, DS, "STUDY", {"PatientID": patient(i)},
                                                          limit=100)),
        ("QIDO studies: PatientName=patient^12* (wildcard)",
         lambda i: query.query(catalog, DS, "STUDY", {"PatientName": f"patient^{study(i) // 100}*"}, limit=100)),
        ("QIDO studies: AccessionNumber",
         lambda i: query.query(catalog, DS, "STUDY", {"AccessionNumber": f"ACC{study(i):08d}"}, limit=100)),
        ("QIDO studies: StudyDate one day",
         lambda i: query.query(catalog, DS, "STUDY", {"StudyDate": f"{2005 + i % 20}0{1 + i % 9}1{i % 9}"},
                               limit=100)),
        ("QIDO studies: no filter, limit 100", lambda i: query.query(catalog, DS, "STUDY", {}, limit=100)),
        ("QIDO series of a study",
         lambda i: query.query(catalog, DS, "SERIES", {"StudyInstanceUID": study_uid(i)})),
        ("QIDO instances of a series", lambda i: query.query(
            catalog, DS, "IMAGE", {"StudyInstanceUID": study_uid(i), "SeriesInstanceUID": series_uid(i)})),
        ("QIDO instances: SOPInstanceUID only",
         lambda i: query.query(catalog, DS, "IMAGE", {"SOPInstanceUID": sop_uid(i)})),
        ("WADO-RS: locate a study's instances", lambda i: locate(catalog, DS, study_uid(i))),
        ("WADO-RS: frame 1 of an instance (catalog part)",
         lambda i: get_frames(stores, DS, study_uid(i), series_uid(i), sop_uid(i), [1]).data),
        ("GetImageFrame: frame lookup", lambda i: [catalog.get_frame(image_set(i), frame(i))]),
    ]
    print(f"\n{instances:,} instances, {series:,} image sets, {studies:,} studies; {runs} runs each\n")
    print(f"{'query':60} {'p50 ms':>8} {'p99 ms':>8} {'rows':>5}")
    for name, call in shapes:
        p50, p99, found = timed(runs, call)
        print(f"{name:60} {p50:8.2f} {p99:8.2f} {found:5d}")
        print(f"    plan: {plan(catalog, lambda: call(0))}")


if __name__ == "__main__":
    main()
