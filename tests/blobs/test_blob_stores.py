"""Contract tests run over every blob store adapter: file, memory and S3 (`store` in conftest.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tessel.blobs import BlobStore, keys
from tessel.blobs.file import FileBlobStore
from tessel.errors import InvalidInput, NotFound


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


def test_get_range_past_the_end_reads_what_is_there(store: BlobStore) -> None:
    store.put("x", b"0123456789")
    assert store.get_range("x", 8, 100) == b"89"
    assert store.get_range("x", 10, 5) == b""
    assert store.get_range("x", 50, 5) == b""
    assert store.get_range("x", 3, 0) == b""


def test_get_range_of_a_missing_blob_is_not_found(store: BlobStore) -> None:
    with pytest.raises(NotFound):
        store.get_range("nope", 0, 10)


def test_binary_and_empty_blobs_round_trip(store: BlobStore) -> None:
    data = bytes(range(256)) * 64
    store.put("bin", data)
    store.put("empty", b"")
    assert store.get("bin") == data
    assert store.get("empty") == b""
    assert store.exists("empty")


def test_list_with_an_empty_prefix_returns_every_key(store: BlobStore) -> None:
    for k in ("a", "b/c", "b/d/e"):
        store.put(k, b"x")
    assert sorted(store.list("")) == ["a", "b/c", "b/d/e"]


def test_list_of_an_unknown_prefix_is_empty(store: BlobStore) -> None:
    store.put("ds/1/a", b"")
    assert list(store.list("ds/9/")) == []


def test_deleted_blob_is_gone_from_get_and_list(store: BlobStore) -> None:
    store.put("ds/1/a", b"1")
    store.put("ds/1/b", b"2")
    store.delete("ds/1/a")
    with pytest.raises(NotFound):
        store.get("ds/1/a")
    assert list(store.list("ds/1/")) == ["ds/1/b"]


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
