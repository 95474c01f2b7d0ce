"""The blob store port. Blobs are immutable once written: keys never get new content."""

from __future__ import annotations

from typing import Iterator, Protocol


class BlobStore(Protocol):
    def put(self, key: str, data: bytes) -> None:
        """Write `data` under `key` atomically: readers see all of it or nothing."""

    def get(self, key: str) -> bytes:
        """Return the blob's bytes; raises tessel.errors.NotFound if absent."""

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        """Return `length` bytes from `offset`."""

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Remove the blob if present (absent is not an error)."""

    def list(self, prefix: str) -> Iterator[str]:
        """Keys under `prefix`, in no particular order."""

    def sync(self) -> None:
        """Make every blob written to this store so far, by any process, durable: called
        before the catalog names blobs that were written without waiting for the disk
        (a no-op for stores whose every put is durable when it returns)."""
