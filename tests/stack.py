"""The two deployments every API and catalog-contract test runs on, selected by the `stack` fixture.

- `embedded`: the default, SQLite catalog and files under the data directory, local process pool.
- `scaleout`: a real PostgreSQL server (Debian's package: initdb + pg_ctl on a private port and
  data directory), the moto S3 server of tests/s3server.py and a Dask LocalCluster whose
  workers are separate processes. One of each per session, started only when a test needs it.

A fixture that starts `tessel serve` (tests/ahi, tests/dicomweb) or opens stores takes `stack`
and applies `stack.env()` / `stack.settings()`; every test using it then runs once per stack,
with ids like `test_x[embedded]` and `test_x[scaleout]`. `pytest --stack embedded` (or
`scaleout`) deselects the other one.

Isolation is cheap: a server gets a database and a bucket of its own (CREATE DATABASE, not a new
cluster); in-process catalog tests share one database that is emptied before each test.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

from tessel.config import Secret, Settings
from tests.s3server import ACCESS_KEY_ID, SECRET_ACCESS_KEY, S3Server

STACKS = ("embedded", "scaleout")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--stack", choices=(*STACKS, "both"), default="both",
                     help="run stack-parametrized tests on the embedded default, the "
                          "PostgreSQL + S3 + Dask stack, or both (default)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    chosen = config.getoption("--stack")
    if chosen == "both":
        return
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        (drop if params.get("stack", chosen) != chosen else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: scripts/test-setup.sh installs it (make test)")
    return Path(found[-1]).parent


@dataclass
class PostgresServer:
    """A throwaway PostgreSQL cluster on 127.0.0.1:port (trust auth, no fsync: test data only)."""

    port: int
    root: Path
    user: str = "tessel"
    _names: Iterator[int] = field(default_factory=itertools.count)
    _template: str | None = None

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={self.user} dbname={database}",
                             autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def new_database(self, stem: str = "tessel", *, migrated: bool = True) -> str:
        """A new database; `migrated`: a copy of one that has tessel's tables already (a file
        copy, much faster than running the migrations again in every server)."""
        name = f"{stem}_{os.getpid()}_{next(self._names)}"
        if not migrated:
            self.execute(f'CREATE DATABASE "{name}"')
            return name
        if self._template is None:
            from tessel.catalog import Catalog

            template = self.new_database("tessel_template", migrated=False)
            Catalog.open(self.url(template)).close()
            self._template = template
        self.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self._template}"')
        return name


def _run_as(user: str | None, *argv: str) -> None:
    command = ["runuser", "-u", user, "--", *argv] if user else list(argv)
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:2])} failed: {result.stderr or result.stdout}")


@contextlib.contextmanager
def postgres_cluster(**settings: str) -> Iterator[PostgresServer]:
    """Start a throwaway PostgreSQL cluster (stopped and deleted on exit); `settings` are extra
    server settings (name=value), e.g. shared_buffers for benchmarks."""
    bindir = _pg_bin()
    # initdb and postgres refuse to run as root: run them as the `postgres` account Debian's package made.
    owner = "postgres" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="tessel-pg-"))
    if owner:
        account = pwd.getpwnam(owner)
        os.chown(root, account.pw_uid, account.pw_gid)
    data, port = root / "data", _free_port()
    values = {"listen_addresses": "127.0.0.1", "fsync": "off", "synchronous_commit": "off",
              "full_page_writes": "off", "max_connections": "300", "shared_buffers": "64MB", **settings}
    try:
        _run_as(owner, str(bindir / "initdb"), "-D", str(data), "-U", "tessel", "--auth=trust", "-E", "UTF8",
                "--locale=C", "--no-sync")
        options = f"-p {port} -k {root} " + " ".join(f"-c {k}={v}" for k, v in values.items())
        _run_as(owner, str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"),
                "-w", "-t", "60", "start")
        yield PostgresServer(port=port, root=root)
    finally:
        if (data / "postmaster.pid").exists():
            _run_as(owner, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    with postgres_cluster() as server:
        yield server


@dataclass
class DaskCluster:
    scheduler_address: str
    cluster: Any

    def worker_pids(self) -> dict[str, int]:
        """worker address -> pid of its process."""
        from distributed import Client

        with Client(self.scheduler_address, timeout=30) as client:
            return dict(client.run(os.getpid))


@pytest.fixture(scope="session")
def dask_cluster() -> Iterator[DaskCluster]:
    from distributed import LocalCluster

    # Separate worker processes (nannies restart a killed one), as on a real cluster.
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=":0", memory_limit="3GiB", silence_logs=40)
    try:
        yield DaskCluster(scheduler_address=str(cluster.scheduler_address), cluster=cluster)
    finally:
        cluster.close(timeout=30)


@dataclass
class Stack:
    """One deployment. `settings()` for stores opened in the test process, `env()` for servers."""

    name: str
    pg: PostgresServer | None = None
    s3: S3Server | None = None
    dask: DaskCluster | None = None
    master_key_file: Path | None = None  # one keyring for every server of the stack (they share data keys)
    _shared_database: str | None = None

    @property
    def scaleout(self) -> bool:
        return self.name == "scaleout"

    def env(self) -> dict[str, str]:
        """TESSEL_* variables for a `tessel serve` of its own: a fresh database and bucket."""
        if self.pg is None or self.s3 is None or self.dask is None:
            return {}
        return {"TESSEL_CATALOG_URL": self.pg.url(self.pg.new_database()),
                "TESSEL_BLOB_URL": f"s3://{self.s3.new_bucket('tessel-stack')}/blobs",
                "TESSEL_S3_ENDPOINT_URL": self.s3.endpoint_url, "TESSEL_S3_ACCESS_KEY_ID": ACCESS_KEY_ID,
                "TESSEL_S3_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
                "TESSEL_DASK_SCHEDULER": self.dask.scheduler_address,
                "TESSEL_MASTER_KEY_FILE": str(self.master_key_file)}

    def settings(self, data_dir: Path, **changes: Any) -> Settings:
        """Settings for stores opened in the test process. On scaleout all tests share one
        database, emptied first (far cheaper than a database per test)."""
        if self.pg is None or self.s3 is None or self.dask is None:
            return Settings(data_dir=data_dir, **changes)
        if self._shared_database is None:
            self._shared_database = self.pg.new_database("tessel_shared")
        truncate_all(self.pg.url(self._shared_database))
        values: dict[str, Any] = {
            "catalog_url": self.pg.url(self._shared_database),
            "blob_url": f"s3://{self.s3.new_bucket('tessel-stores')}/blobs",
            "s3_endpoint_url": self.s3.endpoint_url, "s3_access_key_id": ACCESS_KEY_ID,
            "s3_secret_access_key": Secret(SECRET_ACCESS_KEY),
            "dask_scheduler": self.dask.scheduler_address, "master_key_file": self.master_key_file}
        values.update(changes)
        return Settings(data_dir=data_dir, **values)


def truncate_all(url: str) -> None:
    import sqlalchemy as sa

    from tessel.catalog.sql.tables import metadata

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:  # DELETE: on tables this small it beats TRUNCATE's new files
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())
    finally:
        engine.dispose()


@pytest.fixture(scope="session", params=STACKS)
def stack(request: pytest.FixtureRequest) -> Stack:
    if request.param == "embedded":
        return Stack("embedded")
    for module, package in (("distributed", "dask[distributed]"), ("psycopg", "psycopg[binary]")):
        try:
            __import__(module)
        except ImportError:
            raise RuntimeError(f"the scale-out stack needs {package} (the `dist` extra): run `make dev`") from None
    return Stack("scaleout", pg=request.getfixturevalue("pg_server"), s3=request.getfixturevalue("s3_server"),
                 dask=request.getfixturevalue("dask_cluster"),
                 master_key_file=_keyring(request.getfixturevalue("tmp_path_factory")))


def wait_until(predicate: Any, timeout: float = 30.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


@pytest.fixture(scope="session")
def scaleout(pg_server: PostgresServer, s3_server: S3Server, dask_cluster: DaskCluster,
             tmp_path_factory: pytest.TempPathFactory) -> Stack:
    """The scale-out stack alone, for tests about it (Dask workers dying, servers sharing a catalog)."""
    return Stack("scaleout", pg=pg_server, s3=s3_server, dask=dask_cluster,
                 master_key_file=_keyring(tmp_path_factory))


def _keyring(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stack's master key file, made once before any server starts."""
    from tessel.crypto.master import Keyring

    path = tmp_path_factory.getbasetemp() / "stack-master.key"
    if not path.exists():
        Keyring.open(path)
    return path
