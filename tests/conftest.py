"""Shared fixtures: a fresh data directory and stores per test."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tessel.config import Settings
from tessel.stores import Stores, open_stores

# `s3_server` (moto on a loopback port); `stack`: the embedded default and PostgreSQL + S3 + Dask.
pytest_plugins = ("tests.s3server", "tests.stack")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", workers=2)


@pytest.fixture
def stores(settings: Settings) -> Iterator[Stores]:
    s = open_stores(settings)
    yield s
    s.close()
