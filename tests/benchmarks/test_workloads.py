"""Workloads: the sizes the issue asks for, made deterministically, cached, and the request plans drawn from them."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from benchmarks.compare import workloads
from benchmarks.compare.workloads import FULL, QUICK, Sizes

TINY = Sizes(ct_slices=3, ct_size=32, wsi_width=512, wsi_height=512, wsi_levels=2, radiographs=12, patients=4,
             radiograph_size=16)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> workloads.Workloads:
    return workloads.prepare(TINY, tmp_path_factory.mktemp("cache"), log=lambda _: None)


def _digest(work: workloads.Workloads) -> str:
    h = hashlib.sha256()
    for dataset in work.datasets.values():
        for instance in dataset.instances:
            h.update(Path(instance.path).read_bytes())
    return h.hexdigest()


def test_full_run_has_the_sizes_of_the_issue() -> None:
    assert (FULL.ct_slices, FULL.ct_size) == (300, 512)
    assert FULL.wsi_tiles() >= 20_000 and FULL.wsi_levels >= 3
    assert (FULL.radiographs, FULL.patients) == (2000, 200)
    assert QUICK.wsi_tiles() < 100  # a smoke run stays small


def test_every_dataset_is_generated_and_indexed(tiny: workloads.Workloads) -> None:
    assert set(tiny.datasets) == {"ct", "ct_stow4", "ct_cstore", "wsi", "radiographs"}
    assert len(tiny["ct"].instances) == 3
    assert len(tiny["ct"].series) == 1
    assert {i.study for i in tiny["ct"].instances}.isdisjoint(i.study for i in tiny["ct_stow4"].instances)
    wsi = tiny["wsi"].instances
    assert len(wsi) == 2 and max(i.frames for i in wsi) == 4 and min(i.frames for i in wsi) == 1
    rs = tiny["radiographs"]
    assert len(rs.instances) == 12 and len({i.patient_id for i in rs.instances}) == 4
    assert all(i.study_date and i.size == Path(i.path).stat().st_size for i in rs.instances)


def test_same_sizes_reuse_the_cache_and_give_the_same_bytes(tiny: workloads.Workloads, tmp_path: Path) -> None:
    again = workloads.prepare(TINY, tiny.folder.parent, log=lambda _: None)
    assert again.datasets == tiny.datasets  # read back from index.json, nothing regenerated
    fresh = workloads.prepare(TINY, tmp_path, log=lambda _: None)  # generated anew elsewhere
    assert _digest(fresh) == _digest(tiny)


def test_cache_key_follows_the_sizes() -> None:
    assert workloads.cache_key(TINY) == workloads.cache_key(dataclasses.replace(TINY))
    assert workloads.cache_key(TINY) != workloads.cache_key(dataclasses.replace(TINY, ct_slices=4))


def test_plans_are_deterministic_per_seed(tiny: workloads.Workloads) -> None:
    rs = tiny["radiographs"]
    for draw in (workloads.patient_id_queries, workloads.date_range_queries, workloads.name_prefix_queries):
        assert draw(rs, 50, 1) == draw(rs, 50, 1)
        assert draw(rs, 50, 1) != draw(rs, 50, 2)
    frames = workloads.random_frames(tiny["wsi"], 200, 7, largest_only=True)
    assert frames == workloads.random_frames(tiny["wsi"], 200, 7, largest_only=True)
    assert {f for _, f in frames} == {1, 2, 3, 4}  # every tile of the 2x2 level gets asked for
    assert {i.frames for i, _ in frames} == {4}


def test_queries_are_valid_values(tiny: workloads.Workloads) -> None:
    rs = tiny["radiographs"]
    ids = {i.patient_id for i in rs.instances}
    assert set(workloads.patient_id_queries(rs, 30, 1)) <= ids
    for value in workloads.date_range_queries(rs, 30, 1):
        low, high = value.split("-")
        assert len(low) == len(high) == 8 and low < high
    for value in workloads.name_prefix_queries(rs, 30, 1):
        assert value.endswith("*") and value[:-1].isascii() and value[:-1].isalpha()
