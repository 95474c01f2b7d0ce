"""Input limits every HTTP front end shares: request size, body read timeout, JSON nesting depth.

STOW-RS uploads (POST .../studies) are exempt from the request size limit here: they stream to
disk under their own limit (dicomweb.stow.MAX_BODY). Everything else (AHI requests, QIDO,
WADO, the viewer's API) is small by nature.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Awaitable, Callable

from tessel.errors import InvalidInput

MAX_REQUEST_BYTES = 32 * 1024 * 1024  # AHI's largest input (UpdateImageSetMetadata) is ~10 MB of JSON
MAX_JSON_DEPTH = 64
BODY_READ_TIMEOUT = 60.0  # seconds between two chunks of a request body

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class RequestTooLarge(InvalidInput):
    """The request body is larger than the server accepts here."""


def _depth_ok(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return False
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return True


def parse_json(data: bytes | str, what: str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """json.loads with a nesting limit: InvalidInput naming `what` for bad or too deep JSON.

    >>> parse_json(b'{"a": [1, 2]}', "the body")
    {'a': [1, 2]}
    >>> parse_json("[" * 100 + "]" * 100, "the body")
    Traceback (most recent call last):
    ...
    tessel.errors.InvalidInput: the body nests deeper than 64 levels
    """
    try:
        value = json.loads(data)
    except RecursionError:
        raise InvalidInput(f"{what} nests deeper than {max_depth} levels") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc}") from None
    if not _depth_ok(value, max_depth):
        raise InvalidInput(f"{what} nests deeper than {max_depth} levels")
    return value


def _exempt(scope: Scope) -> bool:
    parts = scope["path"].strip("/").split("/")
    return scope.get("method") == "POST" and len(parts) in (3, 4) and parts[0] == "datastore" and parts[2] == "studies"


class RequestLimits:
    """ASGI middleware: 413 for a declared Content-Length over the limit; a body that grows past
    it while streaming, or stalls for BODY_READ_TIMEOUT, fails the read with a clear error."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], *,
                 max_bytes: int = MAX_REQUEST_BYTES, read_timeout: float = BODY_READ_TIMEOUT) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout = read_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = None if _exempt(scope) else self.max_bytes
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and limit is not None:
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0 or declared > limit:
                    await _refuse(send, 413, "RequestEntityTooLarge" if declared >= 0 else "ValidationException",
                                  f"the request body is {declared} bytes; at most {limit} are accepted here"
                                  if declared >= 0 else "Content-Length is not a number")
                    return
        received, done = 0, False

        async def limited_receive() -> Message:
            nonlocal received, done
            if done:  # the body is read: what follows is a wait for disconnect (streaming responses)
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.read_timeout)
            except asyncio.TimeoutError:
                raise InvalidInput(f"the request body stalled for {self.read_timeout:.0f} seconds") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                done = not message.get("more_body", False)
                if limit is not None and received > limit:
                    raise RequestTooLarge(f"the request body exceeds {limit} bytes, the most accepted here")
            else:
                done = True
            return message

        await self.app(scope, limited_receive, send)


async def _refuse(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": code, "message": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"x-amzn-errortype", code.encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
