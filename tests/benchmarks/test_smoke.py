"""`python -m benchmarks.compare --quick` against a real `tessel serve` (Orthanc is not needed here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.compare.report import LABELS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_run_against_tessel_measures_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TESSEL_", "AWS_"))}
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.compare", "--quick", "--servers", "tessel", "--out", str(out),
         "--data", str(tmp_path / "data"), "--duration", "0.3", "--min-requests", "3"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    [document] = out.glob("compare-*.json")
    doc = json.loads(document.read_text())
    assert doc["mode"] == "quick" and doc["checks"] == {"tessel": []}
    assert doc["servers"]["tessel"]["version"]
    assert doc["machine"]["cores"] >= 1 and len(doc["load_average"]["start"]) == 3
    figures = {f["name"]: f for f in doc["figures"]["tessel"]}
    assert set(figures) == set(LABELS)
    for name, f in figures.items():
        assert f["errors"] == 0, (name, f["notes"])
        assert f["count"] > 0 and f["rate"] > 0, name
        assert f["client_cpu"] is not None and f["server_cpu"] is not None, name
    assert figures["stow_ct_1"]["count"] == 12 and figures["cstore_ct"]["count"] == 12
    assert figures["frames_wsi_16"]["count"] >= 32  # at least two rounds of 16 clients
    assert "| WADO-RS random WSI tile, as stored (16 clients) | tessel |" in run.stdout
    assert list(out.glob("work-*")) == []  # the server's data dir is removed after the run


def test_the_floor_run_measures_both_client_counts() -> None:
    run = subprocess.run([sys.executable, "-m", "benchmarks.floor", "--duration", "0.3", "--size", "2000"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [line for line in run.stdout.splitlines() if "client(s):" in line]
    assert [line.split()[0] for line in lines] == ["1", "16"], run.stdout
    for line in lines:
        rate = float(line.split("frames/s")[0].split()[-1])
        assert rate > 0 and "n=" in line, line
