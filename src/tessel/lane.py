"""Frame requests on a short path, in front of the application's routing.

Viewers send hundreds of frame requests a second; through the whole stack (FastAPI's own
layers, the router trying ~90 routes, a thread pool hop) each cost more CPU than the frame
itself. `Lane` wraps the ASGI application (`tessel serve` runs it) with a small table of
routes, one per frame operation (DICOMweb's WADO-RS frames, AHI's GetImageFrame): a request
that matches one goes straight to the same endpoint function the router would call
(authenticate, the one authorization decision, one catalog lookup, one blob read), inside the
same edge middleware (CORS, audit, request limits: app.edge_middleware, in the same order), so
its answer, its headers, its access decision and its audit record are those of the routed
request.

Requests it leaves to the full stack: anything else, and matching requests with a chunked body
or a body larger than the route takes (`Route.max_body`), which then meet the same limits and
errors as always.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Endpoint = Callable[[Request], Awaitable[Response]]
Middleware = tuple[Callable[..., ASGIApp], dict[str, Any]]  # (class, options), as FastAPI.add_middleware takes


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: re.Pattern[str]  # matched in full against the (decoded) path; its groups are the path params
    endpoint: Endpoint     # the function the router calls for this path
    max_body: int = 0      # the largest declared Content-Length taken here (bytes)


class Lane:
    def __init__(self, app: ASGIApp, edge: Sequence[Middleware], routes: Sequence[Route]) -> None:
        """`edge`: the application's own middleware, innermost first."""
        self.app = app
        self._routes = [(route, _wrapped(_serving(route.endpoint), edge)) for route in routes]

    def __getattr__(self, name: str) -> Any:  # app.state and friends, for whoever holds the lane
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for route, served in self._routes:
                if scope["method"] != route.method:
                    continue
                match = route.path.fullmatch(scope["path"])
                if match is not None and _plain(scope["headers"], route.max_body):
                    scope["app"] = self.app  # request.app.state, as under the router
                    scope["path_params"] = match.groupdict()
                    await served(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def _plain(headers: Sequence[tuple[bytes, bytes]], max_body: int) -> bool:
    """No chunked body, a declared body of at most `max_body` bytes (or none)."""
    for name, value in headers:
        if name == b"transfer-encoding":
            return False
        if name == b"content-length" and not (value.isdigit() and int(value) <= max_body):
            return False
    return True


def _serving(endpoint: Endpoint) -> ASGIApp:
    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        response = await endpoint(Request(scope, receive))
        await response(scope, receive, send)

    return serve


def _wrapped(app: ASGIApp, edge: Sequence[Middleware]) -> ASGIApp:
    for middleware, options in edge:
        app = middleware(app, **options)
    return app
