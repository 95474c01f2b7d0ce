"""Starting and stopping the servers under test, each on free loopback ports, pinned to the same cores.

This is the only server-specific code: everything measured goes through DICOMweb and
DIMSE (`load.Target`). Each server gets an empty data directory of its own under the
run's work folder and is stopped (and its processes reaped) when the run ends.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from benchmarks.compare.load import Target

ORTHANC_PLUGINS = Path("/usr/share/orthanc/plugins")
USER, PASSWORD = "bench", "bench-secret-0123456789"
TESSEL_KEY_ID, TESSEL_SECRET = "TSLBENCHMARK00000001", "tessel-bench-secret-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def pinned(command: list[str], cpus: str | None) -> list[str]:
    """Prefix `taskset -c CPUS` when the run pins servers to cores."""
    return ["taskset", "-c", cpus, *command] if cpus else command


class Server(Protocol):
    name: str

    def start(self) -> Target: ...

    def stop(self) -> None: ...

    def describe(self) -> dict[str, Any]: ...


@dataclass
class _Process:
    """A server subprocess with its logs in the work folder."""

    work: Path
    proc: subprocess.Popen[bytes] | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def spawn(self, command: list[str], env: dict[str, str] | None = None) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        with open(self.work / "server.out", "ab") as out, open(self.work / "server.err", "ab") as err:
            self.proc = subprocess.Popen(command, env=env, stdout=out, stderr=err, start_new_session=True)

    def wait_http(self, url: str, auth: str | None, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        headers = {"Authorization": auth} if auth else {}
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early ({self.proc.returncode}): {self.log_tail()}")
            try:
                if httpx.get(url, headers=headers, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not answer {url} within {timeout:.0f} s: {self.log_tail()}")

    def terminate(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        # Its own session: stop the server and anything it started (worker processes), by group id.
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def log_tail(self, lines: int = 15) -> str:
        text = ""
        for name in ("server.err", "server.out"):
            path = self.work / name
            if path.exists():
                text += "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) + "\n"
        return text.strip()


class Tessel:
    """`tessel serve` on its own data dir, with one datastore that DICOMweb and DIMSE use."""

    name = "tessel"

    def __init__(self, work: Path, cpus: str | None) -> None:
        self.process = _Process(work)
        self.cpus = cpus
        self.version = ""

    def start(self) -> Target:
        data_dir = self.process.work / "data"
        port, dicom_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TESSEL_", "AWS_"))}
        env.update(TESSEL_ACCESS_KEY_ID=TESSEL_KEY_ID, TESSEL_SECRET_ACCESS_KEY=TESSEL_SECRET)
        command = [sys.executable, "-m", "tessel.cli.main", "serve", "--data-dir", str(data_dir),
                   "--port", str(port), "--dicom-port", str(dicom_port)]
        self.process.spawn(pinned(command, self.cpus), env)
        self.process.wait_http(f"http://127.0.0.1:{port}/healthz", None)
        self.version = _tessel_version()
        datastore = self._create_datastore(port)
        self.process.settings = {"command": " ".join(command[1:]), "datastore": datastore}
        assert self.process.proc is not None
        return Target(self.name, f"http://127.0.0.1:{port}/datastore/{datastore}", basic(TESSEL_KEY_ID, TESSEL_SECRET),
                      "127.0.0.1", dicom_port, "TESSEL", (self.process.proc.pid,))

    @staticmethod
    def _create_datastore(port: int) -> str:
        import boto3
        from botocore.config import Config

        client = boto3.client("medical-imaging", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                              aws_access_key_id=TESSEL_KEY_ID, aws_secret_access_key=TESSEL_SECRET,
                              config=Config(inject_host_prefix=False, retries={"max_attempts": 1}))
        return str(client.create_datastore(datastoreName="bench")["datastoreId"])

    def stop(self) -> None:
        self.process.terminate()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "cpus": self.cpus, **self.process.settings}


class Orthanc:
    """Orthanc from Debian's packages, started by hand with a configuration of our own.

    Orthanc's defaults (which the packaged orthanc.json repeats) except: storage and
    index in the run's folder, free loopback ports, HTTP authentication on with one
    user (tessel checks credentials on every request too), and the DICOMweb and GDCM
    plugins loaded. `tcp_nodelay` sets Orthanc's TcpNoDelay option (HTTP; on by default in
    1.10) and DCMTK's TCP_NODELAY variable (DICOM; DCMTK leaves Nagle on without it).
    """

    name = "orthanc"

    def __init__(self, work: Path, cpus: str | None, *, tcp_nodelay: bool = True) -> None:
        self.process = _Process(work)
        self.cpus = cpus
        self.tcp_nodelay = tcp_nodelay
        self.version = ""
        self.dicomweb_version = ""

    def config(self, http_port: int, dicom_port: int) -> dict[str, Any]:
        storage = self.process.work / "storage"
        return {
            "Name": "orthanc-bench",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "HttpPort": http_port,
            "DicomPort": dicom_port,
            "DicomAet": "ORTHANC",
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {USER: PASSWORD},
            "TcpNoDelay": self.tcp_nodelay,
            "Plugins": [str(ORTHANC_PLUGINS / "libOrthancDicomWeb.so"), str(ORTHANC_PLUGINS / "libOrthancGdcm.so")],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "Host": "127.0.0.1"},
        }

    def start(self) -> Target:
        binary = shutil.which("Orthanc")
        if binary is None:
            raise RuntimeError("Orthanc is not installed: run scripts/orthanc-setup.sh (make bench does)")
        http_port, dicom_port = free_port(), free_port()
        config = self.config(http_port, dicom_port)
        path = self.process.work / "orthanc.json"
        self.process.work.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config, indent=2))
        # DCMTK (Orthanc's DICOM layer) turns Nagle's algorithm off on its sockets only when asked.
        env = dict(os.environ, TCP_NODELAY="1" if self.tcp_nodelay else "0")
        self.process.spawn(pinned([binary, str(path)], self.cpus), env)
        auth = basic(USER, PASSWORD)
        self.process.wait_http(f"http://127.0.0.1:{http_port}/system", auth)
        system = httpx.get(f"http://127.0.0.1:{http_port}/system", headers={"Authorization": auth}).json()
        self.version = str(system.get("Version", ""))
        plugin = httpx.get(f"http://127.0.0.1:{http_port}/plugins/dicom-web", headers={"Authorization": auth})
        self.dicomweb_version = str(plugin.json().get("Version", "")) if plugin.status_code == 200 else "missing"
        if self.dicomweb_version == "missing":
            raise RuntimeError("Orthanc started without its DICOMweb plugin: " + self.process.log_tail())
        config.pop("RegisteredUsers")
        self.process.settings = {"config": config}
        assert self.process.proc is not None
        return Target(self.name, f"http://127.0.0.1:{http_port}/dicom-web", auth, "127.0.0.1", dicom_port,
                      "ORTHANC", (self.process.proc.pid,))

    def stop(self) -> None:
        self.process.terminate()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "dicomweb_plugin": self.dicomweb_version,
                "cpus": self.cpus, **self.process.settings}


def _tessel_version() -> str:
    from tessel import __version__

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = ""
    return f"{__version__}+{commit}" if commit else __version__
