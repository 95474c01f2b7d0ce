"""The published OHIF Viewer (@ohif/app, pinned in tests/viewer/ohif/package.json) against tessel.

OHIF's built dist is served from its own origin with an app-config.js pointing at tessel's
DICOMweb (so every call is cross-origin, with CORS preflights carrying Authorization), and
opened in headless Chromium on a CT study and on a slide. `make test` fetches the dist
(scripts/ohif-fetch.sh); the test is skipped only when it is absent because npm could not
reach the registry, and says so.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import threading
from pathlib import Path
from typing import Any, Iterator

import imagecodecs
import numpy as np
import pytest

from tests.viewer.conftest import ViewerServer

PIN = Path(__file__).resolve().parent / "ohif" / "package.json"
DOC = Path(__file__).resolve().parents[2] / "docs" / "viewer.md"


def ohif_dist() -> Path:
    version = json.loads(PIN.read_text())["ohif"]["version"]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "tessel" / "ohif" / version / "dist"


def app_config(dicomweb_root: str) -> str:
    """docs/viewer.md's app-config.js for users' own OHIF, with its placeholder filled in."""
    text = DOC.read_text()
    start = text.index("```js\n", text.index("## OHIF")) + len("```js\n")
    config = text[start:text.index("```", start)]
    assert "https://tessel.example.org/datastore/DATASTORE_ID" in config
    return config.replace("https://tessel.example.org/datastore/DATASTORE_ID", dicomweb_root)


class _OhifFiles(http.server.SimpleHTTPRequestHandler):
    """OHIF's dist with our app-config.js, and index.html for its client-side routes."""

    config = b""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        if path == "/app-config.js":
            self.send_response(200)
            self.send_header("Content-Type", "application/javascript")
            self.send_header("Content-Length", str(len(self.config)))
            self.end_headers()
            self.wfile.write(self.config)
            return
        if not (Path(self.directory) / path.lstrip("/")).is_file():
            self.path = "/index.html"
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def ohif(viewer_server: ViewerServer) -> Iterator[str]:
    dist = ohif_dist()
    if not (dist / "index.html").is_file():
        pytest.skip(f"the OHIF Viewer is not at {dist}: `make test` fetches it with npm (scripts/ohif-fetch.sh); "
                    "the npm registry was not reachable")
    handler = type("Handler", (_OhifFiles,), {
        "config": app_config(f"{viewer_server.url}/datastore/{viewer_server.datastore_id}").encode()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(dist)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def ohif_page(browser: Any, viewer_server: ViewerServer) -> Iterator[tuple[Any, list[str]]]:
    tab = browser.new_page()
    tessel_errors: list[str] = []

    def response(r: Any) -> None:
        if r.url.startswith(viewer_server.url) and r.status >= 400:
            tessel_errors.append(f"{r.status} {r.request.method} {r.url}")

    tab.on("response", response)
    try:
        yield tab, tessel_errors
    finally:
        tab.close()


def canvas_pixels(page: Any, selector: str) -> np.ndarray:
    """What the largest matching canvas shows on screen, as RGB (WebGL canvases included)."""
    canvases = page.locator(selector)
    best = max(range(canvases.count()), key=lambda i: (canvases.nth(i).bounding_box() or {"width": 0})["width"])
    png = canvases.nth(best).screenshot()
    return np.asarray(imagecodecs.png_decode(png))[..., :3]


def test_ohif_opens_a_ct_study(ohif: str, ohif_page: tuple[Any, list[str]], viewer_server: ViewerServer) -> None:
    page, tessel_errors = ohif_page
    page.goto(f"{ohif}/viewer?StudyInstanceUIDs={viewer_server.ct.study}&token={viewer_server.token}")
    page.wait_for_function("() => [...document.querySelectorAll('canvas.cornerstone-canvas')]"
                           ".some(c => c.width > 100 && c.height > 100)", timeout=120_000)
    # The image is drawn once its frames arrived and decoded: wait for a lit canvas.
    page.wait_for_function("""() => [...document.querySelectorAll('canvas.cornerstone-canvas')].some(c => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let lit = 0; for (let i = 0; i < d.length; i += 16) if (d[i] > 40) lit++;
        return lit / (d.length / 16) > 0.1; })""", timeout=120_000)
    pixels = canvas_pixels(page, "canvas.cornerstone-canvas")
    assert (pixels.mean(axis=2) > 40).mean() > 0.1, "OHIF shows the CT slice"
    assert not tessel_errors, tessel_errors


def test_ohif_opens_a_slide(ohif: str, ohif_page: tuple[Any, list[str]], viewer_server: ViewerServer) -> None:
    page, tessel_errors = ohif_page
    page.goto(f"{ohif}/microscopy?StudyInstanceUIDs={viewer_server.slide.study}&token={viewer_server.token}")
    page.wait_for_selector(".ol-viewport canvas", timeout=120_000)
    deadline_ms = 120_000
    waited = 0
    pink = 0.0
    while waited < deadline_ms:  # tiles arrive and draw over a few frames
        pixels = canvas_pixels(page, ".ol-viewport canvas").astype(int)
        pink = float(((pixels[..., 0] - pixels[..., 1]) > 30).mean())
        if pink > 0.05:
            break
        page.wait_for_timeout(500)
        waited += 500
    assert pink > 0.05, f"OHIF's microscopy viewer shows the H&E tissue (pink fraction {pink:.3f})"
    assert not tessel_errors, tessel_errors

