"""Catalog hot paths on PostgreSQL with 10 million synthetic instances: p50/p95/p99 and plans.

The catalog's real schema is made by tessel's Alembic migrations; then its primary keys and
secondary indexes are dropped, the rows are generated in Python and bulk-loaded with COPY
(psycopg `cursor.copy`, one process per table, each table truncated and loaded FROZEN in one
transaction, so with wal_level=minimal nothing goes through the WAL), and the keys and indexes
the migrations made are rebuilt after the load, then VACUUM ANALYZE. The archive it makes:

    studies      ~N / 100 (10M instances -> ~100k studies), 1-7 series each (mean 4)
    series       ~N / 25: one image set each; instances per series lognormal
                 (median ~11, mean ~25, up to 1,500: scouts, CR/DX, thin-slice CT)
    patients     1-12 studies each (geometric, mean ~3); 3% of studies de-identified to "ANON"
    dates        study dates uniform over 10 years (2016-2025), 1% without a date
    names        "SURNAME^GIVEN" from 900 surnames, so a 3-letter prefix matches ~1/30
    instances    one frame each; realistic UID lengths (~50 characters), attribute JSON ~0.4 KB

Then each hot query runs through tessel's own functions (SearchImageSets with each filter and
sort, QIDO-RS/C-FIND `query` at study/series/instance level, WADO-RS `locate` and
`get_frames`, GetImageFrame's `get_frame`) many times with random keys, and its EXPLAIN
ANALYZE plan is printed, so a missing index shows as a Seq Scan or a big Sort.

    .venv/bin/python benchmarks/search_pg.py [--instances 10000000] [--runs 300]
        [--url postgresql+psycopg://user@host:port/db]   # default: a throwaway local cluster
        [--keep]          # leave the throwaway cluster running (prints its URL)
        [--no-load]       # measure the rows already in --url (same --instances: the same layout)

On the 2-core development machine the 10-million-instance load took 13 minutes (COPY 7, keys
and indexes 6) at load average ~10, and the database 26 GB of disk under /tmp (deleted at the
end); docs/scaling.md has the figures.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import hashlib
import json
import math
import multiprocessing
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
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
ROOT = "1.2.826.0.1.3680043.10.543."
T0 = 1_700_000_000.0  # image sets were created over the year after this
YEAR = 365 * 86400
FIRST_YEAR, YEARS = 2016, 10
TABLES = ("image_sets", "dicom_studies", "dicom_series", "dicom_instances", "instances", "frames")
SOP_CLASS = {"CT": "1.2.840.10008.5.1.4.1.1.2", "MR": "1.2.840.10008.5.1.4.1.1.4",
             "CR": "1.2.840.10008.5.1.4.1.1.1", "DX": "1.2.840.10008.5.1.4.1.1.1.1",
             "US": "1.2.840.10008.5.1.4.1.1.6.1", "MG": "1.2.840.10008.5.1.4.1.1.1.2"}
MODALITIES = ("CT", "CT", "CT", "MR", "MR", "CR", "CR", "DX", "US", "MG")
HTJ2K = "1.2.840.10008.1.2.4.202"
SYLLABLES = ("kal", "mor", "ben", "sut", "har", "lin", "dov", "ric", "tam", "wes", "gor", "pel", "nak", "fil", "jor",
             "ves", "cab", "dun", "hol", "mic", "ros", "tan", "zel", "bar", "kin", "lom", "par", "sel", "vin", "wal")
GIVEN = ("anna", "ben", "carla", "david", "eva", "frank", "gita", "hugo", "ines", "jon", "kim", "luis", "mia",
         "noah", "olga", "paul", "rita", "sam", "tara", "uma")


@dataclass
class Layout:
    """The synthetic archive, deterministic for (instances, seed): what the loader writes and the
    benchmark's random keys are drawn from."""

    instances: int
    study_patient: list[int] = field(default_factory=list)     # -1: de-identified ("ANON")
    study_date: list[str | None] = field(default_factory=list)  # YYYYMMDD
    study_time: list[str | None] = field(default_factory=list)  # HHMMSS
    study_modality: list[str] = field(default_factory=list)
    series_study: list[int] = field(default_factory=list)
    series_number: list[int] = field(default_factory=list)
    series_size: list[int] = field(default_factory=list)
    series_first: list[int] = field(default_factory=list)  # index of its first instance

    @classmethod
    def make(cls, instances: int, seed: int = 7) -> "Layout":
        rng = random.Random(seed)
        out = cls(instances)
        total, patient, left_for_patient = 0, 0, 0
        day0 = _days(FIRST_YEAR)
        while total < instances:
            study = len(out.study_date)
            if left_for_patient == 0:
                patient, left_for_patient = patient + 1, min(12, 1 + int(rng.expovariate(1 / 2.2)))
            left_for_patient -= 1
            out.study_patient.append(-1 if rng.random() < 0.03 else patient)
            if rng.random() < 0.01:
                out.study_date.append(None)
                out.study_time.append(None)
            else:
                out.study_date.append(_date(day0 + rng.randrange(YEARS * 365)))
                out.study_time.append(f"{rng.randrange(7, 20):02d}{rng.randrange(60):02d}{rng.randrange(60):02d}")
            out.study_modality.append(rng.choice(MODALITIES))
            for number in range(1, rng.randint(1, 7) + 1):
                size = min(instances - total, max(1, min(1500, round(rng.lognormvariate(2.4, 1.3)))))
                out.series_study.append(study)
                out.series_number.append(number)
                out.series_size.append(size)
                out.series_first.append(total)
                total += size
                if total == instances:
                    break
        return out

    @property
    def studies(self) -> int:
        return len(self.study_date)

    @property
    def series(self) -> int:
        return len(self.series_study)


def _loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()


def _days(year: int) -> int:
    import datetime

    return datetime.date(year, 1, 1).toordinal()


def _date(ordinal: int) -> str:
    import datetime

    return datetime.date.fromordinal(ordinal).strftime("%Y%m%d")


def patient_id(layout: Layout, study: int) -> str:
    p = layout.study_patient[study]
    return "ANON" if p < 0 else f"PAT{p:07d}"


def patient_name(layout: Layout, study: int) -> str:
    """SURNAME^GIVEN (a de-identified study keeps its own, as a research export would)."""
    p = layout.study_patient[study]
    p = p if p >= 0 else study
    return (f"{SYLLABLES[p % 30]}{SYLLABLES[(p // 30) % 30]}^{GIVEN[(p // 900) % 20]}").upper()


def study_uid(study: int) -> str:
    return f"{ROOT}{study + 100000}"


def series_uid(layout: Layout, series: int) -> str:
    return f"{study_uid(layout.series_study[series])}.{series + 1000000}"


def sop_uid(layout: Layout, series: int, instance: int) -> str:
    return f"{series_uid(layout, series)}.{instance + 10000000}"


def image_set_id(series: int) -> str:
    return hashlib.md5(f"s{series}".encode()).hexdigest()


def frame_id(instance: int) -> str:
    return hashlib.md5(f"f{instance}".encode()).hexdigest()


def created_at(series: int) -> float:
    return T0 + (series * 2654435761) % YEAR


def updated_at(series: int) -> float:
    return created_at(series) + (series * 40503) % 2592000


def accession(study: int) -> str:
    return f"ACC{study:08d}"


def study_id(study: int) -> str:
    return "1" if study % 2 == 0 else str(study)


# -- bulk load ---------------------------------------------------------------------------------

N = "\\N"  # NULL in COPY's text format


def _rows_image_sets(layout: Layout) -> Iterator[str]:
    for k in range(layout.series):
        s = layout.series_study[k]
        date, tm = layout.study_date[s], layout.study_time[s]
        date_time = f"{date}{tm}.000000" if date else N
        state = "DELETED" if k % 100 == 7 else "ACTIVE"
        yield (f"{image_set_id(k)}\t{DS}\t1\t{state}\tCREATED\t{N}\t{'f' if k % 20 == 3 else 't'}\t"
               f"{hashlib.md5(f'g{k}'.encode()).hexdigest()}\t{created_at(k)}\t{updated_at(k)}\t{N}\t{N}\t"
               f"FREQUENT_ACCESS\t{patient_id(layout, s)}\t{patient_name(layout, s)}\t19700101\tO\t{study_uid(s)}\t"
               f"{study_id(s)}\t{layout.study_modality[s]} STUDY\t{accession(s)}\t{date or N}\t{tm or N}\t"
               f"{date_time}\t{series_uid(layout, k)}\t{layout.study_modality[s]}\tCHEST\t{layout.series_number[k]}\t"
               f"1\t{layout.series_size[k]}\n")


def _rows_dicom_studies(layout: Layout) -> Iterator[str]:
    per_study: dict[int, list[int]] = {}
    for k in range(layout.series):
        per_study.setdefault(layout.series_study[k], []).append(k)
    for s in range(layout.studies):
        series = per_study.get(s, [])
        name = patient_name(layout, s)
        words = " ".join(sorted(set(name.lower().split("^"))))
        modality = layout.study_modality[s]
        date, tm = layout.study_date[s], layout.study_time[s]
        attrs = json.dumps({"PatientID": patient_id(layout, s), "PatientName": name, "PatientBirthDate": "19700101",
                            "PatientSex": "O", "StudyInstanceUID": study_uid(s), "StudyDate": date or "",
                            "StudyTime": tm or "", "AccessionNumber": accession(s), "StudyID": study_id(s),
                            "StudyDescription": f"{modality} STUDY"})
        yield (f"{DS}\t{study_uid(s)}\t{patient_id(layout, s)}\t{name.lower()}\t {words} \t19700101\tO\t"
               f"{date or N}\t{f'{tm}.000000' if tm else N}\t{accession(s)}\t{study_id(s)}\t{modality} STUDY\t{N}\t{N}\t"
               f"\\\\{modality}\\\\\t\\\\{SOP_CLASS[modality]}\\\\\t{len(series)}\t"
               f"{sum(layout.series_size[k] for k in series)}\t{max((updated_at(k) for k in series), default=T0)}\t"
               f"{attrs}\n")


def _rows_dicom_series(layout: Layout) -> Iterator[str]:
    for k in range(layout.series):
        s = layout.series_study[k]
        modality = layout.study_modality[s]
        uid = series_uid(layout, k)
        attrs = json.dumps({"SeriesInstanceUID": uid, "Modality": modality, "SeriesNumber": layout.series_number[k],
                            "SeriesDescription": "AXIAL", "BodyPartExamined": "CHEST"})
        study_attrs = json.dumps({"PatientID": patient_id(layout, s), "StudyInstanceUID": study_uid(s)})
        yield (f"{image_set_id(k)}\t{uid}\t{DS}\t{study_uid(s)}\t1\t{modality}\t{layout.series_number[k]}\tAXIAL\t"
               f"{N}\t{N}\tCHEST\t{layout.series_size[k]}\t{updated_at(k)}\t{attrs}\t{study_attrs}\n")


def _instance_rows(layout: Layout, table: str) -> Iterator[str]:
    for k in range(layout.series):
        s = layout.series_study[k]
        set_id, study, series = image_set_id(k), study_uid(s), series_uid(layout, k)
        sop_class = SOP_CLASS[layout.study_modality[s]]
        for n in range(layout.series_size[k]):
            j = layout.series_first[k] + n
            sop = f"{series}.{j + 10000000}"
            if table == "frames":
                yield f"{set_id}\t{frame_id(j)}\t{sop}\t1\t{HTJ2K}\t{40000 + j % 20000}\n"
                continue
            digest = hashlib.md5(f"d{j}".encode()).hexdigest()
            if table == "instances":
                yield f"{set_id}\t{sop}\t{DS}\t{study}\t{series}\t{sop_class}\t{n + 1}\t1\t{HTJ2K}\t{digest}\t1\n"
                continue
            z = -0.625 * n
            attrs = (f'{{"SOPClassUID": "{sop_class}", "SOPInstanceUID": "{sop}", "InstanceNumber": {n + 1}, '
                     f'"ImagePositionPatient": [-250.0, -250.0, {z}], "ImageOrientationPatient": [1, 0, 0, 0, 1, 0], '
                     f'"SliceLocation": {z}, "AcquisitionNumber": 1, "ContentDate": "{layout.study_date[s] or ""}", '
                     f'"ContentTime": "{layout.study_time[s] or ""}", "WindowCenter": 40, "WindowWidth": 400}}')
            pixel = ('{"Rows": 512, "Columns": 512, "BitsAllocated": 16, "BitsStored": 12, "HighBit": 11, '
                     '"PixelRepresentation": 1, "SamplesPerPixel": 1, "PhotometricInterpretation": "MONOCHROME2"}')
            yield (f"{set_id}\t{sop}\t{DS}\t{study}\t{series}\t{sop_class}\t{n + 1}\t1\t{HTJ2K}\t{pixel}\t"
                   f"{digest}\t{attrs}\t{N}\n")


COLUMNS = {
    "image_sets": "id, datastore_id, latest_version, state, workflow_status, message, is_primary, group_key, "
                  "created_at, updated_at, deleted_at, last_accessed_at, storage_tier, patient_id, patient_name, "
                  "patient_birth_date, patient_sex, study_instance_uid, study_id, study_description, accession_number, "
                  "study_date, study_time, study_date_time, series_instance_uid, series_modality, series_body_part, "
                  "series_number, number_of_series, number_of_instances",
    "dicom_studies": "datastore_id, study_instance_uid, patient_id, patient_name, patient_name_words, "
                     "patient_birth_date, patient_sex, study_date, study_time, accession_number, study_id, "
                     "study_description, referring_physician_name, referring_physician_name_words, "
                     "modalities_in_study, sop_classes_in_study, number_of_series, number_of_instances, updated_at, "
                     "attrs",
    "dicom_series": "image_set_id, series_instance_uid, datastore_id, study_instance_uid, version, modality, "
                    "series_number, series_description, series_date, series_time, body_part_examined, "
                    "number_of_instances, updated_at, attrs, study_attrs",
    "dicom_instances": "image_set_id, sop_instance_uid, datastore_id, study_instance_uid, series_instance_uid, "
                       "sop_class_uid, instance_number, number_of_frames, stored_transfer_syntax_uid, pixel, digest, "
                       "attrs, vrs",
    "instances": "image_set_id, sop_instance_uid, datastore_id, study_instance_uid, series_instance_uid, "
                 "sop_class_uid, instance_number, number_of_frames, stored_transfer_syntax_uid, digest, version_added",
    "frames": "image_set_id, frame_id, sop_instance_uid, frame_number, transfer_syntax_uid, size",
}
ROWS: dict[str, Callable[[Layout], Iterator[str]]] = {
    "image_sets": _rows_image_sets, "dicom_studies": _rows_dicom_studies, "dicom_series": _rows_dicom_series,
    "dicom_instances": lambda layout: _instance_rows(layout, "dicom_instances"),
    "instances": lambda layout: _instance_rows(layout, "instances"),
    "frames": lambda layout: _instance_rows(layout, "frames"),
}
_LAYOUT: Layout | None = None  # handed to the loader processes by fork


def _copy_table(dsn: str, table: str) -> tuple[str, int, float]:
    """Empty `table` and COPY its rows in, in one transaction (FREEZE: the rows are visible to
    all and need no later vacuum; wal_level=minimal: the new file skips the WAL)."""
    import psycopg

    assert _LAYOUT is not None
    started, count, batch = time.perf_counter(), 0, []
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(f"TRUNCATE {table}")
        with cur.copy(f"COPY {table} ({COLUMNS[table]}) FROM STDIN WITH (FREEZE)") as copy:
            for row in ROWS[table](_LAYOUT):
                batch.append(row)
                if len(batch) == 20000:
                    copy.write("".join(batch))
                    count += len(batch)
                    batch.clear()
            copy.write("".join(batch))
            count += len(batch)
    return table, count, time.perf_counter() - started


def load(url: str, layout: Layout) -> dict[str, Any]:
    """Drop keys and indexes, COPY every table in parallel, rebuild, VACUUM ANALYZE. Returns timings."""
    global _LAYOUT
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        indexes = [(name, ddl) for name, ddl in conn.exec_driver_sql(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
            "AND tablename = ANY(%(t)s) AND indexname NOT LIKE '%%pkey'", {"t": list(TABLES)})]
        keys = [(table, name, ddl) for table in TABLES for name, ddl in conn.exec_driver_sql(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE contype = 'p' "
            "AND conrelid = %(t)s::regclass", {"t": table})]
        for name, _ in indexes:
            conn.exec_driver_sql(f'DROP INDEX "{name}"')
        for table, name, _ in keys:
            conn.exec_driver_sql(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    _LAYOUT = layout
    started = time.perf_counter()
    per_table = {}
    # The three 10M-row tables first, each in a process of its own (fork: the layout is inherited).
    with concurrent.futures.ProcessPoolExecutor(3, mp_context=multiprocessing.get_context("fork")) as pool:
        order = ("dicom_instances", "instances", "frames", "image_sets", "dicom_series", "dicom_studies")
        for table, count, seconds in pool.map(_copy_table, [dsn] * len(order), order):
            per_table[table] = (count, seconds)
            print(f"  COPY {table}: {count:,} rows in {seconds:.0f} s ({count / seconds:,.0f} rows/s)", flush=True)
    copied = time.perf_counter()
    print(f"  all tables copied in {copied - started:.0f} s; rebuilding {len(keys)} primary keys and "
          f"{len(indexes)} indexes", flush=True)

    def build(ddl: str) -> None:
        with engine.begin() as conn:
            conn.exec_driver_sql("SET maintenance_work_mem = '1GB'")
            conn.exec_driver_sql(ddl)

    ddls = ([f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {ddl}' for table, name, ddl in keys]
            + [ddl for _, ddl in indexes])
    with concurrent.futures.ThreadPoolExecutor(2) as pool:  # two builds at once: one per core
        list(pool.map(build, ddls))
    built = time.perf_counter()
    print(f"  keys and indexes built in {built - copied:.0f} s", flush=True)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in TABLES:
            conn.exec_driver_sql(f"VACUUM ANALYZE {table}")
    done = time.perf_counter()
    with engine.connect() as conn:
        size = conn.exec_driver_sql("SELECT pg_size_pretty(pg_database_size(current_database()))").scalar()
    engine.dispose()
    rows = sum(count for count, _ in per_table.values())
    print(f"loaded {layout.instances:,} instances ({layout.series:,} series/image sets, {layout.studies:,} studies, "
          f"{rows:,} rows): COPY {copied - started:.0f} s ({rows / (copied - started):,.0f} rows/s), keys and "
          f"{len(indexes)} indexes {built - copied:.0f} s, VACUUM ANALYZE {done - built:.0f} s; total "
          f"{done - started:.0f} s; database {size}; load average {_loadavg()}", flush=True)
    return {"copy_s": copied - started, "index_s": built - copied, "vacuum_s": done - built, "size": size}


# -- measuring ---------------------------------------------------------------------------------

class NoBlobs:
    """Frame reads return nothing: the benchmark times the catalog lookup alone."""

    def get(self, key: str) -> bytes:
        return b""


def timed(runs: int, call: Callable[[int], Any]) -> tuple[float, float, float, float]:
    """p50, p95, p99 (ms) over `runs` calls, and the mean number of results."""
    samples, found = [], 0
    call(runs)  # warm the connection pool and statement cache
    for i in range(runs):
        start = time.perf_counter()
        result = call(i)
        samples.append((time.perf_counter() - start) * 1000)
        found += len(result.image_sets) if hasattr(result, "image_sets") else len(result) if hasattr(
            result, "__len__") else 1
    samples.sort()

    def pct(p: float) -> float:
        return samples[min(len(samples) - 1, math.ceil(len(samples) * p) - 1)]

    return statistics.median(samples), pct(0.95), pct(0.99), found / runs


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
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--url", help="an existing database (its tessel tables are emptied and refilled)")
    parser.add_argument("--no-load", action="store_true", help="measure the rows already in --url")
    parser.add_argument("--keep", action="store_true", help="leave the throwaway cluster running")
    args = parser.parse_args()
    print(f"load average at start: {_loadavg()}", flush=True)
    started = time.perf_counter()
    layout = Layout.make(args.instances)
    print(f"layout: {layout.studies:,} studies, {layout.series:,} series, {args.instances:,} instances, "
          f"{len(set(p for p in layout.study_patient if p >= 0)):,} patients ({time.perf_counter() - started:.0f} s)",
          flush=True)
    with contextlib.ExitStack() as stack:
        url = args.url or stack.enter_context(_throwaway(args.keep))
        catalog = Catalog.open(url)  # runs the migrations: the real schema
        stack.callback(catalog.close)
        if not args.no_load:
            load(url, layout)
        measure(catalog, layout, args.runs)
    print(f"load average at end: {_loadavg()}")


@contextlib.contextmanager
def _throwaway(keep: bool) -> Iterator[str]:
    from tests.stack import postgres_cluster

    # Sized for the benchmark machine (2 cores, 24 GiB); no fsync (the data is synthetic);
    # wal_level=minimal so the COPYs into freshly truncated tables and the index builds skip the WAL.
    settings = {"shared_buffers": "2GB", "effective_cache_size": "8GB", "work_mem": "32MB",
                "maintenance_work_mem": "1GB", "max_wal_size": "8GB", "checkpoint_timeout": "30min",
                "random_page_cost": "1.1", "wal_level": "minimal", "max_wal_senders": "0",
                "max_parallel_maintenance_workers": "2"}
    with contextlib.ExitStack() as stack:
        pg = stack.enter_context(postgres_cluster(**settings))
        pg.execute("CREATE DATABASE bench")
        url = pg.url("bench")
        if keep:
            stack.pop_all()
            print(f"cluster kept at {pg.root}: {url}")
        yield url


def measure(catalog: Catalog, layout: Layout, runs: int) -> list[tuple[str, float, float, float, float, str]]:
    """Time every hot query shape; prints and returns (name, p50, p95, p99, mean rows, plan) each."""
    rng = random.Random(3)
    live = [k for k in range(layout.series) if k % 100 != 7]  # DELETED image sets are not found
    picks = [rng.choice(live) for _ in range(runs + 1)]
    instance_picks = [layout.series_first[k] + rng.randrange(layout.series_size[k]) for k in picks]
    dated = [s for s in range(layout.studies) if layout.study_date[s]]
    day_picks = [layout.study_date[rng.choice(dated)] or "" for _ in range(runs + 1)]
    settings = Settings(catalog_url=str(catalog.engine.url))
    stores = Stores(settings, catalog, NoBlobs())  # type: ignore[arg-type]

    def study(i: int) -> int:
        return layout.series_study[picks[i]]

    def suid(i: int) -> str:
        return study_uid(study(i))

    def seuid(i: int) -> str:
        return series_uid(layout, picks[i])

    def sop(i: int) -> str:
        return sop_uid(layout, picks[i], instance_picks[i])

    def patient(i: int) -> str:
        return patient_id(layout, study(i))

    def name_prefix(i: int, letters: int) -> str:
        return patient_name(layout, study(i))[:letters].capitalize() + "*"

    def year(i: int) -> str:  # of the picked study (of a random one when it has no date)
        return (layout.study_date[study(i)] or day_picks[i])[:4]

    def month(i: int) -> tuple[str, str]:  # the calendar month of a random study date
        first = day_picks[i][:6] + "01"
        return first, day_picks[i][:6] + "28"

    def search(criteria: Callable[[int], SearchCriteria]) -> Callable[[int], Any]:
        return lambda i: search_image_sets(catalog, DS, criteria(i), limit=50, cursor=None)

    def eq(field: str, value: Callable[[int], Any], sort: str | None = None) -> Callable[[int], Any]:
        return search(lambda i: SearchCriteria((SearchFilter("EQUAL", field, (value(i),)),), sort))

    def created(i: int, width: float) -> tuple[float, float]:
        t = created_at(picks[i])
        return (t - width / 2, t + width / 2)

    def updated(i: int, width: float) -> tuple[float, float]:
        t = updated_at(picks[i])
        return (t - width / 2, t + width / 2)

    def qido(level: str, matches: Callable[[int], dict[str, str]], limit: int | None = 100) -> Callable[[int], Any]:
        return lambda i: query.query(catalog, DS, level, matches(i), limit=limit)

    deep = None
    for _ in range(20):
        deep = search_image_sets(catalog, DS, SearchCriteria(), limit=50, cursor=deep).next_cursor
    shapes: list[tuple[str, Callable[[int], Any]]] = [
        ("SearchImageSets: no filter, updatedAt DESC", search(lambda i: SearchCriteria())),
        ("SearchImageSets: no filter, page 21 (nextToken)",
         lambda i: search_image_sets(catalog, DS, SearchCriteria(), limit=50, cursor=deep)),
        ("SearchImageSets: EQUAL DICOMPatientId", eq("DICOMPatientId", patient)),
        ("SearchImageSets: EQUAL DICOMPatientId, createdAt", eq("DICOMPatientId", patient, "createdAt")),
        ("SearchImageSets: EQUAL DICOMPatientId='ANON' (3%)", eq("DICOMPatientId", lambda i: "ANON")),
        ("SearchImageSets: EQUAL DICOMAccessionNumber", eq("DICOMAccessionNumber", lambda i: accession(study(i)))),
        ("SearchImageSets: EQUAL DICOMStudyId='1' (50%), createdAt",
         eq("DICOMStudyId", lambda i: "1", "createdAt")),
        ("SearchImageSets: EQUAL DICOMStudyInstanceUID", eq("DICOMStudyInstanceUID", suid)),
        ("SearchImageSets: EQUAL DICOMSeriesInstanceUID", eq("DICOMSeriesInstanceUID", seuid)),
        ("SearchImageSets: EQUAL DICOMStudyInstanceUID, StudyDateAndTime",
         eq("DICOMStudyInstanceUID", suid, "DICOMStudyDateAndTime")),
        ("SearchImageSets: BETWEEN createdAt 1 day, updatedAt DESC",
         search(lambda i: SearchCriteria((SearchFilter("BETWEEN", "createdAt", created(i, 86400)),)))),
        ("SearchImageSets: BETWEEN createdAt 1 day, createdAt",
         search(lambda i: SearchCriteria((SearchFilter("BETWEEN", "createdAt", created(i, 86400)),), "createdAt"))),
        ("SearchImageSets: BETWEEN updatedAt 1 day, updatedAt",
         search(lambda i: SearchCriteria((SearchFilter("BETWEEN", "updatedAt", updated(i, 86400)),), "updatedAt"))),
        ("SearchImageSets: BETWEEN StudyDateAndTime 1 month, same sort",
         search(lambda i: SearchCriteria((SearchFilter("BETWEEN", "DICOMStudyDateAndTime", (
             (month(i)[0], None), (month(i)[1], "235959"))),), "DICOMStudyDateAndTime"))),
        ("SearchImageSets: BETWEEN StudyDateAndTime 1 month, updatedAt",
         search(lambda i: SearchCriteria((SearchFilter("BETWEEN", "DICOMStudyDateAndTime", (
             (month(i)[0], None), (month(i)[1], "235959"))),)))),
        ("QIDO studies: PatientID", qido("STUDY", lambda i: {"PatientID": patient(i)})),
        ("QIDO studies: PatientName prefix, 3 letters (~1/30)",
         qido("STUDY", lambda i: {"PatientName": name_prefix(i, 3)})),
        ("QIDO studies: PatientName prefix, 6 letters (~1/900)",
         qido("STUDY", lambda i: {"PatientName": name_prefix(i, 6)})),
        ("QIDO studies: AccessionNumber", qido("STUDY", lambda i: {"AccessionNumber": accession(study(i))})),
        ("QIDO studies: StudyDate one day", qido("STUDY", lambda i: {"StudyDate": day_picks[i]})),
        ("QIDO studies: StudyDate 1-month range", qido("STUDY", lambda i: {"StudyDate": "-".join(month(i))})),
        ("QIDO studies: PatientID + StudyDate, the study's year",
         qido("STUDY", lambda i: {"PatientID": patient(i), "StudyDate": f"{year(i)}0101-{year(i)}1231"})),
        ("QIDO studies: no filter", qido("STUDY", lambda i: {})),
        ("QIDO series of a study", qido("SERIES", lambda i: {"StudyInstanceUID": suid(i)}, None)),
        ("QIDO instances of a series",
         qido("IMAGE", lambda i: {"StudyInstanceUID": suid(i), "SeriesInstanceUID": seuid(i)}, None)),
        ("QIDO instances: SOPInstanceUID only", qido("IMAGE", lambda i: {"SOPInstanceUID": sop(i)}, None)),
        ("WADO-RS: locate a study's instances", lambda i: locate(catalog, DS, suid(i))),
        ("WADO-RS: locate one instance", lambda i: locate(catalog, DS, suid(i), seuid(i), sop(i))),
        ("WADO-RS: frame 1 of an instance (catalog part)",
         lambda i: get_frames(stores, DS, suid(i), seuid(i), sop(i), [1]).data),
        ("GetImageFrame: frame lookup",
         lambda i: [catalog.get_frame(DS, image_set_id(picks[i]), frame_id(instance_picks[i]))]),
    ]
    print(f"\n{layout.instances:,} instances, {layout.series:,} image sets/series, {layout.studies:,} studies; "
          f"{runs} runs each with random keys; load average {_loadavg()}\n")
    print(f"| {'query':62} | p50 ms | p95 ms | p99 ms | rows |")
    print(f"|{'-' * 64}|-------:|-------:|-------:|-----:|")
    results = []
    for name, call in shapes:
        p50, p95, p99, found = timed(runs, call)
        print(f"| {name:62} | {p50:6.2f} | {p95:6.2f} | {p99:6.2f} | {found:4.0f} |", flush=True)
        results.append((name, p50, p95, p99, found, plan(catalog, lambda: call(0))))
    print("\nplans (EXPLAIN ANALYZE nodes, one statement per '|'):")
    for name, *_, text in results:
        flag = "  <-- SEQ SCAN" if "Seq Scan" in text else ""
        print(f"- {name}: {text}{flag}")
    return results


if __name__ == "__main__":
    main()
