"""The benchmark's data, made by tessel's own deterministic generators (tessel.demo).

Same sizes and seeds give the same bytes, so the files are cached under
benchmarks/out/data/<key>/ (the key also hashes the generator sources: change a
generator and the data is made again). Each dataset comes with an index of its
instances (UIDs, sizes, frames, patient and study attributes) that the request
plans are drawn from, with their own seeds, so both servers get the same requests
in the same order.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pydicom

import tessel.demo
from tessel.demo import write_ct_series, write_radiograph_set, write_wsi_pyramid

TILE = 256


@dataclass(frozen=True, slots=True)
class Sizes:
    """How big each workload is; FULL is what the README's figures use."""

    ct_slices: int
    ct_size: int
    wsi_width: int
    wsi_height: int
    wsi_levels: int
    radiographs: int
    patients: int
    radiograph_size: int = 64

    def wsi_tiles(self) -> int:
        from tessel.demo.wsi import pyramid_levels

        return sum(level.frames for level in pyramid_levels(self.wsi_width, self.wsi_height, TILE, self.wsi_levels))


# 145 x 140 tiles of 256 at the base level: 20,300 tiles there, 27,000 over four levels.
FULL = Sizes(ct_slices=300, ct_size=512, wsi_width=145 * TILE, wsi_height=140 * TILE, wsi_levels=4,
             radiographs=2000, patients=200)
QUICK = Sizes(ct_slices=12, ct_size=128, wsi_width=4 * TILE, wsi_height=4 * TILE, wsi_levels=2,
              radiographs=60, patients=12)

# One seed per dataset; three CT series so each ingest figure stores instances new to the server.
SEEDS = {"ct": 1, "ct_stow4": 2, "ct_cstore": 3, "wsi": 4, "radiographs": 5}


@dataclass(frozen=True, slots=True)
class Instance:
    path: str
    study: str
    series: str
    sop: str
    size: int  # bytes of the Part 10 file
    frames: int
    instance_number: int
    patient_id: str
    patient_name: str  # the first (alphabetic) component group, as the file has it
    study_date: str


@dataclass(frozen=True, slots=True)
class Dataset:
    name: str
    instances: tuple[Instance, ...]

    @property
    def bytes(self) -> int:
        return sum(i.size for i in self.instances)

    @property
    def studies(self) -> list[str]:
        return sorted({i.study for i in self.instances})

    @property
    def series(self) -> list[tuple[str, str]]:
        return sorted({(i.study, i.series) for i in self.instances})


@dataclass(frozen=True, slots=True)
class Workloads:
    sizes: Sizes
    folder: Path
    datasets: dict[str, Dataset]

    def __getitem__(self, name: str) -> Dataset:
        return self.datasets[name]

    def folder_of(self, name: str) -> Path:
        return self.folder / name


def _writers(sizes: Sizes) -> dict[str, Callable[[Path], Any]]:
    return {
        "ct": lambda out: write_ct_series(out, slices=sizes.ct_slices, size=sizes.ct_size, seed=SEEDS["ct"]),
        "ct_stow4": lambda out: write_ct_series(out, slices=sizes.ct_slices, size=sizes.ct_size,
                                                seed=SEEDS["ct_stow4"]),
        "ct_cstore": lambda out: write_ct_series(out, slices=sizes.ct_slices, size=sizes.ct_size,
                                                 seed=SEEDS["ct_cstore"]),
        "wsi": lambda out: write_wsi_pyramid(out, base_width=sizes.wsi_width, base_height=sizes.wsi_height,
                                             tile=TILE, levels=sizes.wsi_levels, seed=SEEDS["wsi"]),
        "radiographs": lambda out: write_radiograph_set(out, count=sizes.radiographs, patients=sizes.patients,
                                                        seed=SEEDS["radiographs"], size=sizes.radiograph_size),
    }


def cache_key(sizes: Sizes) -> str:
    """Sizes, seeds and the generators' source: what decides the bytes of every file."""
    digest = hashlib.sha256(json.dumps([asdict(sizes), SEEDS], sort_keys=True).encode())
    for source in sorted(Path(tessel.demo.__file__).parent.glob("*.py")):
        digest.update(source.name.encode())
        digest.update(source.read_bytes())
    digest.update(pydicom.__version__.encode())
    return digest.hexdigest()[:16]


def prepare(sizes: Sizes, cache_root: Path, *, log: Callable[[str], None] = print) -> Workloads:
    """Generate (or reuse) every dataset for these sizes and index it."""
    folder = cache_root / cache_key(sizes)
    index_file = folder / "index.json"
    if index_file.exists():
        raw = json.loads(index_file.read_text())
        return Workloads(sizes, folder, {name: _dataset_from_json(name, items) for name, items in raw.items()})
    if folder.exists():
        shutil.rmtree(folder)  # an interrupted generation: start over
    folder.mkdir(parents=True)
    log(f"generating workloads into {folder} (once; later runs reuse them)")
    names = list(_writers(sizes))
    with ProcessPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(_generate, sizes, name, folder / name) for name in names}
        datasets = {name: future.result() for name, future in futures.items()}
    index_file.write_text(json.dumps({n: [asdict(i) for i in d.instances] for n, d in datasets.items()}))
    return Workloads(sizes, folder, datasets)


def _generate(sizes: Sizes, name: str, out: Path) -> Dataset:
    paths = _writers(sizes)[name](out)
    return index_files(name, paths)


def index_files(name: str, paths: list[Path]) -> Dataset:
    instances = []
    for path in paths:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        name_value = ds.get("PatientName")
        instances.append(Instance(
            path=str(path), study=str(ds.StudyInstanceUID), series=str(ds.SeriesInstanceUID),
            sop=str(ds.SOPInstanceUID), size=path.stat().st_size, frames=int(ds.get("NumberOfFrames", 1) or 1),
            instance_number=int(ds.get("InstanceNumber", 0) or 0), patient_id=str(ds.get("PatientID", "")),
            patient_name=str(name_value.alphabetic) if name_value is not None else "",
            study_date=str(ds.get("StudyDate", "")),
        ))
    return Dataset(name, tuple(instances))


def _dataset_from_json(name: str, items: list[dict[str, Any]]) -> Dataset:
    return Dataset(name, tuple(Instance(**item) for item in items))


# -- request plans: what each scenario asks for, drawn with its own seed --------------------------


def random_frames(dataset: Dataset, count: int, seed: int, *, largest_only: bool = False) -> list[tuple[Instance, int]]:
    """(instance, 1-based frame number) pairs: any frame of any instance, or of the largest."""
    rng = random.Random(seed)
    pool = [max(dataset.instances, key=lambda i: i.frames)] if largest_only else list(dataset.instances)
    out = []
    for _ in range(count):
        instance = pool[rng.randrange(len(pool))]
        out.append((instance, rng.randrange(instance.frames) + 1))
    return out


def patient_id_queries(dataset: Dataset, count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    ids = sorted({i.patient_id for i in dataset.instances})
    return [ids[rng.randrange(len(ids))] for _ in range(count)]


def date_range_queries(dataset: Dataset, count: int, seed: int, *, days: int = 90) -> list[str]:
    """`StudyDate` ranges of `days` days, starting anywhere within the dataset's dates."""
    rng = random.Random(seed)
    dates = sorted({i.study_date for i in dataset.instances if i.study_date})
    first, last = (dt.datetime.strptime(d, "%Y%m%d").date() for d in (dates[0], dates[-1]))
    span = max((last - first).days, 1)
    out = []
    for _ in range(count):
        start = first + dt.timedelta(days=rng.randrange(span))
        end = start + dt.timedelta(days=days - 1)
        out.append(f"{start:%Y%m%d}-{end:%Y%m%d}")
    return out


def name_prefix_queries(dataset: Dataset, count: int, seed: int, *, letters: int = 3) -> list[str]:
    """`PatientName` wildcard prefixes (e.g. "Joh*") of the family names written in plain ASCII.

    ASCII only: how a server folds case and accents for other scripts is a matching
    policy, not speed, and the two servers need not agree on it.
    """
    rng = random.Random(seed)
    names = sorted({i.patient_name for i in dataset.instances if i.patient_name.isascii() and i.patient_name})
    prefixes = sorted({n[:letters] for n in names if n[:letters].isalpha()})
    return [prefixes[rng.randrange(len(prefixes))] + "*" for _ in range(count)]
