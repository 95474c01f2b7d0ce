"""When the audit trail cannot take more records, requests are refused rather than served unrecorded."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from tessel.audit import AuditLog, Event, log as audit_log
from tessel.audit.http import AuditMiddleware
from tessel.config import Settings
from tessel.dimse.server import DimseServer
from tessel.stores import Stores, open_stores
from tests.audit.test_trail import chain_key


def full_log(stores: Stores, monkeypatch: pytest.MonkeyPatch) -> AuditLog:
    """An audit log whose queue is at its limit (its writer not running: the catalog 'unreachable')."""
    monkeypatch.setattr(audit_log, "MAX_QUEUE", 3)
    log = AuditLog(stores.catalog, chain_key(stores))
    for n in range(3):
        log.record(Event("ahi", action="medical-imaging:GetImageFrame", principal="TSLA", status=200,
                         outcome="allowed", image_set_id=f"{n:032x}"))
    assert not log.accepting
    return log


def call(app: Any, path: str) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "headers": [], "client": ("127.0.0.1", 5000)}
    asyncio.run(app(scope, receive, send))
    start, body = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], dict(start["headers"]), body


def test_http_requests_are_refused_while_the_queue_is_full_and_served_once_it_drains(
        stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    served = []

    async def frames(scope: Any, receive: Any, send: Any) -> None:
        served.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    log = full_log(stores, monkeypatch)
    app = AuditMiddleware(frames, log)
    status, headers, body = call(app, "/datastore/x/studies/1/series/2/instances/3/frames/1")
    assert status == 503 and served == []
    assert headers[b"x-amzn-errortype"] == b"ThrottlingException"  # botocore retries it
    assert b"audit trail cannot be written" in body
    assert log.queued == 3 and log.dropped == 1  # the refusal found no room either, and is counted

    log.flush()  # the catalog is back: the queue drains
    assert log.accepting
    status, _, body = call(app, "/datastore/x/studies/1/series/2/instances/3/frames/1")
    assert (status, body) == (200, b"ok") and len(served) == 1
    assert log.queued == 1  # and this request's record is queued


def test_dimse_associations_are_rejected_as_transient_while_the_queue_is_full(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stores = open_stores(Settings(data_dir=tmp_path / "data", dicom_port=0, workers=1))
    log = full_log(stores, monkeypatch)
    server = DimseServer(stores, audit=log)
    server.start()
    try:
        ae = AE(ae_title="WS01")
        ae.add_requested_context(Verification)
        refused = ae.associate("127.0.0.1", server.port, ae_title="TESSEL")
        assert refused.is_rejected
        rejection = refused.acceptor.primitive
        assert (rejection.result, rejection.result_source, rejection.diagnostic) == (0x02, 0x03, 0x01)

        log.flush()
        accepted = ae.associate("127.0.0.1", server.port, ae_title="TESSEL")
        assert accepted.is_established
        assert accepted.send_c_echo().Status == 0x0000
        accepted.release()
    finally:
        server.stop()
        stores.close()
