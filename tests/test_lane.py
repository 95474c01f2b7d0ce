"""lane.Lane's dispatch: which requests take the short path and which the whole application."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response

from tessel.lane import Lane, Route


def _serve(lane: Lane, method: str, path: str, headers: list[tuple[bytes, bytes]]) -> tuple[str, dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": headers, "query_string": b""}
    asyncio.run(lane(scope, receive, send))
    return bytes(sent[1]["body"]).decode(), scope


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await Response("app")(scope, receive, send)


async def _endpoint(request: Request) -> Response:
    return Response(f"lane {request.path_params['id']}")


def _tagging(app: Any, *, tag: str) -> Any:  # an edge middleware: runs on the lane too
    async def tagged(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope.setdefault("edge", []).append(tag)
        await app(scope, receive, send)
    return tagged


LANE = Lane(_app, [(_tagging, {"tag": "inner"}), (_tagging, {"tag": "outer"})],
            [Route("POST", re.compile(r"/x/(?P<id>[^/]+)/frame"), _endpoint, max_body=10)])


@pytest.mark.parametrize("method, path, headers, expected", [
    ("POST", "/x/7/frame", [], "lane 7"),
    ("POST", "/x/7/frame", [(b"content-length", b"10"), (b"origin", b"http://a")], "lane 7"),
    ("POST", "/x/7/frame", [(b"content-length", b"11")], "app"),        # larger than the route takes
    ("POST", "/x/7/frame", [(b"content-length", b"-1")], "app"),        # not a length: the limits answer
    ("POST", "/x/7/frame", [(b"transfer-encoding", b"chunked")], "app"),  # length unknown
    ("GET", "/x/7/frame", [], "app"),
    ("POST", "/x/7/frame/more", [], "app"),
    ("POST", "/x/7/8/frame", [], "app"),
])
def test_only_matching_requests_with_small_bodies_take_the_lane(method: str, path: str,
                                                                headers: list[tuple[bytes, bytes]],
                                                                expected: str) -> None:
    body, scope = _serve(LANE, method, path, headers)
    assert body == expected
    if expected != "app":  # inside the application's edge middleware, outermost first
        assert scope["edge"] == ["outer", "inner"] and scope["app"] is _app
