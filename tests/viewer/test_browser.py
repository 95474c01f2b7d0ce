"""The viewer in headless Chromium (Playwright) against a real `tessel serve`.

Pixels are read back from the viewport's canvas (getImageData), not screenshots:
what a radiologist sees is compared between slices, windows and transfer syntaxes.
"""

from __future__ import annotations

import time
from typing import Any, Iterator
from urllib.parse import urlencode

import pytest

from tests.viewer.conftest import CT_SLICES, SLIDE, ViewerServer

# Reads the stack viewport's canvas: a hash of its RGBA bytes (FNV-1a) and a few statistics.
CANVAS_JS = """() => {
  const canvas = window.tesselStack.viewport.getCanvas();
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let hash = 0x811c9dc5, sum = 0, nonBlack = 0, colourful = 0;
  for (let i = 0; i < data.length; i += 4) {
    const r = data[i], g = data[i + 1], b = data[i + 2];
    hash = Math.imul(hash ^ r, 16777619); hash = Math.imul(hash ^ g, 16777619); hash = Math.imul(hash ^ b, 16777619);
    sum += r + g + b;
    if (r + g + b > 30) nonBlack += 1;
    if (Math.abs(r - g) > 24 || Math.abs(g - b) > 24) colourful += 1;
  }
  const n = data.length / 4;
  return {width: canvas.width, height: canvas.height, hash: (hash >>> 0).toString(16), mean: sum / (n * 3),
          nonBlack: nonBlack / n, colourful: colourful / n};
}"""

# The decoded pixel values of the image on screen (what the codec produced, before display).
PIXELS_JS = """() => {
  const image = window.tesselStack.viewport.getCornerstoneImage();
  return {syntax: image.transferSyntaxUID, photometric: image.photometricInterpretation,
          pixels: Array.from(image.getPixelData())};
}"""


@pytest.fixture(scope="module", autouse=True)
def request_log_is_clean(viewer_server: ViewerServer) -> Iterator[None]:
    """Everything the viewer asked of the server while these tests ran was answered without error."""
    before = len(viewer_server.requests())
    yield
    made = viewer_server.requests()[before:]
    assert any("/frames/" in path for _, path, _ in made), "the log holds the browser's frame requests"
    failed = [entry for entry in made if entry[2] >= 400]
    assert not failed, failed


def digest(canvas: dict[str, Any]) -> str:
    return str(canvas["hash"])


def drawn(page: Any, unlike: dict[str, Any] | None = None) -> dict[str, Any]:
    """The canvas once it shows an image (other than `unlike`) and has stopped changing."""
    deadline = time.monotonic() + 30
    last: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        now = page.evaluate(CANVAS_JS)
        fresh = now["nonBlack"] > 0 and (unlike is None or now["hash"] != unlike["hash"])
        if fresh and last is not None and now["hash"] == last["hash"]:
            return now
        last = now if fresh else None
        page.wait_for_timeout(150)
    raise AssertionError(f"the canvas did not settle on a new image: {last}")


def open_stack(page: Any, server: ViewerServer, series: Any, **extra: str) -> None:
    query = urlencode({"datastore": server.datastore_id, "study": series.study, "series": series.series, **extra})
    page.goto(f"{server.url}/viewer/stack.html?{query}")
    page.wait_for_function("() => window.tesselStack && window.tesselStack.ready", timeout=60_000)
    settle(page)


def settle(page: Any) -> None:
    """Wait for the viewport to finish drawing (two animation frames after the last change)."""
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def current_index(page: Any) -> int:
    return int(page.evaluate("() => window.tesselStack.viewport.getCurrentImageIdIndex()"))


def wait_index(page: Any, index: int) -> None:
    """Wait until the image at `index` is the one drawn (the viewer notes each rendered image)."""
    page.wait_for_function(f"() => window.tesselStack.viewport.getCurrentImageIdIndex() === {index} && "
                           f"window.tesselStack.renderedImageId === window.tesselStack.imageIds[{index}]",
                           timeout=30_000)
    settle(page)


def test_stack_viewer_renders_scrolls_and_windows(page: Any, viewer_server: ViewerServer) -> None:
    open_stack(page, viewer_server, viewer_server.ct)
    assert page.evaluate("() => window.tesselStack.imageIds.length") == CT_SLICES
    first = drawn(page)
    assert first["width"] > 300 and first["height"] > 300
    assert first["nonBlack"] > 0.2, "the CT slice should fill a good part of the viewport"
    assert page.evaluate("() => window.tesselStack.lastTransferSyntax") == "1.2.840.10008.1.2.4.202"

    # The mouse wheel over the image scrolls through the stack.
    box = page.locator("#viewport").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    for _ in range(5):
        page.mouse.wheel(0, 120)
    wait_index(page, 5)
    scrolled = drawn(page, unlike=first)
    assert digest(scrolled) != digest(first), "another slice must look different"
    assert "Im 6 / 24" in page.inner_text("#overlay-bl")

    # A window preset changes the displayed pixels, and the overlay says so.
    page.click("#presets button[data-preset='lung']")
    lung = drawn(page, unlike=scrolled)
    assert digest(lung) != digest(scrolled)
    assert "W 1500 L -600" in page.inner_text("#overlay-bl")
    # Dragging with the window/level tool changes them again.
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + 120, box["y"] + box["height"] / 2 + 60, steps=6)
    page.mouse.up()
    dragged = drawn(page, unlike=lung)
    assert digest(dragged) != digest(lung)
    assert "W 1500 L -600" not in page.inner_text("#overlay-bl")

    # The keyboard moves through the stack too.
    page.keyboard.press("End")
    wait_index(page, CT_SLICES - 1)
    page.keyboard.press("ArrowUp")
    wait_index(page, CT_SLICES - 2)


def stack_snapshots(page: Any, server: ViewerServer, series: Any, indexes: list[int], **extra: str) -> list[Any]:
    """(canvas digest, decoded pixels, transfer syntax, photometric) at each index, in one mode."""
    open_stack(page, server, series, **extra)
    out = []
    for index in indexes:
        page.evaluate(f"() => window.tesselStack.viewport.setImageIdIndex({index})")
        wait_index(page, index)
        canvas = drawn(page, unlike=out[-1][3] if out else None)
        pixels = page.evaluate(PIXELS_JS)
        out.append((digest(canvas), pixels["pixels"], pixels["syntax"], canvas))
    return out


def test_htj2k_and_uncompressed_frames_render_identically(page: Any, viewer_server: ViewerServer) -> None:
    indexes = [0, CT_SLICES // 2, CT_SLICES - 1]
    stored = stack_snapshots(page, viewer_server, viewer_server.ct, indexes)
    native = stack_snapshots(page, viewer_server, viewer_server.ct, indexes, transfer="native")
    for (d1, p1, s1, _), (d2, p2, s2, _) in zip(stored, native, strict=True):
        assert (s1, s2) == ("1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.1")
        assert p1 == p2, "HTJ2K decoded in the browser must give the stored pixel values exactly"
        assert d1 == d2, "and the same picture on screen"
    assert len({d for d, *_ in stored}) == len(indexes)


def test_colour_htj2k_decodes_to_the_source_colours(page: Any, viewer_server: ViewerServer) -> None:
    """The US clip is stored as HTJ2K with RCT (YBR_RCT): the browser must show the source RGB."""
    import pydicom

    source = pydicom.dcmread(next((viewer_server.samples / "us").glob("*.dcm"))).pixel_array  # frames, r, c, 3
    stored = stack_snapshots(page, viewer_server, viewer_server.us, [0, 1])
    native = stack_snapshots(page, viewer_server, viewer_server.us, [0, 1], transfer="native")
    for frame, (d1, p1, s1, canvas), (d2, p2, _, _) in zip([0, 1], stored, native, strict=True):
        assert s1 == "1.2.840.10008.1.2.4.202"
        assert p1 == source[frame].reshape(-1).tolist(), "decoded colour differs from the source RGB"
        assert p1 == p2 and d1 == d2
        assert canvas["colourful"] > 0.005, "a colour Doppler frame shows colour"


def open_slide(page: Any, server: ViewerServer, **extra: str) -> None:
    query = urlencode({"datastore": server.datastore_id, "study": server.slide.study, "series": server.slide.series,
                       **extra})
    page.goto(f"{server.url}/viewer/slide.html?{query}")
    page.wait_for_function("() => window.tesselSlide && window.tesselSlide.ready", timeout=60_000)
    wait_tiles(page)


def wait_tiles(page: Any) -> None:
    page.wait_for_function("() => { const v = window.tesselSlide.viewer; const item = v.world.getItemAt(0);"
                           " return item && item.getFullyLoaded() && !v.viewport.isAnimating?.() "
                           "&& window.tesselSlide.tilesLoaded > 0; }", timeout=60_000)
    settle(page)


SLIDE_CANVAS_JS = """() => {
  const canvas = window.tesselSlide.viewer.drawer.canvas;
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let pink = 0;
  for (let i = 0; i < data.length; i += 4) if (data[i] > data[i + 1] + 30) pink += 1;
  return {pink: pink / (data.length / 4), digest: Array.from(data.slice(0, 4096)).join(',').length};
}"""


def test_slide_viewer_loads_tiles_and_zooms_across_levels(page: Any, viewer_server: ViewerServer) -> None:
    page.set_viewport_size({"width": 640, "height": 480})  # the whole slide fits at the smallest level
    open_slide(page, viewer_server)
    state = page.evaluate("() => ({failed: window.tesselSlide.tilesFailed, levels: window.tesselSlide.levelsLoaded,"
                          " n: window.tesselSlide.levels.length, region: window.tesselSlide.currentRegion})")
    assert state["n"] == SLIDE["levels"] and state["failed"] == 0
    assert state["region"]["level"] == SLIDE["levels"] - 1, "the opening view needs only the smallest level"
    assert "0" not in state["levels"], "no full-resolution tile is fetched before it is needed"
    assert page.evaluate(SLIDE_CANVAS_JS)["pink"] > 0.05, "the tissue (eosin pink) is on screen"
    before = dict(state["levels"])

    # Zoom in on the middle with the mouse wheel, step by step, down to full resolution.
    box = page.locator("#slide").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    for _ in range(10):
        page.mouse.wheel(0, -240)
        page.wait_for_timeout(150)
    wait_tiles(page)
    after = page.evaluate("() => ({failed: window.tesselSlide.tilesFailed, levels: window.tesselSlide.levelsLoaded,"
                          " region: window.tesselSlide.currentRegion})")
    assert after["failed"] == 0
    assert after["region"]["level"] == 0, "zoomed in, the full-resolution level is on screen"
    assert after["levels"].get("0", 0) > before.get("0", 0), "full-resolution tiles were fetched"
    assert len(after["levels"]) == SLIDE["levels"], "every level was used on the way"
    assert page.evaluate(SLIDE_CANVAS_JS)["pink"] > 0.05


def test_bookmark_saved_then_reopened_restores_the_view(page: Any, viewer_server: ViewerServer) -> None:
    open_slide(page, viewer_server)
    # Frame an off-centre region, as a pathologist would before saving it.
    page.evaluate("() => window.tesselSlide.showImageRect(200, 150, 700, 500)")
    wait_tiles(page)
    shown = page.evaluate("() => window.tesselSlide.currentRegion")
    page.fill("#save input[name=name]", "Focus of interest")
    page.fill("#save textarea[name=note]", "atypical nuclei, check deeper levels")
    page.click("#save button[type=submit]")
    page.wait_for_function("() => document.querySelector('#save-status').dataset.bookmark")
    bookmark_id = page.get_attribute("#save-status", "data-bookmark")
    with viewer_server.http() as http:
        saved = http.get(f"/viewer/api/datastores/{viewer_server.datastore_id}/studies/{viewer_server.slide.study}"
                         f"/bookmarks/{bookmark_id}").json()
    assert (saved["level"], saved["region"]) == (shown["level"], shown["region"])
    assert saved["note"] == "atypical nuclei, check deeper levels"

    # The study list shows it under the slide's study; following it reopens that exact view.
    page.goto(f"{viewer_server.url}/viewer/?datastore={viewer_server.datastore_id}")
    page.click(f"tr.study[data-study='{viewer_server.slide.study}']")
    link = page.locator(f".bookmarks a.bookmark[href*='{bookmark_id}']")
    assert link.inner_text() == "Focus of interest"
    link.click()
    page.wait_for_function("() => window.tesselSlide && window.tesselSlide.ready", timeout=60_000)
    wait_tiles(page)
    reopened = page.evaluate("() => window.tesselSlide.currentRegion")
    assert reopened["level"] == saved["level"]
    for key in ("x", "y", "width", "height"):
        assert abs(reopened["region"][key] - saved["region"][key]) <= 1, (reopened, saved)
    assert page.evaluate("() => window.tesselSlide.openedBookmark") == bookmark_id


def test_study_browser_searches_pages_and_shows_thumbnails(page: Any, viewer_server: ViewerServer) -> None:
    with viewer_server.http() as http:
        total = len(http.get(f"/datastore/{viewer_server.datastore_id}/studies").json())
    assert total > 5
    page.select_option("#search select[name=limit]", "5")
    page.click("#search button[type=submit]")
    page.wait_for_function("() => document.querySelectorAll('#study-table tbody tr.study').length === 5")
    first_page = page.eval_on_selector_all("tr.study", "rows => rows.map(r => r.dataset.study)")
    assert page.is_enabled("#next") and not page.is_enabled("#prev")
    page.click("#next")
    page.wait_for_function(f"() => document.querySelectorAll('tr.study').length === {min(5, total - 5)}")
    second_page = page.eval_on_selector_all("tr.study", "rows => rows.map(r => r.dataset.study)")
    assert not set(first_page) & set(second_page)

    # Patient name, lower case, no wildcard: a prefix match on the slide's patient.
    page.fill("#search input[name=name]", "phantom^sl")
    page.click("#search button[type=submit]")
    page.wait_for_function("() => document.querySelectorAll('tr.study').length === 1")
    assert page.get_attribute("tr.study", "data-study") == viewer_server.slide.study
    page.fill("#search input[name=name]", "")
    page.select_option("#search select[name=modality]", "CT")
    page.click("#search button[type=submit]")
    page.wait_for_function(f"() => document.querySelectorAll('tr.study').length === 1 && "
                           f"document.querySelector('tr.study').dataset.study === '{viewer_server.ct.study}'")

    # Opening the study lists its series with a rendered thumbnail, linked to the stack viewer.
    page.click("tr.study")
    page.wait_for_selector(".series img.loaded")
    size = page.evaluate("() => { const i = document.querySelector('.series img.loaded');"
                         " return [i.naturalWidth, i.naturalHeight]; }")
    assert min(size) > 16
    href = page.get_attribute(".series", "href")
    assert href.startswith("/viewer/stack.html?") and viewer_server.ct.series in href
