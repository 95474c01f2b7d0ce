"""`python -m benchmarks.compare`: the same workloads against tessel and Orthanc, one report.

    python -m benchmarks.compare                 # full run, both servers (what `make bench` does)
    python -m benchmarks.compare --quick         # small data, short phases: a smoke run in < 1 min
    python -m benchmarks.compare --servers tessel --only frames_wsi
    python -m benchmarks.compare --render benchmarks/out/compare-....json --markdown docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import fnmatch
import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.compare import checks, load, report, scenarios, servers, workloads
from benchmarks.compare.stats import Figure

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "benchmarks" / "out"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small workloads and 0.5 s phases (smoke run)")
    p.add_argument("--servers", default="tessel,orthanc", help="comma-separated: tessel, orthanc")
    p.add_argument("--server-cpus", default=_all_cpus(),
                   help="cores both servers are pinned to with taskset (default: all, shared with the client); "
                        "'' to not pin")
    p.add_argument("--duration", type=float, help="seconds per read scenario (default 10, quick 1)")
    p.add_argument("--min-requests", type=int, help="samples per read scenario at least (default 30, quick 5)")
    p.add_argument("--only", action="append", default=[],
                   help="measure only read figures matching this glob (repeatable); ingest always runs")
    p.add_argument("--out", type=Path, default=OUT, help="where the JSON and markdown go (default benchmarks/out)")
    p.add_argument("--data", type=Path, default=OUT / "data", help="workload cache (default benchmarks/out/data)")
    p.add_argument("--markdown", type=Path, help="also write the markdown report here (e.g. docs/benchmarks.md)")
    p.add_argument("--keep", action="store_true", help="keep the servers' data directories after the run")
    p.add_argument("--render", type=Path, help="render the markdown of an existing JSON document and exit")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        text = report.markdown(json.loads(args.render.read_text()))
        _emit(text, args.markdown)
        return 0
    names = [n.strip() for n in args.servers.split(",") if n.strip()]
    unknown = set(names) - {"tessel", "orthanc"}
    if unknown or not names:
        print(f"compare: unknown server(s) {sorted(unknown)}; use tessel and/or orthanc", file=sys.stderr)
        return 2
    missing = [tool for tool, needed in (("Orthanc", "orthanc" in names), ("storescu", True), ("taskset", bool(
        args.server_cpus))) if needed and shutil.which(tool) is None]
    if missing:
        print(f"compare: {', '.join(missing)} not found; run scripts/orthanc-setup.sh (make bench does) or "
              "scripts/test-setup.sh", file=sys.stderr)
        return 2
    settings = scenarios.Settings(
        duration=args.duration if args.duration is not None else (0.5 if args.quick else 10.0),
        min_requests=args.min_requests if args.min_requests is not None else (5 if args.quick else 30),
        plan_length=200 if args.quick else 5000,
        quiet_s=0.2 if args.quick else 1.0,
    )
    sizes = workloads.QUICK if args.quick else workloads.FULL
    started = dt.datetime.now().astimezone()
    load_start = report.load_average()
    work = workloads.prepare(sizes, args.data, log=_log)
    _log(f"workloads: {_describe(work)}")
    stamp = started.strftime("%Y%m%dT%H%M%S")
    run_dir = args.out / f"work-{stamp}"
    only = (lambda name: any(fnmatch.fnmatch(name, f"*{g}*") for g in args.only)) if args.only else (lambda _: True)
    figures: dict[str, list[Figure]] = {}
    described: dict[str, dict[str, Any]] = {}
    problems: dict[str, list[str]] = {}
    other = load.OtherWork()
    try:
        with other:
            for name in names:
                server = _server(name, run_dir / name, args.server_cpus or None)
                _log(f"starting {name}")
                try:
                    target = server.start()
                    described[name] = server.describe()
                    _log(f"{name}: {described[name].get('version')} at {target.dicomweb}, "
                         f"DIMSE port {target.dimse_port}")
                    figures[name] = scenarios.ingest_all(target, work, settings, _log)
                    load.wait_idle(target.pids, quiet_for=settings.quiet_s)
                    problems[name] = checks.run(target, work, settings)
                    for problem in problems[name]:
                        _log(f"CHECK FAILED ({name}): {problem}")
                    figures[name] += scenarios.read_all(target, work, settings, _log, only)
                finally:
                    server.stop()
        doc = report.document(
            command=_command(argv), mode="quick" if args.quick else "full",
            settings={"sizes": _asdict(sizes), "wsi_tiles": sizes.wsi_tiles(), "seeds": workloads.SEEDS,
                      **_asdict(settings), "server_cpus": args.server_cpus or "not pinned"},
            servers=described, figures=figures, checks=problems, load_start=load_start,
            load_end=report.load_average(), other_work=other.summary(), caveats=caveats(args.server_cpus, sizes),
            started=started)
        args.out.mkdir(parents=True, exist_ok=True)
        json_path = args.out / f"compare-{stamp}.json"
        json_path.write_text(json.dumps(doc, indent=2))
        text = report.markdown(doc)
        (args.out / f"compare-{stamp}.md").write_text(text)
        _emit(text, args.markdown)
        _log(f"wrote {json_path}")
    finally:
        if not args.keep and run_dir.exists():
            _log(f"removing the servers' data ({run_dir})")
            shutil.rmtree(run_dir, ignore_errors=True)
    failed = any(f.errors for figs in figures.values() for f in figs) or any(problems.values())
    return 1 if failed else 0


def caveats(server_cpus: str, sizes: workloads.Sizes) -> list[str]:
    cores = os.cpu_count() or 1
    pinned = f"pinned to cores {server_cpus} with taskset" if server_cpus else "not pinned"
    return [
        f"Client and server run on the same {cores}-core machine: both servers are {pinned}, the client is not, "
        "so the client's CPU is taken from the server's. The client CPU column (cores used) shows how much; "
        "close to 1.0 means the Python client, not the server, set the pace.",
        "Same data, same requests in the same order, same client and concurrency for both servers; each read "
        "figure starts with one warm-up request per client that is not counted, after the server's CPU has gone "
        "quiet (background work of an earlier step is not billed to the next).",
        "Loopback network: no network latency or bandwidth limit. Each STOW-RS request carries one instance; "
        "C-STORE is dcmtk's storescu over one association.",
        "Orthanc runs as Debian packages it, with its defaults (StudiesMetadata and SeriesMetadata \"Full\", "
        "StorageAccessOnFind \"Always\", SQLite index) and HTTP authentication on, as tessel's is; its "
        "TcpNoDelay option is on (the default of 1.10). DCMTK disables Nagle's algorithm on DICOM sockets only "
        "when TCP_NODELAY=1 is set, so Orthanc and storescu both run with TCP_NODELAY=1.",
        "tessel stores lossless frames as HTJ2K: an uncompressed answer means decoding each frame, and "
        "transfer-syntax=* returns the HTJ2K stream. Orthanc keeps the CT as received (uncompressed), so both "
        "of its CT frame figures do the same work; its whole-slide tiles are JPEG in both servers.",
        f"Workloads (tessel.demo generators, fixed seeds): {sizes.ct_slices}-slice {sizes.ct_size}x{sizes.ct_size} "
        f"CT series, a {sizes.wsi_levels}-level VL Whole Slide Microscopy pyramid (TILED_FULL, "
        f"{sizes.wsi_tiles():,} JPEG tiles of 256x256), {sizes.radiographs:,} radiographs of "
        f"{sizes.radiograph_size}x{sizes.radiograph_size} for {sizes.patients} patients.",
    ]


def _server(name: str, work: Path, cpus: str | None) -> servers.Server:
    if name == "tessel":
        return servers.Tessel(work, cpus)
    return servers.Orthanc(work, cpus)


def _describe(work: workloads.Workloads) -> str:
    return ", ".join(f"{name} {len(d.instances)} files {d.bytes / 1e6:.0f} MB" for name, d in work.datasets.items())


START, END = "<!-- benchmark results: start -->", "<!-- benchmark results: end -->"


def _emit(text: str, path: Path | None) -> None:
    """Print the report; also write it to `path`, between the result markers if the file has them."""
    print(text)
    if path is not None:
        path.write_text(with_results(path.read_text() if path.exists() else "", text))


def with_results(document: str, results: str) -> str:
    if START in document and END in document:
        head, rest = document.split(START, 1)
        return f"{head}{START}\n{results}{END}{rest.split(END, 1)[1]}"
    return results


def _command(argv: list[str] | None) -> str:
    args = sys.argv[1:] if argv is None else argv
    return shlex.join(["python", "-m", "benchmarks.compare", *args])


def _asdict(value: Any) -> dict[str, Any]:
    return {k: getattr(value, k) for k in value.__dataclass_fields__}


def _all_cpus() -> str:
    cpus = sorted(os.sched_getaffinity(0))
    return f"{cpus[0]}-{cpus[-1]}" if cpus == list(range(cpus[0], cpus[-1] + 1)) else ",".join(map(str, cpus))


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
