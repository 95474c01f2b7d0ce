"""Viewer benchmark, in headless Chromium against a real `tessel serve`:

- time to first image of a 300-slice 512x512 CT in the stack viewer (page load -> first slice drawn);
- time to a full screen of slide tiles in the slide viewer: at the opening view, and after a
  jump to full resolution in the middle of the slide.

Each figure is the median of --runs cold runs (a fresh browser profile, so no HTTP cache).
Generated data is kept in benchmarks/out/viewer-data between runs. Needs the viewer built
(`make viewer`) and Chromium (scripts/test-setup.sh).

    .venv/bin/python benchmarks/viewer.py [--runs 3] [--slices 300] [--slide 8192x6144]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pydicom

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tessel.demo import synthetic  # noqa: E402
from tessel.viewer import pages  # noqa: E402
from tests.viewer.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

OUT = ROOT / "benchmarks" / "out"
KEY_ID, SECRET = "TSLVIEWERBENCH000001", "tessel-viewer-bench-secret-0123456789"


def env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TESSEL_", "AWS_"))}
    return {**clean, "TESSEL_ACCESS_KEY_ID": KEY_ID, "TESSEL_SECRET_ACCESS_KEY": SECRET}


def tessel(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "tessel.cli.main", *args], env=env(), check=True,
                          capture_output=True, text=True).stdout


def uids(path: Path) -> tuple[str, str]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)


def prepare(slices: int, slide: tuple[int, int]) -> tuple[Path, dict[str, tuple[str, str]]]:
    """Generate and import the data once (kept for later runs)."""
    folder = OUT / f"viewer-data-{slices}-{slide[0]}x{slide[1]}"
    samples, data_dir = folder / "samples", folder / "data"
    if not (folder / "imported").exists():
        print(f"generating a {slices}-slice CT and a {slide[0]}x{slide[1]} slide in {samples} ...", flush=True)
        synthetic.write_ct_series(samples / "ct", slices=slices, size=512, seed=21)
        synthetic.write_wsi_pyramid(samples / "sm", base_width=slide[0], base_height=slide[1], levels=5, seed=22)
        started = time.monotonic()
        tessel("import", str(samples), "--datastore", "bench", "--data-dir", str(data_dir))
        print(f"imported in {time.monotonic() - started:.0f} s", flush=True)
        (folder / "imported").touch()
    return data_dir, {"ct": uids(next((samples / "ct").glob("*.dcm"))),
                      "sm": uids(next((samples / "sm").glob("*.dcm")))}


def start_server(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    import socket

    def free() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    port = free()
    proc = subprocess.Popen([sys.executable, "-m", "tessel.cli.main", "serve", "--data-dir", str(data_dir),
                             "--port", str(port), "--dicom-port", str(free())], env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("the server did not start")


def cold_run(playwright: Any, url: str, token: str, path: str, until: str, extra: str | None = None) -> Any:
    """Open `path` in a fresh profile; return what the `until` expression yields once truthy."""
    with tempfile.TemporaryDirectory() as profile:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1600, "height": 1000})
        try:
            page = context.new_page()
            page.goto(f"{url}/viewer/#token={token}")  # signs in (stores the token); not timed
            page.wait_for_selector("#study-table tbody tr")
            page.goto(f"{url}{path}")
            result = page.wait_for_function(until, timeout=600_000).json_value()
            if extra:
                result = {"first": result, "then": page.wait_for_function(extra, timeout=600_000).json_value()}
            return result
        finally:
            context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--slide", default="8192x6144", help="base level of the slide pyramid, WxH")
    args = parser.parse_args()
    if not pages.is_built():
        raise SystemExit("the viewer is not built: run `make viewer`")
    slide = tuple(int(v) for v in args.slide.lower().split("x"))
    data_dir, series = prepare(args.slices, slide)  # type: ignore[arg-type]
    proc, url = start_server(data_dir)
    try:
        token = tessel("token", "create", "--data-dir", str(data_dir), "--ttl", "2h").strip()
        datastore = httpx.get(f"{url}/viewer/api/datastores", auth=(KEY_ID, SECRET)).json()["datastores"][0]
        q = {"datastore": datastore["datastoreId"]}
        stack = f"/viewer/stack.html?{urlencode({**q, 'study': series['ct'][0], 'series': series['ct'][1]})}"
        slide_page = f"/viewer/slide.html?{urlencode({**q, 'study': series['sm'][0], 'series': series['sm'][1]})}"
        from playwright.sync_api import sync_playwright

        results: dict[str, list[float]] = {"ct_first_image_ms": [], "slide_full_screen_ms": [],
                                           "slide_zoom_full_screen_ms": []}
        with sync_playwright() as p:
            for _ in range(args.runs):
                ct = cold_run(p, url, token, stack, "() => window.tesselStack?.firstImageMs")
                results["ct_first_image_ms"].append(float(ct))
                sm = cold_run(p, url, token, slide_page, "() => window.tesselSlide?.firstFullScreenMs",
                              extra="() => { const s = window.tesselSlide; if (!s.zoomStarted) {"
                                    " s.zoomStarted = performance.now(); s.firstFullScreenMs = null;"
                                    " const v = s.viewer.viewport; v.zoomTo(v.imageToViewportZoom(1), null, true); }"
                                    " return s.firstFullScreenMs && s.firstFullScreenMs - s.zoomStarted; }")
                results["slide_full_screen_ms"].append(float(sm["first"]))
                results["slide_zoom_full_screen_ms"].append(float(sm["then"]))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    summary = {name: round(statistics.median(values)) for name, values in results.items()}
    report = {"runs": args.runs, "ct_slices": args.slices, "slide": args.slide, "median_ms": summary,
              "all_ms": results, "loadavg": load, "cpus": os.cpu_count(), "machine": platform.machine()}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "viewer.json").write_text(json.dumps(report, indent=2))
    print(f"CT {args.slices} slices 512x512, time to first image: {summary['ct_first_image_ms']} ms (median of "
          f"{args.runs} cold runs)")
    print(f"slide {args.slide}, time to a full screen of tiles: {summary['slide_full_screen_ms']} ms at the "
          f"opening view, {summary['slide_zoom_full_screen_ms']} ms after jumping to full resolution")
    print(f"load average {' '.join(load)} on {os.cpu_count()} cores; details in {OUT / 'viewer.json'}")


if __name__ == "__main__":
    main()
