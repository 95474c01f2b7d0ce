"""`tessel import`: a progress bar, a summary, every failure with its reason, an exit status."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.factory import make_instance, make_series


def tessel_import(folder: Path, data: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tessel.cli.main", "import", str(folder), "--data-dir", str(data),
                           "--datastore", "mine", "--workers", "2"], capture_output=True, text=True, timeout=600)


def test_import_shows_progress_then_a_summary_with_each_failure_and_its_reason(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    make_series(folder / "series", 3)
    data = make_instance(tmp_path / "src.dcm", study="1.9", series="1.9.1").read_bytes()
    (folder / "cut.dcm").write_bytes(data[:-100])
    (folder / "notes [draft].txt").write_text("not an image\n")

    first = tessel_import(folder, tmp_path / "data")
    assert first.returncode == 3, first.stderr  # some files failed
    err = first.stderr
    assert "importing" in err and "5/5" in err  # the bar: files, bytes, rate
    assert re.search(r"[\d.]+ kB/[\d.]+ kB \([\d.,]+ (B|kB)/s\)", err), err
    assert "3 of 5 files imported into 1 image set, 2 failed" in err
    lines = err.splitlines()
    cut = next(line for line in lines if "failed" in line and "cut.dcm" in line)
    assert "ends early" in cut
    notes = next(line for line in lines if "failed" in line and "notes [draft].txt" in line)
    assert "plain text" in notes
    manifest = next(line for line in lines if line.startswith("manifest: "))[len("manifest: file://"):]
    summary = json.loads(Path(manifest).read_text())["jobSummary"]
    assert (summary["numberOfImportedFiles"], summary["numberOfFilesWithCustomerError"]) == (3, 2)

    (folder / "cut.dcm").unlink()
    (folder / "notes [draft].txt").unlink()
    again = tessel_import(folder, tmp_path / "data")
    assert again.returncode == 0, again.stderr
    assert "3 of 3 files imported into 1 image set, 0 failed" in again.stderr
