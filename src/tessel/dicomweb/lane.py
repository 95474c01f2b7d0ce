"""WADO-RS frame requests on a short path, in front of the application's routing and middleware.

Viewers send hundreds of frame requests a second; through the whole stack (FastAPI's own
layers, CORS, request limits, the router trying ~90 routes, a thread pool hop) each cost more
CPU than the frame itself. `FrameLane` wraps the ASGI application (`tessel serve` runs it):
a GET of `/datastore/{id}/studies/{study}/series/{series}/instances/{sop}/frames/{numbers}`
goes straight to the same endpoint the router would call (routes.py: authenticate, the one
authorization decision, one catalog lookup, one blob read), inside the same audit middleware,
so its answer, its access decision and its audit record are those of the routed request.

Requests it leaves to the full stack: anything else, and frame requests that carry an Origin
header (CORS answers them) or a body (request limits apply). With neither, those layers do
nothing to a request, so skipping them changes nothing but the cost.
"""

from __future__ import annotations

import re
from typing import Any, Awaitable, Callable

from starlette.requests import Request

from tessel.audit.http import AuditMiddleware
from tessel.audit.log import AuditLog
from tessel.dicomweb.routes import frames_endpoint

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_FRAMES = re.compile(r"/datastore/(?P<datastore_id>[^/]+)/studies/(?P<study>[^/]+)/series/(?P<series>[^/]+)"
                     r"/instances/(?P<sop>[^/]+)/frames/(?P<frames>[^/]+)")
_FULL_STACK_HEADERS = frozenset({b"origin", b"transfer-encoding"})


class FrameLane:
    def __init__(self, app: ASGIApp, audit: AuditLog, *, inline: bool = False) -> None:
        self.app = app
        self._frames = AuditMiddleware(self._serve, audit)
        self._endpoint = frames_endpoint(inline=inline)

    def __getattr__(self, name: str) -> Any:  # app.state and friends, for whoever holds the lane
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            match = _FRAMES.fullmatch(scope["path"])
            if match is not None and not any(
                    name in _FULL_STACK_HEADERS or (name == b"content-length" and value != b"0")
                    for name, value in scope["headers"]):
                scope["app"] = self.app  # request.app.state, as under the router
                scope["path_params"] = match.groupdict()
                await self._frames(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self._endpoint(Request(scope, receive))
        await response(scope, receive, send)
