"""Composition root: Settings -> stores -> services -> the ASGI app; lifespan runs background work."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, AsyncIterator

from fastapi import FastAPI
from fastapi.responses import Response

from starlette.middleware.cors import CORSMiddleware

from tessel import __version__, ahi, dicomweb, documents, lifecycle, viewer
from tessel.catalog import query
from tessel.audit import AuditLog
from tessel.audit.http import AuditMiddleware
from tessel.auth import Access, KeyStore, bootstrap
from tessel.auth.oidc import Bearer, oidc_from_settings
from tessel.auth.tokens import TokenSigner
from tessel.config import Settings
from tessel.crypto import AUDIT_CHAIN
from tessel.dimse import DimseServer
from tessel.errors import Conflict, Unavailable
from tessel.ingest import jobs
from tessel.lane import Lane, Middleware
from tessel.limits import RequestLimits
from tessel.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from tessel.metrics import Metrics, gauge
from tessel.retrieve.instances import TRANSCODED
from tessel.stores import Stores, open_stores

log = logging.getLogger("tessel")


class DataDirLock:
    """One server per data directory: an exclusive lock held for the server's lifetime."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / "serve.lock"
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise Conflict(f"another tessel server is already serving {data_dir.resolve()}") from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, str(os.getpid()).encode())

    def release(self) -> None:
        os.close(self._fd)


class JobRunner:
    """Runs import jobs in the background, one at a time, each on the process pool or the Dask
    cluster. Every server sharing a catalog runs one; a job's lease (ingest.jobs) makes sure
    only one of them runs a given job, and another takes it over if that server dies."""

    def __init__(self, stores: Stores, dimse: DimseServer | None = None) -> None:
        self.stores = stores
        self.dimse = dimse  # its received, not yet committed instances hold back frame deletion
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tessel-jobs", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self) -> None:
        self._wake.set()

    def _receiving(self, datastore_id: str) -> bool:
        return self.dimse is not None and self.dimse.queue.pending(datastore_id) > 0

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        next_upkeep = 0.0
        while not self._stop.is_set():
            if time.monotonic() >= next_upkeep:  # life-cycle upkeep: interrupted writes, deleted frames
                next_upkeep = time.monotonic() + 60
                try:
                    lifecycle.maintain(self.stores, receiving=self._receiving)
                except Exception:  # retried next minute; serving goes on
                    log.exception("life-cycle upkeep failed")
            for job in jobs.unfinished_jobs(self.stores):
                if self._stop.is_set():
                    return
                try:
                    jobs.run_import_job(self.stores, job.id)
                except Conflict:
                    continue  # another process (a CLI import, another server) runs it
                except Unavailable as exc:  # the Dask scheduler is down: the job resumes next round
                    log.warning("import job %s paused: %s", job.id, exc.message)
                except Exception:  # a job failure is recorded on the job; keep serving
                    log.exception("import job %s failed", job.id)
            self._wake.wait(timeout=5)
            self._wake.clear()


def create_app(settings: Settings, stores: Stores | None = None, *, no_auth: bool = False) -> FastAPI:
    stores = stores or open_stores(settings)
    # Primary image sets committed before the DICOM query index existed (migration 0004) get their rows.
    with stores.catalog.exclusive("start-up"):  # servers starting together take turns
        query.backfill(stores.catalog, lambda key: documents.decode(stores.blobs.get(key)))
        assert stores.crypto is not None
        keys = KeyStore(stores.catalog, stores.crypto)
        administrator = bootstrap(keys, settings)
    access = Access(stores.catalog, stores.settings)  # allowed(principal, action, resource), for every front end
    audit = AuditLog(stores.catalog, stores.crypto.secret(AUDIT_CHAIN, always=True))  # every request, chained
    dimse = DimseServer(stores, settings, keys=keys, authz=access, audit=audit)
    runner = JobRunner(stores, dimse)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        audit.start()
        runner.start()
        app.state.ahi_access.start()  # lastAccessedAt, written in batches
        try:
            dimse.start()  # DIMSE on settings.dicom_port (already bound by serve())
            try:
                yield
            finally:
                dimse.stop()
        finally:
            app.state.ahi_access.stop()
            runner.stop()
            audit.stop()  # after every front end: the last records are written before exit

    app = FastAPI(title="tessel", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.stores = stores
    app.state.jobs = runner
    app.state.dimse = dimse
    app.state.keys = keys
    app.state.access = access
    app.state.audit = audit
    app.state.bearer = Bearer(TokenSigner(stores.catalog, settings.data_dir), keys, oidc_from_settings(settings))
    app.state.bootstrap = administrator

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, Any]:
        with stores.catalog.read() as conn:
            conn.exec_driver_sql("SELECT 1")
        return {"status": "ok", "version": __version__}

    metrics = Metrics([lambda: _state_gauges(stores, audit, dimse)])
    audit.observers.append(metrics.observe)  # request figures, counted off the request path
    app.state.metrics = metrics

    @app.get("/metrics", include_in_schema=False)
    def metrics_endpoint() -> Response:
        return Response(metrics.render(), media_type=METRICS_CONTENT_TYPE)

    dicomweb.install(app, no_auth=no_auth)  # /datastore/{datastoreId}/studies..., before the AHI catch-alls
    viewer.install(app)  # /viewer/ pages and /viewer/api/ (shares DICOMweb's token signer)
    ahi.install(app)  # the AHI API sits on the root path
    for middleware, options in edge_middleware(settings, audit):
        app.add_middleware(middleware, **options)
    return app


def edge_middleware(settings: Settings, audit: AuditLog) -> list[Middleware]:
    """The middleware every HTTP request passes, innermost first (the frame lane's too)."""
    return [(RequestLimits, {}),  # size, body read timeout (inside the audit: refusals are recorded)
            (AuditMiddleware, {"audit": audit}),  # inside CORS: preflights are not requests to audit
            (CORSMiddleware, dicomweb.cors_options(settings))]  # browsers on other origins


def _state_gauges(stores: Stores, audit: AuditLog, dimse: DimseServer) -> list[Any]:
    """What /metrics reads at each scrape (each a cheap query or a length)."""
    datastores = stores.catalog.list_datastores(limit=100_000)
    by_status: dict[str, int] = {}
    for ds in datastores:
        by_status[ds.status.value] = by_status.get(ds.status.value, 0) + 1
    jobs: dict[str, int] = {}
    for job in stores.catalog.list_jobs(statuses=["SUBMITTED", "IN_PROGRESS"], limit=100_000):
        jobs[job.status.value] = jobs.get(job.status.value, 0) + 1
    return [
        gauge("tessel_datastores", "Datastores in the catalog (every status)", len(datastores)),
        gauge("tessel_datastores_by_status", "Datastores by status", labels=["status"],
              samples=[((k,), v) for k, v in sorted(by_status.items())]),
        gauge("tessel_import_jobs_unfinished", "Import jobs submitted or in progress (every server)",
              labels=["status"], samples=[((k,), jobs.get(k, 0)) for k in ("SUBMITTED", "IN_PROGRESS")]),
        gauge("tessel_audit_queue_records", "Audit records waiting to be written", audit.queued),
        gauge("tessel_audit_dropped_records", "Records of requests refused while the audit queue was full",
              audit.dropped),
        gauge("tessel_dimse_associations", "DIMSE associations open now", dimse.associations),
        gauge("tessel_frame_cache_bytes", "Frames kept decoded or transcoded (TESSEL_FRAME_CACHE_MB)",
              TRANSCODED.size),
    ]


def serve(settings: Settings, *, no_auth: bool = False) -> None:
    """Run the HTTP server until interrupted; exits with a one-line reason on failure."""
    import socket

    import uvicorn

    lock: DataDirLock | None = None
    if settings.catalog_url is None:
        # The embedded catalog is one SQLite file: one server per data directory. Servers on a
        # shared catalog (PostgreSQL) and blob store keep no state of their own; any number run.
        try:
            lock = DataDirLock(settings.data_dir)
        except OSError as exc:
            raise Unavailable(f"data directory {settings.data_dir} is unusable: {exc}") from None
    try:
        # proto=IPPROTO_TCP: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say TCP;
        # with proto 0 every response waited ~40 ms for the client's delayed ACK.
        sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET, socket.SOCK_STREAM,
                             socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind((settings.host, settings.port))
        except OSError as exc:
            raise Unavailable(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}") from None
        app = create_app(settings, no_auth=no_auth)
        app.state.dimse.bind()  # a taken DICOM port fails here, with its one-line reason
        # No access log unless asked for (--access-log, for debugging): request lines carry UIDs and
        # query strings (PHI); the audit trail records every request.
        # Frame requests skip the routing and FastAPI layers that do nothing for them (lane.py); with
        # a local catalog and local blobs their lookup and read run on the event loop.
        local = settings.catalog_url is None and (settings.blob_url or "file:").startswith("file:")
        served = Lane(app, edge_middleware(settings, app.state.audit),
                      [dicomweb.frames_route(inline=local), ahi.frame_route(inline=local)])
        config = uvicorn.Config(served, log_level="warning", access_log=settings.access_log, timeout_keep_alive=15,
                                limit_concurrency=2000)
        if settings.access_log:  # uvicorn logs requests at INFO, under the server's WARNING level
            logging.getLogger("uvicorn.access").setLevel(logging.INFO)
        server = uvicorn.Server(config)
        print(f"tessel {__version__} serving {settings.data_dir.resolve()} on "
              f"http://{settings.host}:{settings.port}", flush=True)
        print(f"DIMSE: AE title {settings.ae_title} on {settings.host}:{app.state.dimse.port}", flush=True)
        print(viewer.status_line(f"http://{settings.host}:{settings.port}"), flush=True)
        key = app.state.bootstrap
        if key.secret is not None:  # generated just now: the only time it is shown
            print("administrator access key (printed once, keep it):\n"
                  f"  AWS_ACCESS_KEY_ID={key.access_key_id}\n"
                  f"  AWS_SECRET_ACCESS_KEY={key.secret.reveal()}", flush=True)
        else:
            print(f"administrator access key id: {key.access_key_id} ({key.source})", flush=True)
        server.run(sockets=[sock])
    finally:
        if lock is not None:
            lock.release()
