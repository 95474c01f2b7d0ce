"""The viewer's HTTP side on a real server: pages under /viewer/, sign-in, datastores, bookmarks."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from tessel.viewer import pages
from tests.dicomweb.conftest import KEY_ID, SECRET
from tests.viewer.conftest import SLIDE, ViewerServer


def bookmarks_url(server: ViewerServer, study: str | None = None) -> str:
    return f"/viewer/api/datastores/{server.datastore_id}/studies/{study or server.slide.study}/bookmarks"


def region_body(server: ViewerServer, **changes: object) -> dict[str, object]:
    body: dict[str, object] = {"seriesInstanceUID": server.slide.series, "level": 1, "name": "Tumour margin",
                               "note": "invasive front, re-cut?",
                               "region": {"x": 100, "y": 50, "width": 400, "height": 300}}
    body.update(changes)
    return body


def test_token_from_access_key_opens_dicomweb(viewer_server: ViewerServer) -> None:
    answer = httpx.post(f"{viewer_server.url}/viewer/api/token", auth=(KEY_ID, SECRET), json={"ttl": "15m"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["expiresIn"] == 900
    token = answer.json()["token"]
    studies = httpx.get(f"{viewer_server.url}/datastore/{viewer_server.datastore_id}/studies",
                        headers={"Authorization": f"Bearer {token}"})
    assert studies.status_code == 200
    assert viewer_server.ct.study in [s["0020000D"]["Value"][0] for s in studies.json()]


def test_token_refuses_a_wrong_secret_and_other_schemes(viewer_server: ViewerServer) -> None:
    wrong = httpx.post(f"{viewer_server.url}/viewer/api/token", auth=(KEY_ID, "nope"))
    assert wrong.status_code == 401
    bearer = httpx.post(f"{viewer_server.url}/viewer/api/token",
                        headers={"Authorization": f"Bearer {viewer_server.token}"})
    assert bearer.status_code == 400 and "Basic" in bearer.json()["message"]
    bad_ttl = httpx.post(f"{viewer_server.url}/viewer/api/token", auth=(KEY_ID, SECRET), json={"ttl": "forever"})
    assert bad_ttl.status_code == 400 and "TTL" in bad_ttl.json()["message"]


def test_datastores_need_credentials(viewer_server: ViewerServer) -> None:
    assert httpx.get(f"{viewer_server.url}/viewer/api/datastores").status_code == 401
    with viewer_server.http() as http:
        listed = http.get("/viewer/api/datastores").json()["datastores"]
    assert {"datastoreId": viewer_server.datastore_id, "datastoreName": "viewer"} in listed


def test_bookmark_round_trip(viewer_server: ViewerServer) -> None:
    with viewer_server.http() as http:
        made = http.post(bookmarks_url(viewer_server), json=region_body(viewer_server))
        assert made.status_code == 201, made.text
        b = made.json()
        assert made.headers["location"].endswith(b["bookmarkId"])
        assert (b["level"], b["region"], b["name"]) == (1, {"x": 100, "y": 50, "width": 400, "height": 300},
                                                         "Tumour margin")
        assert b["createdBy"] == KEY_ID and b["sopInstanceUID"] in viewer_server.slide.sops

        listed = http.get(bookmarks_url(viewer_server)).json()["bookmarks"]
        assert b["bookmarkId"] in [x["bookmarkId"] for x in listed]
        assert http.get(bookmarks_url(viewer_server), params={"series": "1.2.3"}).json()["bookmarks"] == []

        changed = http.put(f"{bookmarks_url(viewer_server)}/{b['bookmarkId']}", json={"note": "margin clear"})
        assert changed.status_code == 200 and changed.json()["note"] == "margin clear"
        assert changed.json()["region"] == b["region"]  # left out: kept
        again = http.get(f"{bookmarks_url(viewer_server)}/{b['bookmarkId']}").json()
        assert again["note"] == "margin clear" and again["updatedAt"] >= b["updatedAt"]

        assert http.delete(f"{bookmarks_url(viewer_server)}/{b['bookmarkId']}").status_code == 204
        gone = http.get(f"{bookmarks_url(viewer_server)}/{b['bookmarkId']}")
        assert gone.status_code == 404 and b["bookmarkId"] in gone.json()["message"]


def test_bookmark_levels_follow_the_pyramid(viewer_server: ViewerServer) -> None:
    """Level 0 is the full-resolution matrix; each further level is the next smaller one."""
    with viewer_server.http() as http:
        full = {"x": 0, "y": 0, "width": SLIDE["base_width"], "height": SLIDE["base_height"]}
        ok = http.post(bookmarks_url(viewer_server), json=region_body(viewer_server, level=0, region=full))
        assert ok.status_code == 201, ok.text
        top = SLIDE["levels"] - 1
        half = {"x": 0, "y": 0, "width": SLIDE["base_width"] >> top, "height": SLIDE["base_height"] >> top}
        assert http.post(bookmarks_url(viewer_server), json=region_body(viewer_server, level=top,
                                                                         region=half)).status_code == 201
        too_big = {**half, "width": half["width"] + 1}
        outside = http.post(bookmarks_url(viewer_server), json=region_body(viewer_server, level=top,
                                                                           region=too_big))
        assert outside.status_code == 400 and "outside level" in outside.json()["message"]


@pytest.mark.parametrize(("changes", "reason"), [
    ({"level": 7}, "level 7 does not exist"),
    ({"level": -1}, "level must be at least 0"),
    ({"level": "1"}, "level must be an integer"),
    ({"name": "  "}, "name must not be empty"),
    ({"name": None}, "name must be a string"),
    ({"note": 5}, "note must be a string"),
    ({"region": {"x": 0, "y": 0, "width": 0, "height": 10}}, "width must be at least 1"),
    ({"region": [0, 0, 1, 1]}, "region must be an object"),
    ({"seriesInstanceUID": ""}, "seriesInstanceUID"),
    ({"colour": "red"}, "unknown field(s): colour"),
])
def test_bad_bookmarks_are_refused_with_the_reason(viewer_server: ViewerServer, changes: dict[str, object],
                                                   reason: str) -> None:
    with viewer_server.http() as http:
        answer = http.post(bookmarks_url(viewer_server), json=region_body(viewer_server, **changes))
    assert answer.status_code == 400, answer.text
    assert reason in answer.json()["message"]


def test_bookmarks_on_what_is_not_a_slide(viewer_server: ViewerServer) -> None:
    with viewer_server.http() as http:
        ct = http.post(bookmarks_url(viewer_server, viewer_server.ct.study),
                       json=region_body(viewer_server, seriesInstanceUID=viewer_server.ct.series))
        assert ct.status_code == 404 and "no whole-slide pyramid" in ct.json()["message"]
        missing = http.get(bookmarks_url(viewer_server, "1.2.3.4"))
        assert missing.status_code == 404 and "1.2.3.4" in missing.json()["message"]
        not_json = http.post(bookmarks_url(viewer_server), content=b"{not json",
                             headers={"Content-Type": "application/json"})
        assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["message"]
        other = http.get(f"/viewer/api/datastores/{'0' * 32}/studies/{viewer_server.slide.study}/bookmarks")
        assert other.status_code == 404
        assert http.get("/viewer/api/nothing-here").status_code == 404


def test_bookmarks_need_credentials(viewer_server: ViewerServer) -> None:
    anonymous = httpx.get(viewer_server.url + bookmarks_url(viewer_server))
    assert anonymous.status_code == 401
    assert "Bearer" in anonymous.headers["www-authenticate"]


def test_viewer_pages_are_served_with_cache_headers(viewer_server: ViewerServer) -> None:
    if not pages.is_built():
        pytest.fail("the viewer is not built: `make test` builds it (make viewer)")
    index = httpx.get(f"{viewer_server.url}/viewer/")
    assert index.status_code == 200 and "text/html" in index.headers["content-type"]
    assert index.headers["cache-control"] == "no-cache"
    asset = next(p for p in (pages.STATIC_DIR / "assets").iterdir() if p.suffix == ".js")
    served = httpx.get(f"{viewer_server.url}/viewer/assets/{asset.name}")
    assert served.status_code == 200 and "immutable" in served.headers["cache-control"]
    assert served.content == asset.read_bytes()


def test_unbuilt_viewer_says_how_to_build_it(tmp_path: Path) -> None:
    app = Starlette(routes=[Mount("/viewer", pages.viewer_app(tmp_path))])

    async def get() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            return await client.get("/viewer/")

    answer = asyncio.run(get())
    assert answer.status_code == 404 and "make viewer" in answer.text
