"""The server's ingest writer: callers that wait together are committed together, each gets
its own placements, and one caller's bad record does not fail the others."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tessel import retrieve
from tessel.ingest import staging_options
from tessel.ingest.writer import Writer, writer_of
from tessel.lifecycle.datastores import create_datastore
from tessel.stores import Stores
from tests.factory import make_series


def _staged(writer: Writer, stores: Stores, datastore_id: str, paths: list[Path]) -> list[dict[str, Any]]:
    options = staging_options(stores, datastore_id)
    records = []
    for path in paths:
        staged = writer.stage(path.read_bytes(), options)
        assert staged.record is not None, staged.failure
        records.append(staged.record)
    return records


def test_callers_waiting_together_share_one_commit(stores: Stores, tmp_path: Path) -> None:
    ds = create_datastore(stores, "writer")
    writer = writer_of(stores)
    assert writer_of(stores) is writer  # one per Stores
    records = _staged(writer, stores, ds.id, make_series(tmp_path / "s", 9, rows=16, columns=16))

    first_started, release = threading.Event(), threading.Event()
    real = writer._assemble

    def slow_first(datastore_id: str, batch: list[dict[str, Any]]) -> Any:
        if not first_started.is_set():
            first_started.set()
            release.wait(30)  # the others queue up meanwhile
        return real(datastore_id, batch)

    writer._assemble = slow_first  # type: ignore[method-assign]
    with ThreadPoolExecutor(9) as pool:
        first = pool.submit(writer.commit, ds.id, records[:1])
        assert first_started.wait(30)
        rest = [pool.submit(writer.commit, ds.id, [r]) for r in records[1:]]
        while len(writer._waiting) < 8:
            time.sleep(0.01)
        release.set()
        placements = [first.result()] + [f.result() for f in rest]
    assert writer.groups == 2  # the first alone, then the eight that waited, together
    assert all(len(p) == 1 and p[0].changed for p in placements)
    assert placements[0][0].version == 1 and {p[0].version for p in placements[1:]} == {2}
    (image_set_id,) = {p[0].image_set_id for p in placements}
    doc = retrieve.get_metadata(stores, ds.id, image_set_id)
    (series,) = doc["Study"]["Series"].values()
    assert set(series["Instances"]) == {r["sop_instance_uid"] for r in records}


def test_a_bad_record_fails_only_its_caller(stores: Stores, tmp_path: Path) -> None:
    ds = create_datastore(stores, "writer-bad")
    writer = writer_of(stores)
    good, other = _staged(writer, stores, ds.id, make_series(tmp_path / "s", 2, rows=16, columns=16))
    bad = {k: v for k, v in other.items() if k != "digest"}  # not a staged record any more

    release = threading.Event()
    real = writer._assemble
    calls: list[int] = []

    def gated(datastore_id: str, batch: list[dict[str, Any]]) -> Any:
        calls.append(len(batch))
        release.wait(30)
        return real(datastore_id, batch)

    writer._assemble = gated  # type: ignore[method-assign]
    with ThreadPoolExecutor(3) as pool:
        warm = pool.submit(writer.commit, ds.id, [good])  # holds the committer while the two queue
        while not calls:
            time.sleep(0.01)
        failing = pool.submit(writer.commit, ds.id, [bad])
        fine = pool.submit(writer.commit, ds.id, [good])
        while len(writer._waiting) < 2:
            time.sleep(0.01)
        release.set()
        assert warm.result()[0].changed
        with pytest.raises(KeyError):
            failing.result()
        assert fine.result()[0].changed is False  # the same instance again: no new version
    assert calls == [1, 2, 1, 1]  # the pair together first, then each alone
