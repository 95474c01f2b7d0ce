"""The load generator against a small keep-alive HTTP server of the test's own."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from benchmarks.compare import load
from benchmarks.compare.load import Request, Target


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    seen: list[tuple[str, str | None]] = []
    connections: set[int] = set()

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        Handler.seen.append((self.path, self.headers.get("Authorization")))
        Handler.connections.add(id(self.connection))
        status = 500 if self.path.endswith("/fail") else 200
        body = b"x" * 1000
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def target() -> Iterator[Target]:
    Handler.seen.clear()
    Handler.connections.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Target("test", f"http://127.0.0.1:{server.server_address[1]}/base", "Basic abc", "127.0.0.1", 0, "X")
    server.shutdown()
    server.server_close()


def test_warm_up_is_sent_but_not_counted(target: Target) -> None:
    plan = [load.get(f"/r{i}", "*/*") for i in range(3)]
    result = load.run_load(target, plan, clients=2, duration=0, min_requests=10, max_requests=10,
                           warmup_per_client=2)
    assert len(result.latencies) == 10 and not result.errors
    assert len(Handler.seen) == 14
    assert result.payload_bytes == 10 * 1000
    # the plan is cycled in order, under the target's path prefix, with its credentials
    assert Counter(p for p, _ in Handler.seen) == {"/base/r0": 5, "/base/r1": 5, "/base/r2": 4}
    assert {a for _, a in Handler.seen} == {"Basic abc"}
    assert len(Handler.connections) == 2  # one keep-alive connection per client


def test_phase_lasts_the_duration_and_reports_cpu(target: Target) -> None:
    result = load.run_load(target, [load.get("/a", "*/*")], clients=4, duration=0.3, min_requests=1)
    assert result.seconds >= 0.3
    assert len(result.latencies) > 4
    assert result.client_cpu_s > 0
    assert result.server_cpu_s == 0  # the target names no server processes


def test_failed_answers_are_errors_not_samples(target: Target) -> None:
    plan = [load.get("/ok", "*/*"), load.get("/fail", "*/*")]
    result = load.run_load(target, plan, clients=1, duration=0, min_requests=6, max_requests=6, warmup_per_client=0)
    assert len(result.latencies) == 3
    assert len(result.errors) == 3 and "HTTP 500" in result.errors[0]


def test_a_server_that_is_not_there_shows_up_as_errors() -> None:
    gone = Target("gone", "http://127.0.0.1:9/x", None, "127.0.0.1", 0, "X")
    result = load.run_load(gone, [Request("GET", "/")], clients=1, duration=0, min_requests=2, max_requests=2,
                           warmup_per_client=0)
    assert not result.latencies and len(result.errors) == 2


def test_empty_plans_and_no_clients_are_refused(target: Target) -> None:
    with pytest.raises(ValueError):
        load.run_load(target, [], clients=1, duration=0, min_requests=1)
    with pytest.raises(ValueError):
        load.run_load(target, [load.get("/a", "*/*")], clients=0, duration=0, min_requests=1)


def test_stow_answers_count_as_stored_only_without_failed_instances() -> None:
    from benchmarks.compare.scenarios import stow_stored

    request = Request("POST", "/studies")
    ok = load.Response(200, {}, b'{"00081198": {"vr": "SQ"}, "00081199": {"vr": "SQ", "Value": [{}]}}')
    warned = load.Response(202, {}, b'{"00081199": {"vr": "SQ", "Value": [{}]}}')
    failed = load.Response(202, {}, b'{"00081198": {"vr": "SQ", "Value": [{"00081197": {"vr": "US"}}]}}')
    assert stow_stored(request, ok) is None and stow_stored(request, warned) is None
    assert "1 instance(s) failed" in str(stow_stored(request, failed))
    assert "HTTP 409" in str(stow_stored(request, load.Response(409, {}, b"{}")))
    assert "not DICOM JSON" in str(stow_stored(request, load.Response(200, {}, b"<html>")))
