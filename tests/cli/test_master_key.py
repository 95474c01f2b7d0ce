"""`tessel master-key` with the keys in TESSEL_MASTER_KEY: list and rotate (re-wrap), nothing written."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

import pytest

from tessel.cli.main import main


def material() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def test_rotation_with_keys_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "data")
    old, new = material(), material()
    monkeypatch.delenv("TESSEL_MASTER_KEY_FILE", raising=False)
    monkeypatch.setenv("TESSEL_MASTER_KEY", old)
    assert main(["master-key", "list", "--data-dir", data]) == 0
    listed = capsys.readouterr().out
    assert "master keys from: TESSEL_MASTER_KEY" in listed and "tessel-default (default)" in listed
    assert old not in listed  # the material is never shown
    assert main(["master-key", "create", "archive", "--data-dir", data]) != 0
    assert "change that variable" in capsys.readouterr().err
    monkeypatch.setenv("TESSEL_MASTER_KEY", f"{new},{old}")
    assert main(["master-key", "rotate", "--data-dir", data]) == 0
    rotated = capsys.readouterr().out
    assert "re-wrapped" in rotated and "remove the older material from TESSEL_MASTER_KEY" in rotated
    monkeypatch.setenv("TESSEL_MASTER_KEY", new)
    assert main(["master-key", "list", "--data-dir", data]) == 0  # every data key opens with the new material
    assert not (tmp_path / "data" / "master.key").exists()
