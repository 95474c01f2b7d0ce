"""How catalog column types are spelled on PostgreSQL, so it keeps what SQLite keeps.

SQLite ignores VARCHAR lengths and stores 64-bit integers; DICOM files in the wild
break their VRs' length limits, and whole-slide files pass 2 GiB. So on PostgreSQL
every string column is TEXT (no length check; the same storage as VARCHAR) and every
INTEGER is BIGINT. Columns use the "C" collation: matching is byte-wise as on
SQLite, and btree indexes then serve `LIKE 'prefix%'` (QIDO wildcards), which they
cannot under a locale's collation. Casts of bound parameters stay plain TEXT.

Imported by the engine and the migrations environment, so every migration, present
and future, creates its tables this way.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Integer, String, Text, Unicode, UnicodeText
from sqlalchemy.ext.compiler import compiles


def _text(type_: Any, compiler: Any, **kw: Any) -> str:
    # In DDL the type compiler is handed the column (type_expression); in casts it is not.
    return 'TEXT COLLATE "C"' if isinstance(kw.get("type_expression"), Column) else "TEXT"


def _bigint(type_: Any, compiler: Any, **kw: Any) -> str:
    return "BIGINT"


for _kind in (String, Text, Unicode, UnicodeText):
    compiles(_kind, "postgresql")(_text)
compiles(Integer, "postgresql")(_bigint)
