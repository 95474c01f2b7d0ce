"""Engine set-up and migrations. SQLite runs in WAL mode with one writer at a time."""

from __future__ import annotations

import os
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

from tessel.catalog.sql import dialects  # noqa: F401  (PostgreSQL column types)

_INI = os.path.join(os.path.dirname(__file__), "alembic.ini")


def create_engine(url: str, *, pool_size: int | None = None) -> Engine:
    """`pool_size`: connections kept open (default 40 on SQLite, 10 elsewhere); twice as many more on
    demand. On SQLite as many as the request thread pool's 40 threads: below that, busy moments
    opened and closed a connection (with its PRAGMAs) per request."""
    if url.startswith("sqlite"):
        size = pool_size or 40
        engine = sa.create_engine(url, connect_args={"timeout": 60, "check_same_thread": False},
                                  pool_size=size, max_overflow=2 * size)

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            # Take transaction control from the driver so that BEGIN is ours (below).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk when it returns (NORMAL could lose the last ones on a power
            # cut); STOW-RS and C-STORE answer "stored" after it. Writers group commits to share it.
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            # Writers take the write lock up front: no deadlocked lock upgrades between processes.
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")

        return engine
    size = pool_size or 10
    return sa.create_engine(url, pool_pre_ping=True, pool_size=size, max_overflow=2 * size)


# pg_advisory_xact_lock key of schema migrations: servers starting together migrate one at a time.
MIGRATION_LOCK = 0x7E55E1_0001


def migrate(engine: Engine) -> None:
    # Imported here: alembic is a third of the catalog's import time, and import workers
    # (forked from a fork server that preloads the catalog) never migrate.
    from alembic import command
    from alembic.config import Config

    cfg = Config(_INI)
    with engine.connect().execution_options(write=True) as conn:
        if conn.dialect.name == "postgresql":  # (SQLite: BEGIN IMMEDIATE already serialises writers)
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        conn.commit()
