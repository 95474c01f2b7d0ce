"""Input limits (tessel.limits) at the ASGI level: declared sizes, streamed sizes, stalls, JSON depth."""

from __future__ import annotations

import asyncio
import doctest
from typing import Any

import pytest

import tessel.cli.audit
import tessel.limits
from tessel.errors import InvalidInput
from tessel.limits import RequestLimits, RequestTooLarge


def run(middleware: RequestLimits, scope: dict[str, Any], chunks: list[bytes], *, stall: bool = False) -> list[Any]:
    sent: list[Any] = []
    queue = list(chunks)

    async def receive() -> dict[str, Any]:
        if stall and not queue:
            await asyncio.sleep(10)
        body = queue.pop(0) if queue else b""
        return {"type": "http.request", "body": body, "more_body": bool(queue) or stall}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(middleware(scope, receive, send))
    return sent


def http(path: str = "/datastore", method: str = "POST", length: int | None = None) -> dict[str, Any]:
    headers = [(b"content-length", str(length).encode())] if length is not None else []
    return {"type": "http", "method": method, "path": path, "headers": headers}


async def read_all(scope: Any, receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def test_a_declared_oversize_body_is_refused_without_reading_it() -> None:
    sent = run(RequestLimits(read_all, max_bytes=10), http(length=11), [b"x" * 11])
    assert sent[0]["status"] == 413 and b"at most 10" in sent[1]["body"]
    sent = run(RequestLimits(read_all, max_bytes=10), http(length=10), [b"x" * 10])
    assert sent[0]["status"] == 200


def test_a_streamed_body_past_the_limit_fails_the_read() -> None:
    with pytest.raises(RequestTooLarge, match="exceeds 10 bytes"):
        run(RequestLimits(read_all, max_bytes=10), http(), [b"x" * 6, b"x" * 6])


def test_stow_uploads_have_their_own_limit() -> None:
    sent = run(RequestLimits(read_all, max_bytes=10), http("/datastore/d/studies", length=20), [b"x" * 20])
    assert sent[0]["status"] == 200


def test_a_stalled_body_fails_after_the_timeout() -> None:
    with pytest.raises(InvalidInput, match="stalled"):
        run(RequestLimits(read_all, read_timeout=0.2), http(), [b"x"], stall=True)


def test_the_examples_in_the_limits_and_audit_cli_modules_hold() -> None:
    assert doctest.testmod(tessel.limits).failed == 0
    assert doctest.testmod(tessel.cli.audit).failed == 0
