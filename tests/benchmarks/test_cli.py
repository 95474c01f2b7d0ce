"""The command line refuses what it cannot run before generating or starting anything."""

from __future__ import annotations

import pytest

from benchmarks.compare import cli


def test_unknown_servers_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--servers", "tessel,dcm4chee"]) == 2
    assert "unknown server(s) ['dcm4chee']" in capsys.readouterr().err


def test_a_missing_orthanc_is_named_with_the_script_that_installs_it(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli.shutil, "which", lambda tool: None if tool == "Orthanc" else f"/usr/bin/{tool}")
    assert cli.main(["--servers", "orthanc"]) == 2
    assert "Orthanc not found; run scripts/orthanc-setup.sh" in capsys.readouterr().err
