"""The catalog: datastores, image sets and their versions, instances, frames, jobs, tags.

All SQL lives here. Writers use `write()` (one transaction; SQLite takes its
write lock at BEGIN). Versions are created with a conditional UPDATE on
`latest_version`, so two writers can never both create the same version.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import hashlib
import time
from typing import Any, Callable, Iterable, Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from tessel.catalog.models import (Datastore, DatastoreId, DatastoreStatus, FrameLocation, ImageFrameId, ImageSet,
                                   ImageSetId, ImageSetState, ImageSetVersion,
                                   ImageSetWorkflowStatus, ImportJob, JobStatus,
                                   LosslessStorageFormat)
from tessel.catalog.sql import engine as sql_engine
from tessel.catalog.sql.hot import HotReads
from tessel.catalog.sql.tables import (datastores, frames, image_set_versions, image_sets,
                                       import_job_files, import_jobs, instances, secrets, tags)


def _datastore(row: Any) -> Datastore:
    return Datastore(id=DatastoreId(row.id), name=row.name, status=DatastoreStatus(row.status),
                     lossless_storage_format=LosslessStorageFormat(row.lossless_storage_format),
                     kms_key_arn=row.kms_key_arn, lambda_authorizer_arn=row.lambda_authorizer_arn,
                     client_token=row.client_token, created_at=row.created_at, updated_at=row.updated_at)


_IMAGE_SET_FIELDS = tuple(field.name for field in dataclasses.fields(ImageSet))
_STATE, _WORKFLOW_STATUS = _IMAGE_SET_FIELDS.index("state"), _IMAGE_SET_FIELDS.index("workflow_status")
_STATES = {member.value: member for member in ImageSetState}
_WORKFLOW_STATUSES = {member.value: member for member in ImageSetWorkflowStatus}


@functools.lru_cache(maxsize=32)
def _image_set_positions(columns: tuple[str, ...]) -> tuple[int, ...]:
    return tuple(columns.index(name) for name in _IMAGE_SET_FIELDS)


def image_sets_from_rows(rows: Sequence[Any]) -> list[ImageSet]:
    """Rows of image_sets (every column, in any order) as ImageSets. Positional and without a dict:
    a search page converts 50 of them, and keyword arguments took most of its time."""
    if not rows:
        return []
    positions = _image_set_positions(rows[0]._fields)
    image_sets_ = []
    for row in rows:
        values = [row[i] for i in positions]
        values[_STATE] = _STATES[values[_STATE]]
        values[_WORKFLOW_STATUS] = _WORKFLOW_STATUSES[values[_WORKFLOW_STATUS]]
        image_sets_.append(ImageSet(*values))
    return image_sets_


def _version(row: Any) -> ImageSetVersion:
    values = dict(row._mapping)
    values["state"] = ImageSetState(values["state"])
    values["workflow_status"] = ImageSetWorkflowStatus(values["workflow_status"])
    return ImageSetVersion(**values)


_JOB_FIELDS = frozenset(ImportJob.__dataclass_fields__)


def _job(row: Any) -> ImportJob:
    values = {k: v for k, v in row._mapping.items() if k in _JOB_FIELDS}  # not the lease columns
    values["status"] = JobStatus(values["status"])
    return ImportJob(**values)


# Statements every ingest commit runs, built once (building and keying them cost more than
# running them on SQLite).
_IMAGE_SET = sa.select(image_sets).where(image_sets.c.id == sa.bindparam("b_id"),
                                         image_sets.c.datastore_id == sa.bindparam("b_datastore_id"))
_ADVANCE = image_sets.update().where(image_sets.c.id == sa.bindparam("b_id"),
                                     image_sets.c.latest_version == sa.bindparam("b_expected"))
_INSERT_VERSION = sa.insert(image_set_versions)
_DIGESTS = sa.select(instances.c.sop_instance_uid, instances.c.digest).where(
    instances.c.image_set_id == sa.bindparam("b_id"))
_SOME_DIGESTS = _DIGESTS.where(instances.c.sop_instance_uid.in_(sa.bindparam("b_sops", expanding=True)))
_DELETE_INSTANCES = sa.delete(instances).where(
    instances.c.image_set_id == sa.bindparam("b_id"),
    instances.c.sop_instance_uid.in_(sa.bindparam("b_sops", expanding=True)))
_DELETE_FRAMES = sa.delete(frames).where(
    frames.c.image_set_id == sa.bindparam("b_id"),
    frames.c.sop_instance_uid.in_(sa.bindparam("b_sops", expanding=True)))
_INSERT_INSTANCES = sa.insert(instances)
_INSERT_FRAMES = sa.insert(frames)
_FIND_IMAGE_SETS: dict[tuple[str, ...], Any] = {}
_DATASTORE = sa.select(datastores).where(datastores.c.id == sa.bindparam("id"))
_DatastoreRow = collections.namedtuple("_DatastoreRow", [c.name for c in datastores.c])  # type: ignore[misc]
# GetImageFrame's one lookup (a hot read: strings and integers only).
# A frame of an image set of this datastore: an image set id given under another datastore finds
# nothing (a join on the image set's primary key, not a second read).
_FRAME = (sa.select(frames.c.sop_instance_uid, frames.c.frame_number, frames.c.transfer_syntax_uid, frames.c.size)
          .join(image_sets, image_sets.c.id == frames.c.image_set_id)
          .where(frames.c.image_set_id == sa.bindparam("image_set_id"),
                 frames.c.frame_id == sa.bindparam("frame_id"),
                 image_sets.c.datastore_id == sa.bindparam("datastore_id")))


class Catalog:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.hot = HotReads(engine)  # single-SELECT reads of the hot paths (frames, keys)

    @classmethod
    def open(cls, url: str, *, pool_size: int | None = None) -> "Catalog":
        engine = sql_engine.create_engine(url, pool_size=pool_size)
        sql_engine.migrate(engine)
        return cls(engine)

    def close(self) -> None:
        self.hot.close()
        self.engine.dispose()

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        with self.engine.connect().execution_options(write=True) as conn:
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """Run a block in one process at a time among all sharing this catalog (a PostgreSQL
        advisory lock; on SQLite, one server owns the catalog and writers are serialised)."""
        if self.engine.dialect.name != "postgresql":
            yield
            return
        key = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)
        with self.engine.connect() as conn:
            conn.exec_driver_sql(f"SELECT pg_advisory_lock({key})")
            conn.commit()
            try:
                yield
            finally:
                conn.exec_driver_sql(f"SELECT pg_advisory_unlock({key})")
                conn.commit()

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    # -- datastores ---------------------------------------------------------------------------

    def insert_datastore(self, conn: Connection, ds: Datastore) -> None:
        conn.execute(sa.insert(datastores).values(
            id=ds.id, name=ds.name, status=ds.status.value, kms_key_arn=ds.kms_key_arn,
            lambda_authorizer_arn=ds.lambda_authorizer_arn,
            lossless_storage_format=ds.lossless_storage_format.value, client_token=ds.client_token,
            created_at=ds.created_at, updated_at=ds.updated_at))

    def get_datastore(self, datastore_id: str, conn: Connection | None = None) -> Datastore | None:
        if conn is None:  # every DICOMweb search and metadata request checks its datastore
            rows = self.hot.rows(_DATASTORE, {"id": datastore_id})
            return _datastore(_DatastoreRow._make(rows[0])) if rows else None
        row = conn.execute(_DATASTORE, {"id": datastore_id}).first()
        return _datastore(row) if row else None

    def find_datastore(self, *, name: str | None = None, client_token: str | None = None) -> Datastore | None:
        query = sa.select(datastores).where(datastores.c.status != DatastoreStatus.DELETED.value)
        if name is not None:
            query = query.where(datastores.c.name == name)
        if client_token is not None:
            query = query.where(datastores.c.client_token == client_token)
        with self.read() as conn:
            row = conn.execute(query.order_by(datastores.c.created_at)).first()
            return _datastore(row) if row else None

    def list_datastores(self, *, status: str | None = None, after: tuple[float, str] | None = None,
                        limit: int = 1000) -> list[Datastore]:
        query = sa.select(datastores)
        if status:
            query = query.where(datastores.c.status == status)
        if after:
            query = query.where(sa.tuple_(datastores.c.created_at, datastores.c.id) > sa.tuple_(*after))
        query = query.order_by(datastores.c.created_at, datastores.c.id).limit(limit)
        with self.read() as conn:
            return [_datastore(r) for r in conn.execute(query)]

    def set_datastore_status(self, conn: Connection, datastore_id: str, status: DatastoreStatus,
                             now: float) -> None:
        conn.execute(sa.update(datastores).where(datastores.c.id == datastore_id)
                     .values(status=status.value, updated_at=now))

    def count_live_image_sets(self, conn: Connection, datastore_id: str) -> int:
        return int(conn.execute(sa.select(sa.func.count()).select_from(image_sets).where(
            image_sets.c.datastore_id == datastore_id,
            image_sets.c.state != ImageSetState.DELETED.value)).scalar_one())

    # -- image sets ---------------------------------------------------------------------------

    def get_image_set(self, datastore_id: str, image_set_id: str,
                      conn: Connection | None = None) -> ImageSet | None:
        with contextlib.ExitStack() as stack:
            c = conn or stack.enter_context(self.read())
            row = c.execute(_IMAGE_SET, {"b_id": image_set_id, "b_datastore_id": datastore_id}).first()
            return image_sets_from_rows([row])[0] if row else None

    def find_image_sets(self, conn: Connection, datastore_id: str, **equal: Any) -> list[ImageSet]:
        names = tuple(sorted(equal))
        query = _FIND_IMAGE_SETS.get(names)
        if query is None:  # one statement per set of columns, built once (ingest runs these per commit)
            query = sa.select(image_sets).where(image_sets.c.datastore_id == sa.bindparam("b_datastore_id"),
                                                image_sets.c.state != ImageSetState.DELETED.value)
            for name in names:
                query = query.where(image_sets.c[name] == sa.bindparam(f"b_{name}"))
            query = _FIND_IMAGE_SETS.setdefault(names, query.order_by(image_sets.c.created_at))
        params = {"b_datastore_id": datastore_id, **{f"b_{k}": v for k, v in equal.items()}}
        return image_sets_from_rows(list(conn.execute(query, params)))

    def insert_image_set(self, conn: Connection, values: dict[str, Any]) -> None:
        conn.execute(sa.insert(image_sets).values(**values))

    def advance_image_set(self, conn: Connection, image_set_id: str, expected_version: int,
                          values: dict[str, Any]) -> bool:
        """Move an image set to expected_version + 1 if nobody else did; False if they did."""
        result = conn.execute(_ADVANCE, {"b_id": image_set_id, "b_expected": expected_version,
                                         "latest_version": expected_version + 1, **values})
        return bool(result.rowcount == 1)

    def update_image_set(self, conn: Connection, image_set_id: str, values: dict[str, Any]) -> None:
        conn.execute(sa.update(image_sets).where(image_sets.c.id == image_set_id).values(**values))

    def insert_version(self, conn: Connection, version: ImageSetVersion) -> None:
        conn.execute(_INSERT_VERSION, dict(
            image_set_id=version.image_set_id, version_id=version.version_id,
            metadata_key=version.metadata_key, state=version.state.value,
            workflow_status=version.workflow_status.value, message=version.message,
            forced=version.forced, is_primary=version.is_primary, created_at=version.created_at,
            updated_at=version.updated_at, deleted_at=version.deleted_at))

    def get_version(self, image_set_id: str, version_id: int,
                    conn: Connection | None = None) -> ImageSetVersion | None:
        with contextlib.ExitStack() as stack:
            c = conn or stack.enter_context(self.read())
            row = c.execute(sa.select(image_set_versions).where(
                image_set_versions.c.image_set_id == image_set_id,
                image_set_versions.c.version_id == version_id)).first()
            return _version(row) if row else None

    def list_versions(self, image_set_id: str, *, before: int | None = None,
                      limit: int = 1000) -> list[ImageSetVersion]:
        query = sa.select(image_set_versions).where(image_set_versions.c.image_set_id == image_set_id)
        if before is not None:
            query = query.where(image_set_versions.c.version_id < before)
        query = query.order_by(image_set_versions.c.version_id.desc()).limit(limit)
        with self.read() as conn:
            return [_version(r) for r in conn.execute(query)]

    # -- instances and frames -----------------------------------------------------------------

    def instance_digests(self, conn: Connection, image_set_id: str,
                         sops: Sequence[str] | None = None) -> dict[str, str]:
        """SOP Instance UID -> digest of the image set's instances (only `sops`, if given)."""
        if sops is None:
            return {r.sop_instance_uid: r.digest for r in conn.execute(_DIGESTS, {"b_id": image_set_id})}
        found: dict[str, str] = {}
        for chunk in _chunks(list(dict.fromkeys(sops)), 500):
            found.update((r.sop_instance_uid, r.digest)
                         for r in conn.execute(_SOME_DIGESTS, {"b_id": image_set_id, "b_sops": list(chunk)}))
        return found

    def replace_instances(self, conn: Connection, image_set_id: str, rows: Sequence[dict[str, Any]],
                          frame_rows: Sequence[dict[str, Any]]) -> None:
        """Insert (or replace) instances and their frames inside one image set."""
        sops = [r["sop_instance_uid"] for r in rows]
        for chunk in _chunks(sops, 500):
            conn.execute(_DELETE_INSTANCES, {"b_id": image_set_id, "b_sops": list(chunk)})
            conn.execute(_DELETE_FRAMES, {"b_id": image_set_id, "b_sops": list(chunk)})
        if rows:
            conn.execute(_INSERT_INSTANCES, list(rows))
        if frame_rows:
            # Identical frames of a replaced instance keep their id; duplicates within the list cannot occur.
            conn.execute(_INSERT_FRAMES, list(frame_rows))

    def remove_instances(self, conn: Connection, image_set_id: str, sops: Iterable[str]) -> None:
        for chunk in _chunks(list(sops), 500):
            conn.execute(sa.delete(instances).where(instances.c.image_set_id == image_set_id,
                                                    instances.c.sop_instance_uid.in_(chunk)))
            conn.execute(sa.delete(frames).where(frames.c.image_set_id == image_set_id,
                                                 frames.c.sop_instance_uid.in_(chunk)))

    def count_instances(self, conn: Connection, image_set_id: str) -> tuple[int, int]:
        """(number of series, number of instances) in the image set."""
        series = sa.select(instances.c.series_instance_uid).where(
            instances.c.image_set_id == image_set_id).distinct().subquery()
        n_series = conn.execute(sa.select(sa.func.count()).select_from(series)).scalar_one()
        n_instances = conn.execute(sa.select(sa.func.count()).select_from(instances).where(
            instances.c.image_set_id == image_set_id)).scalar_one()
        return int(n_series), int(n_instances)

    def get_frame(self, datastore_id: str, image_set_id: str, frame_id: str) -> FrameLocation | None:
        rows = self.hot.rows(_FRAME, {"datastore_id": datastore_id, "image_set_id": image_set_id,
                                      "frame_id": frame_id})
        if not rows:
            return None
        sop_instance_uid, frame_number, transfer_syntax_uid, size = rows[0]
        return FrameLocation(image_set_id=ImageSetId(image_set_id), frame_id=ImageFrameId(frame_id),
                             sop_instance_uid=sop_instance_uid, frame_number=frame_number,
                             transfer_syntax_uid=transfer_syntax_uid, size=size)

    # -- import jobs --------------------------------------------------------------------------

    def insert_job(self, conn: Connection, job: ImportJob) -> None:
        conn.execute(sa.insert(import_jobs).values(
            id=job.id, datastore_id=job.datastore_id, name=job.name, status=job.status.value,
            input_uri=job.input_uri, output_uri=job.output_uri,
            data_access_role_arn=job.data_access_role_arn, client_token=job.client_token,
            message=job.message, submitted_at=job.submitted_at, ended_at=job.ended_at,
            import_configuration=job.import_configuration, input_owner_account_id=job.input_owner_account_id))

    def get_job(self, datastore_id: str, job_id: str) -> ImportJob | None:
        with self.read() as conn:
            row = conn.execute(sa.select(import_jobs).where(import_jobs.c.id == job_id,
                                                            import_jobs.c.datastore_id == datastore_id)).first()
            return _job(row) if row else None

    def job_by_id(self, job_id: str) -> ImportJob | None:
        with self.read() as conn:
            row = conn.execute(sa.select(import_jobs).where(import_jobs.c.id == job_id)).first()
            return _job(row) if row else None

    def find_job_by_token(self, datastore_id: str, client_token: str) -> ImportJob | None:
        with self.read() as conn:
            row = conn.execute(sa.select(import_jobs).where(
                import_jobs.c.datastore_id == datastore_id,
                import_jobs.c.client_token == client_token)).first()
            return _job(row) if row else None

    def list_jobs(self, datastore_id: str | None = None, *, status: str | None = None,
                  statuses: Sequence[str] | None = None, after: tuple[float, str] | None = None,
                  limit: int = 1000, newest_first: bool = True) -> list[ImportJob]:
        query = sa.select(import_jobs)
        if datastore_id:
            query = query.where(import_jobs.c.datastore_id == datastore_id)
        if status:
            query = query.where(import_jobs.c.status == status)
        if statuses:
            query = query.where(import_jobs.c.status.in_(list(statuses)))
        order = (import_jobs.c.submitted_at.desc(), import_jobs.c.id.desc()) if newest_first else (
            import_jobs.c.submitted_at, import_jobs.c.id)
        if after:
            cmp = sa.tuple_(import_jobs.c.submitted_at, import_jobs.c.id)
            query = query.where(cmp < sa.tuple_(*after) if newest_first else cmp > sa.tuple_(*after))
        with self.read() as conn:
            return [_job(r) for r in conn.execute(query.order_by(*order).limit(limit))]

    def set_job_status(self, job_id: str, status: JobStatus, *, message: str | None = None,
                       ended_at: float | None = None) -> None:
        with self.write() as conn:
            conn.execute(sa.update(import_jobs).where(import_jobs.c.id == job_id).values(
                status=status.value, message=message, ended_at=ended_at))

    # -- job leases: one runner per job across every process sharing the catalog ------------------

    def now(self, conn: Connection) -> float:
        """The database's clock (epoch seconds): leases compare times taken on one clock."""
        if conn.dialect.name == "postgresql":
            return float(conn.exec_driver_sql("SELECT extract(epoch FROM clock_timestamp())").scalar_one())
        return time.time()

    def claim_job(self, job_id: str, runner: str, ttl: float, *, take_over: str | None = None) -> bool:
        """Make `runner` the job's runner for `ttl` seconds, if nobody else holds a live lease
        (or the holder is `take_over`, known to be dead)."""
        with self.write() as conn:
            now = self.now(conn)
            free = sa.or_(import_jobs.c.runner.is_(None), import_jobs.c.runner == runner,
                          import_jobs.c.lease_expires_at < now)
            if take_over is not None:
                free = sa.or_(free, import_jobs.c.runner == take_over)
            result = conn.execute(sa.update(import_jobs).where(import_jobs.c.id == job_id, free)
                                  .values(runner=runner, lease_expires_at=now + ttl))
            return bool(result.rowcount == 1)

    def renew_job_lease(self, job_id: str, runner: str, ttl: float) -> bool:
        """Extend the lease; False if `runner` lost it (another process took the job over)."""
        with self.write() as conn:
            result = conn.execute(sa.update(import_jobs).where(
                import_jobs.c.id == job_id, import_jobs.c.runner == runner,
            ).values(lease_expires_at=self.now(conn) + ttl))
            return bool(result.rowcount == 1)

    def release_job(self, job_id: str, runner: str) -> None:
        with self.write() as conn:
            conn.execute(sa.update(import_jobs).where(
                import_jobs.c.id == job_id, import_jobs.c.runner == runner,
            ).values(runner=None, lease_expires_at=None))

    def job_runner(self, job_id: str) -> str | None:
        with self.read() as conn:
            return conn.execute(sa.select(import_jobs.c.runner).where(import_jobs.c.id == job_id)).scalar()

    def add_job_files(self, job_id: str, files: Iterable[tuple[str, int]]) -> None:
        rows = [{"job_id": job_id, "path": p, "status": "pending", "size": s} for p, s in files]
        with self.write() as conn:
            existing = {r.path for r in conn.execute(
                sa.select(import_job_files.c.path).where(import_job_files.c.job_id == job_id))}
            fresh = [r for r in rows if r["path"] not in existing]
            for chunk in _chunks(fresh, 1000):
                conn.execute(sa.insert(import_job_files), chunk)

    def job_files(self, job_id: str, status: str | None = None, *, with_record: bool = False,
                  limit: int | None = None) -> list[Any]:
        cols = [import_job_files.c.path, import_job_files.c.status, import_job_files.c.size,
                import_job_files.c.message, import_job_files.c.image_set_id]
        if with_record:
            cols.append(import_job_files.c.record)
        query = sa.select(*cols).where(import_job_files.c.job_id == job_id)
        if status:
            query = query.where(import_job_files.c.status == status)
        query = query.order_by(import_job_files.c.path)
        if limit:
            query = query.limit(limit)
        with self.read() as conn:
            return list(conn.execute(query))

    def pending_job_files(self, job_id: str, paths: Sequence[str]) -> set[str]:
        """Which of `paths` are still pending."""
        found: set[str] = set()
        with self.read() as conn:
            for chunk in _chunks(list(paths), 500):
                found.update(r[0] for r in conn.execute(sa.select(import_job_files.c.path).where(
                    import_job_files.c.job_id == job_id, import_job_files.c.status == "pending",
                    import_job_files.c.path.in_(chunk))))
        return found

    def job_file_counts(self, job_id: str) -> dict[str, tuple[int, int]]:
        """status -> (files, bytes)."""
        with self.read() as conn:
            rows = conn.execute(sa.select(import_job_files.c.status, sa.func.count(),
                                          sa.func.coalesce(sa.func.sum(import_job_files.c.size), 0))
                                .where(import_job_files.c.job_id == job_id)
                                .group_by(import_job_files.c.status))
            return {r[0]: (int(r[1]), int(r[2])) for r in rows}

    def update_job_files(self, job_id: str, updates: Sequence[dict[str, Any]],
                         conn: Connection | None = None, *, only_from: str | None = None) -> int:
        """Each update: path, status and optionally record, message, image_set_id. With
        `only_from`, a row changes only while it still has that status, so a file processed
        twice (a task rerun after its worker died) is counted once. Returns rows changed."""
        # One compiled UPDATE per set of columns, run as executemany: building a statement
        # per row cost milliseconds each, which made the job's main process the bottleneck.
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for u in updates:
            columns = tuple(sorted(k for k in u if k != "path"))
            by_columns.setdefault(columns, []).append(
                {"b_job_id": job_id, "b_path": u["path"], "b_from": only_from, **{k: u[k] for k in columns}})
        changed = 0
        with contextlib.ExitStack() as stack:
            c = conn or stack.enter_context(self.write())
            for columns, rows in by_columns.items():
                query = sa.update(import_job_files).where(
                    import_job_files.c.job_id == sa.bindparam("b_job_id"),
                    import_job_files.c.path == sa.bindparam("b_path"))
                if only_from is not None:
                    query = query.where(import_job_files.c.status == sa.bindparam("b_from"))
                if len(rows) == 1:  # a single row's count is reliable on every driver
                    changed += c.execute(query.values({k: sa.bindparam(k) for k in columns}), rows[0]).rowcount
                else:
                    changed += c.execute(query.values({k: sa.bindparam(k) for k in columns}), rows).rowcount
        return changed

    # -- shared secrets -----------------------------------------------------------------------

    def secret(self, name: str, make: Callable[[], str]) -> str:
        """The secret `name`, made with `make()` by whichever process asks first (all agree on one)."""
        query = sa.select(secrets.c.value).where(secrets.c.name == name)
        with self.read() as conn:
            value = conn.execute(query).scalar()
        if value is not None:
            return str(value)
        try:
            with self.write() as conn:
                conn.execute(sa.insert(secrets).values(name=name, value=make(), created_at=time.time()))
        except sa.exc.IntegrityError:
            pass  # another process made it first: use theirs
        with self.read() as conn:
            return str(conn.execute(query).scalar_one())
    # -- tags ---------------------------------------------------------------------------------

    def get_tags(self, resource_arn: str) -> dict[str, str]:
        with self.read() as conn:
            return {r.key: r.value for r in conn.execute(
                sa.select(tags).where(tags.c.resource_arn == resource_arn))}

    def set_tags(self, conn: Connection, resource_arn: str, values: dict[str, str]) -> None:
        if not values:
            return
        conn.execute(sa.delete(tags).where(tags.c.resource_arn == resource_arn,
                                           tags.c.key.in_(list(values))))
        conn.execute(sa.insert(tags), [{"resource_arn": resource_arn, "key": k, "value": v}
                                       for k, v in values.items()])

    def remove_tags(self, conn: Connection, resource_arn: str, keys: Sequence[str]) -> None:
        conn.execute(sa.delete(tags).where(tags.c.resource_arn == resource_arn,
                                           tags.c.key.in_(list(keys))))


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
