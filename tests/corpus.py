"""The shared DICOM corpus: where it is, its index entries, and a skip marker for tests that need it.

    from tests.corpus import corpus_dir, corpus_files, needs_corpus
    pytestmark = [needs_corpus, pytest.mark.corpus]

The corpus is `TESSEL_CORPUS` if set, else `<repo>/../shared/corpus`; see its README
for the fields of an index entry (`path`, `expect`, `reject_reason`, `frame_crc32`, ...).
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any, Literal

import pytest

_DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"


def corpus_dir() -> Path | None:
    """The corpus folder (the one holding index.json), or None if there is none."""
    configured = os.environ.get("TESSEL_CORPUS")
    root = Path(configured) if configured else _DEFAULT
    return root if (root / "index.json").is_file() else None


@cache
def _entries() -> tuple[dict[str, Any], ...]:
    root = corpus_dir()
    if root is None:
        return ()
    return tuple(json.loads((root / "index.json").read_text())["files"])


def corpus_files(expect: Literal["import", "reject"] | None = None) -> list[dict[str, Any]]:
    """Index entries (all, or only those expected to import / be rejected); [] without a corpus."""
    return [e for e in _entries() if expect is None or e["expect"] == expect]


needs_corpus = pytest.mark.skipif(
    corpus_dir() is None,
    reason="corpus tests did not run: the shared DICOM corpus was not found. Put it at "
           f"{_DEFAULT} or set TESSEL_CORPUS to the folder that holds its index.json.",
)
