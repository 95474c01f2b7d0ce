"""Frame requests take a short path in `tessel serve` (lane.py): the answers, headers (CORS too) and
audit records must be those of the routed request. A GET that declares a body is served by the whole
stack (the lane takes none): that is the routed request compared with."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import time
from typing import Any

import httpx
import pydicom
import pytest
from dicomweb_client import DICOMwebClient

from tests.dicomweb.conftest import KEY_ID, SECRET, Server, server_env
from tests.factory import make_series

AS_STORED = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'


@pytest.fixture(scope="module")
def frames_url(client: DICOMwebClient, server: Server, datastore: str,
               tmp_path_factory: pytest.TempPathFactory) -> str:
    (path,) = make_series(tmp_path_factory.mktemp("lane") / "ct", 1, frames=2)
    ds = pydicom.dcmread(path)
    client.store_instances([ds])
    return (f"/datastore/{datastore}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
            f"/instances/{ds.SOPInstanceUID}/frames")


def audit_rows(server: Server, sop: str) -> list[dict[str, Any]]:
    out = subprocess.run([sys.executable, "-m", "tessel.cli.main", "audit", "--json", "--data-dir",
                          str(server.data_dir)], env=server_env(**server.env), capture_output=True, text=True,
                         check=True)
    return [row for row in map(json.loads, out.stdout.splitlines()) if row.get("sop_uid") == sop]


ROUTED = {"content": b"x"}  # a declared body: the whole stack serves the request


def _boundary(response: httpx.Response) -> bytes:
    return response.headers["content-type"].split("boundary=")[1].split(";")[0].strip('"').encode()


def _headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k not in ("date", "content-type")}


@pytest.mark.parametrize("origin", [None, "http://localhost:3000"])
def test_frames_answer_as_the_routed_request_does(server: Server, frames_url: str, origin: str | None) -> None:
    headers = {"Accept": AS_STORED, **({"Origin": origin} if origin else {})}
    with server.http() as http:
        lane = http.get(f"{frames_url}/2", headers=headers)
        routed = http.request("GET", f"{frames_url}/2", headers=headers, **ROUTED)
    assert lane.status_code == routed.status_code == 200
    # Same headers (CORS's Vary: Origin or Access-Control-* included); bodies differ only by their boundary.
    assert _headers(lane) == _headers(routed)
    assert ("access-control-allow-origin" in lane.headers) == (origin is not None)
    assert lane.content.replace(_boundary(lane), _boundary(routed)) == routed.content


def test_every_frame_request_is_audited_as_the_routed_one_is(server: Server, frames_url: str) -> None:
    """The same requests on the lane and, with a declared body, through the whole stack."""
    sop = frames_url.split("/instances/")[1].split("/")[0]
    before = len(audit_rows(server, sop))
    statuses = []
    for body in ({}, ROUTED):
        with server.http() as http:
            statuses += [http.request("GET", f"{frames_url}/1", **body).status_code,  # allowed
                         http.request("GET", f"{frames_url}/9", **body).status_code,  # no such frame
                         http.request("GET", f"{frames_url}/x", **body).status_code]  # not a frame list
        with server.http(auth=(KEY_ID, "wrong-secret")) as stranger:
            statuses.append(stranger.request("GET", f"{frames_url}/1", **body).status_code)
    assert statuses == [200, 404, 400, 401] * 2
    deadline = time.monotonic() + 30  # the audit writer flushes every quarter second
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline and len(rows) < 8:
        time.sleep(0.3)
        rows = audit_rows(server, sop)[before:]
    keys = ("action", "status", "outcome", "principal", "auth", "interface", "datastore_id", "study_uid",
            "series_uid", "sop_uid", "bytes_out")
    lane, routed = ([{k: r.get(k) for k in keys} for r in half] for half in (rows[:4], rows[4:]))
    assert len(rows) == 8 and lane == routed
    assert [r["status"] for r in lane] == [200, 404, 400, 401]
    assert lane[0]["outcome"] == "allowed" and lane[3]["outcome"] == "denied"
    assert {r["action"] for r in lane} == {"medical-imaging:GetDICOMInstanceFrames"}


def test_frame_requests_with_a_body_go_through_the_request_limits(server: Server, frames_url: str) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(f"GET {frames_url}/1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {64 << 20}\r\n"
                     f"Authorization: Basic {base64.b64encode(f'{KEY_ID}:{SECRET}'.encode()).decode()}\r\n\r\n"
                     .encode())
        status_line = sock.recv(4096).split(b"\r\n", 1)[0]
    assert status_line.split()[1] == b"413"  # refused before reading, as every request with a body
