"""Single-statement reads on the hot paths (a frame's location, an access key): no pool checkout,
no BEGIN/ROLLBACK, no result processing.

Through `Catalog.read()` one SELECT costs SQLAlchemy's checkout, an explicit BEGIN (engine.py),
the statement and a ROLLBACK on return: ~1 ms of CPU, 20x the SELECT itself on SQLite. A single
SELECT needs no transaction (it reads one consistent snapshot on its own), so these run in
autocommit on plain DBAPI connections kept in a small stack, each statement compiled once per
dialect (the driver then reuses its prepared form: sqlite3 caches statements per connection).
Only for statements whose columns need no type processing (strings, integers).
"""

from __future__ import annotations

import threading
from typing import Any, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine

_KEEP = 32  # idle connections kept (more than the request threads that run at once)


class HotReads:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self._compiled: dict[int, tuple[sa.Select[Any], str, tuple[str, ...] | None]] = {}

    def rows(self, statement: sa.Select[Any], params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Every row of `statement` (a module-level constant: compiled once, by identity)."""
        entry = self._compiled.get(id(statement))
        if entry is None or entry[0] is not statement:
            compiled = statement.compile(dialect=self.engine.dialect)
            order = tuple(compiled.positiontup) if compiled.positiontup is not None else None
            entry = self._compiled[id(statement)] = (statement, compiled.string, order)
        _, sql, order = entry
        args: Sequence[Any] | dict[str, Any] = tuple(params[name] for name in order) if order else params
        conn = self._take()
        try:
            cursor = conn.cursor()
            try:
                cursor.execute(sql, args)
                found = cursor.fetchall()
            finally:
                cursor.close()
        except BaseException:
            self._discard(conn)  # a broken connection (server restart, ...) is not reused
            raise
        self._give(conn)
        return found

    def _take(self) -> Any:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        fairy = self.engine.raw_connection()  # runs the engine's connect listeners (SQLite PRAGMAs)
        fairy.detach()  # ours from now on: not counted against the engine's pool
        conn = fairy.dbapi_connection
        if self.engine.dialect.name != "sqlite":
            conn.autocommit = True  # (SQLite's listener already hands transaction control to us)
        return conn

    def _give(self, conn: Any) -> None:
        with self._lock:
            if len(self._idle) < _KEEP:
                self._idle.append(conn)
                return
        conn.close()

    @staticmethod
    def _discard(conn: Any) -> None:
        try:
            conn.close()
        except Exception:  # already broken: nothing more to release
            pass

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            self._discard(conn)
