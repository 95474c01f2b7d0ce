"""The catalog contract runs on both catalogs: SQLite (embedded) and PostgreSQL (scaleout stack)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tessel.config import Settings
from tests.stack import Stack


@pytest.fixture
def settings(tmp_path: Path, stack: Stack) -> Settings:
    return stack.settings(tmp_path / "data", workers=2)
