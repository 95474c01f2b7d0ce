"""DIMSE tests: dcmtk's command-line tools and pynetdicom SCUs against a real server on loopback.

The server runs in-process (`DimseServer` on an ephemeral port, over real Stores); dcmtk is
installed by the project's own scripts/test-setup.sh when it is missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tessel.config import Settings
from tessel.dimse import DimseServer
from tessel.lifecycle.datastores import create_datastore
from tessel.stores import Stores, open_stores

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("echoscu", "storescu", "findscu", "getscu", "movescu", "storescp")


@pytest.fixture(scope="session", autouse=True)
def dcmtk() -> None:
    """dcmtk's tools, installed by scripts/test-setup.sh (apt) if they are not on PATH."""
    if all(shutil.which(t) for t in TOOLS):
        return
    result = subprocess.run(["bash", str(ROOT / "scripts" / "test-setup.sh")], capture_output=True, text=True)
    missing = [t for t in TOOLS if not shutil.which(t)]
    if missing:
        pytest.fail(f"the DIMSE tests need dcmtk ({', '.join(missing)} missing) and scripts/test-setup.sh "
                    f"could not install it (exit {result.returncode}): {result.stderr.strip()[-500:]}\n"
                    "install it with: sudo apt-get install -y dcmtk", pytrace=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Dimse:
    server: DimseServer
    stores: Stores
    datastore_id: str
    tmp: Path

    @property
    def port(self) -> int:
        return self.server.port

    def run(self, tool: str, *options: str, files: tuple[Path, ...] = (), aet: str = "TESTSCU",
            check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """A dcmtk tool against the server (verbose, so statuses show in stdout/stderr)."""
        cmd = [tool, "-v", "-aet", aet, "-aec", "TESSEL", *options, "127.0.0.1", str(self.port),
               *map(str, files)]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def allow(self, callers: dict[str, Any]) -> None:
        """Replace dicom-access.json (a new mtime even within one clock tick, so the server sees it)."""
        path = self.stores.settings.data_dir / "dicom-access.json"
        before = path.stat().st_mtime if path.exists() else 0.0
        path.write_text(json.dumps({"callers": callers}))
        if path.stat().st_mtime <= before:
            os.utime(path, (before + 1, before + 1))

    def store(self, *files: Path, args: tuple[str, ...] = (), **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """storescu the files, then wait until the server has committed what it received."""
        result = self.run("storescu", *args, files=files, **kwargs)
        assert self.server.flush(), "received instances were not committed within a minute"
        return result


def start_dimse(tmp: Path, **settings: Any) -> tuple[DimseServer, Stores]:
    settings.setdefault("workers", 1)  # one staging process per test server is plenty for small data
    stores = open_stores(Settings(data_dir=tmp / "data", dicom_port=0, **settings))
    server = DimseServer(stores)
    server.start()
    return server, stores


@contextlib.contextmanager
def running_dimse(tmp: Path, **settings: Any) -> Iterator[Dimse]:
    """A DIMSE server over fresh stores with one datastore ("dimse")."""
    server, stores = start_dimse(tmp, **settings)
    try:
        ds = create_datastore(stores, "dimse")
        yield Dimse(server, stores, ds.id, tmp)
    finally:
        server.stop()
        stores.close()


@pytest.fixture
def dimse(tmp_path: Path) -> Iterator[Dimse]:
    with running_dimse(tmp_path) as running:
        yield running
