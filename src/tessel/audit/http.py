"""The HTTP edge of the audit trail: one record per request on the AHI API, DICOMweb and the viewer.

A pure ASGI middleware: it puts an `Event` in the request scope (front ends and the decision
point fill in the principal, action, resource and decision), counts the bytes received and
sent, and records the event when the response is done. It reads no body and holds nothing
back, so streaming responses stay streaming. Query strings are never recorded (QIDO
parameters can hold patient names).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from typing import Any, Awaitable, Callable

from tessel.audit import SCOPE_KEY
from tessel.audit.log import AuditLog
from tessel.audit.records import Event, Interface, Outcome

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

UNAUDITED = frozenset({"/healthz", "/metrics"})  # probes, polled every few seconds
_DICOMWEB = frozenset({"studies", "series", "instances"})
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")
_PATH_IDS = (("datastoreId", "datastore_id"), ("datastore_id", "datastore_id"), ("imageSetId", "image_set_id"),
             ("sourceImageSetId", "image_set_id"), ("study", "study_uid"), ("series", "series_uid"),
             ("sop", "sop_uid"))


def interface_of(path: str) -> str:
    parts = path.strip("/").split("/")
    if parts[0] == "viewer":
        return Interface.VIEWER.value
    if len(parts) >= 3 and parts[0] == "datastore" and parts[2] in _DICOMWEB:
        return Interface.DICOMWEB.value
    return Interface.AHI.value


def _claimed(authorization: str) -> tuple[str, str] | None:
    """(claimed principal, scheme) of credentials that did not authenticate: who tried."""
    scheme, _, value = authorization.partition(" ")
    scheme = scheme.lower()
    if scheme.startswith("aws4-"):
        m = _CREDENTIAL.search(value)
        return (m.group(1)[:128], "sigv4") if m else None
    if scheme == "basic":
        try:
            return base64.b64decode(value.strip(), validate=True).decode().partition(":")[0][:128], "basic"
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
    if scheme == "bearer":
        return "bearer-token", "bearer"
    return None


class AuditMiddleware:
    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], audit: AuditLog) -> None:
        self.app = app
        self.audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNAUDITED:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        event = Event(interface_of(scope["path"]), source=str(client[0]) if client else None)
        scope[SCOPE_KEY] = event
        started = time.perf_counter()
        if not self.audit.accepting:  # fail closed: nothing is served that the trail cannot record
            await _refuse_unrecorded(send)
            event.status, event.outcome = 503, Outcome.ERROR.value
            _settle(event, scope, b"")
            self.audit.record(event)
            return
        refusal = bytearray()

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                event.bytes_in += len(message.get("body", b""))
            return message

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                event.status = int(message["status"])
                for name, value in message.get("headers", ()):
                    if name.lower() == b"x-amzn-requestid":
                        event.request_id = value.decode("latin-1")
            elif message["type"] == "http.response.body":
                body = message.get("body", b"")
                event.bytes_out += len(body)
                if event.status in (401, 403) and len(refusal) < 2048:
                    refusal.extend(body[:2048])
            await send(message)

        try:
            await self.app(scope, counting_receive, counting_send)
        except BaseException:
            event.status = event.status if event.status and event.status >= 500 else 500
            raise
        finally:
            event.duration_ms = (time.perf_counter() - started) * 1000
            _settle(event, scope, bytes(refusal))
            self.audit.record(event)


async def _refuse_unrecorded(send: Send) -> None:
    """503, retryable; botocore reads the error code from the header and retries throttling."""
    body = json.dumps({"message": "the audit trail cannot be written at the moment (catalog unreachable?); "
                                  "request refused, retry later"}).encode()
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"x-amzn-errortype", b"ThrottlingException"), (b"retry-after", b"5")]})
    await send({"type": "http.response.body", "body": body})


def _settle(event: Event, scope: Scope, refusal: bytes) -> None:
    """Fill what the front end did not: the action, the resource from the path, the outcome."""
    if not event.action:
        endpoint = scope.get("endpoint")
        name = getattr(endpoint, "__name__", None)
        event.action = f"{event.interface}:{name}" if name else f"{scope.get('method', '')} {scope['path']}"[:64]
    for param, attribute in _PATH_IDS:
        value = (scope.get("path_params") or {}).get(param)
        if value and not getattr(event, attribute):
            setattr(event, attribute, str(value)[:64])
    status = event.status or 500
    if event.principal == "anonymous":
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                claimed = _claimed(value.decode("latin-1"))
                if claimed:
                    event.principal, event.auth = claimed
                    event.principal_name = "(not authenticated)"
                break
    if status >= 500:
        event.outcome = Outcome.ERROR.value
    elif event.outcome is None:
        event.outcome = (Outcome.DENIED if status in (401, 403) else
                         Outcome.INVALID if status >= 400 else Outcome.ALLOWED).value
    if event.outcome == Outcome.DENIED.value and not event.detail and refusal:
        try:
            event.detail = str(json.loads(refusal).get("message", ""))[:500] or None
        except (ValueError, AttributeError):
            event.detail = None
