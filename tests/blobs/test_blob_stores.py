"""Contract tests run over every blob store adapter."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tessel.blobs import BlobStore, keys
from tessel.blobs.file import FileBlobStore
from tessel.blobs.memory import MemoryBlobStore
from tessel.errors import InvalidInput, NotFound


@pytest.fixture(params=["file", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "file":
        return FileBlobStore(tmp_path / "blobs")
    return MemoryBlobStore()


def test_put_then_get_returns_same_bytes(store: BlobStore) -> None:
    store.put("a/b/c", b"hello")
    assert store.get("a/b/c") == b"hello"
    assert store.exists("a/b/c")


def test_get_range_reads_a_slice(store: BlobStore) -> None:
    store.put("x", bytes(range(100)))
    assert store.get_range("x", 10, 5) == bytes([10, 11, 12, 13, 14])


def test_missing_blob_is_not_found(store: BlobStore) -> None:
    with pytest.raises(NotFound):
        store.get("nope")
    assert not store.exists("nope")


def test_delete_is_idempotent(store: BlobStore) -> None:
    store.put("k", b"1")
    store.delete("k")
    store.delete("k")
    assert not store.exists("k")


def test_list_by_prefix(store: BlobStore) -> None:
    for k in ("ds/1/a", "ds/1/b", "ds/2/a"):
        store.put(k, b"")
    assert sorted(store.list("ds/1/")) == ["ds/1/a", "ds/1/b"]


def test_file_store_refuses_keys_that_escape_its_root(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    with pytest.raises(InvalidInput):
        store.put("../outside", b"x")
    with pytest.raises(InvalidInput):
        store.put("/etc/passwd", b"x")


def test_file_store_leaves_no_temp_file_when_a_write_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FileBlobStore(tmp_path / "blobs")

    def boom(_fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        store.put("a/b", b"data")
    assert not store.exists("a/b")
    assert [p.name for p in (tmp_path / "blobs" / "a").iterdir()] == []


def test_frame_keys_fan_out_on_the_id() -> None:
    key = keys.frame("d" * 32, "abcdef" + "0" * 26)
    assert key == f"ds/{'d' * 32}/frames/ab/cd/abcdef{'0' * 26}"
