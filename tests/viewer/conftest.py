"""A real `tessel serve` (with --access-log) holding a generated CT, a colour US clip and a slide pyramid.

One server per session: the API tests and the browser tests share it. The data is
imported with `tessel import` before the server starts, as a user would load it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import httpx
import pydicom
import pytest

from tessel.demo import synthetic
from tests.dicomweb.conftest import KEY_ID, SECRET, server_env, start_server, stop_server

CT_SLICES = 24
SLIDE = {"base_width": 1536, "base_height": 1024, "levels": 3, "tile": 256}
# uvicorn's access log line: client - "METHOD PATH HTTP/1.1" STATUS
ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3})')


@dataclass(frozen=True)
class Series:
    study: str
    series: str
    sops: tuple[str, ...]


@dataclass
class ViewerServer:
    url: str
    data_dir: Path
    datastore_id: str
    token: str
    ct: Series
    us: Series
    slide: Series
    log_path: Path
    samples: Path

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=60)

    def requests(self) -> list[tuple[str, str, int]]:
        """(method, path, status) of every request the server has logged so far."""
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            m = ACCESS_LINE.search(line)
            if m:
                out.append((m["method"], m["path"], int(m["status"])))
        return out


def _series(paths: list[Path]) -> Series:
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    headers.sort(key=lambda ds: int(ds.get("InstanceNumber") or 0))
    return Series(str(headers[0].StudyInstanceUID), str(headers[0].SeriesInstanceUID),
                  tuple(str(ds.SOPInstanceUID) for ds in headers))


@pytest.fixture(scope="session")
def viewer_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ViewerServer]:
    root = tmp_path_factory.mktemp("viewer")
    samples, data_dir = root / "samples", root / "data"
    ct = synthetic.write_ct_series(samples / "ct", slices=CT_SLICES, size=256, seed=11)
    us = synthetic.write_us_clip(samples / "us", frames=4, rows=120, columns=160, seed=12)
    slide = synthetic.write_wsi_pyramid(samples / "sm", seed=13, **SLIDE)  # type: ignore[arg-type]
    synthetic.write_radiograph_set(samples / "xr", count=8, patients=4, seed=14, size=64)  # for paging
    subprocess.run([sys.executable, "-m", "tessel.cli.main", "import", str(samples), "--datastore", "viewer",
                    "--data-dir", str(data_dir), "--workers", "2"], env=server_env(), check=True,
                   capture_output=True)
    proc, port = start_server(data_dir, "--access-log")
    url = f"http://127.0.0.1:{port}"
    try:
        token = subprocess.run([sys.executable, "-m", "tessel.cli.main", "token", "create", "--data-dir",
                                str(data_dir), "--ttl", "2h"], env=server_env(), capture_output=True, text=True,
                               check=True).stdout.strip()
        listed = httpx.get(f"{url}/viewer/api/datastores", auth=(KEY_ID, SECRET)).json()["datastores"]
        (datastore,) = [d["datastoreId"] for d in listed if d["datastoreName"] == "viewer"]
        yield ViewerServer(url, data_dir, datastore, token, _series(ct), _series(us), _series(slide),
                           root / "serve.out", samples)
    finally:
        err = stop_server(proc, data_dir)
        assert "Traceback" not in err, err


# -- the browser ------------------------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
# As the machine notes say: no GPU, no network beyond loopback, no first-run or background traffic.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--enable-unsafe-swiftshader"]


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Debian's Chromium under Playwright, in a fresh profile (scripts/test-setup.sh installs it)."""
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: `make test` installs it (scripts/test-setup.sh)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 800})
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser: Any, viewer_server: ViewerServer) -> Iterator[Any]:
    """A tab signed in with the session's token; page errors and failed requests fail the test."""
    tab = browser.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    tab.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} {r.failure}"))
    tab.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    tab.goto(f"{viewer_server.url}/viewer/#token={viewer_server.token}")
    tab.wait_for_selector("#study-table tbody tr")
    try:
        yield tab
    finally:
        tab.close()
    assert not problems, problems
