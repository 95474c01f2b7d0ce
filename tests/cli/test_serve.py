"""`tessel serve`: health endpoint, one server per data directory, clear exit reasons."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_cmd(data: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "tessel.cli.main", "serve", "--data-dir", str(data), "--port", str(port),
            "--dicom-port", str(free_port())]


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "server exited early"
        try:
            response = httpx.get(url, timeout=1)
            if response.status_code == 200:
                return response
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("server did not become healthy")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    port = free_port()
    proc = subprocess.Popen(serve_cmd(tmp_path / "data", port), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/healthz", proc)
        yield tmp_path / "data", port
    finally:
        proc.terminate()
        proc.communicate(timeout=30)  # drains and closes the pipes


def test_healthz_answers_once_ready(server: tuple[Path, int]) -> None:
    _, port = server
    response = httpx.get(f"http://127.0.0.1:{port}/healthz")
    assert response.status_code == 200 and response.json()["status"] == "ok"
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics")
    assert "tessel_datastores" in metrics.text


def test_a_second_server_on_the_same_data_dir_says_so_and_exits(server: tuple[Path, int]) -> None:
    data, _ = server
    result = subprocess.run(serve_cmd(data, free_port()), capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "already serving" in result.stderr


def test_a_taken_port_is_a_one_line_reason(server: tuple[Path, int], tmp_path: Path) -> None:
    _, port = server
    result = subprocess.run(serve_cmd(tmp_path / "other", port), capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
