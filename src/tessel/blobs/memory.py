"""Blob store in memory, for tests and ephemeral use."""

from __future__ import annotations

import threading
from typing import Iterator

from tessel.errors import NotFound


class MemoryBlobStore:
    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def put(self, key: str, data: bytes) -> None:
        with self._lock:
            self._blobs[key] = bytes(data)

    def get(self, key: str) -> bytes:
        try:
            return self._blobs[key]
        except KeyError:
            raise NotFound(f"blob {key} does not exist") from None

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        return self.get(key)[offset:offset + length]

    def exists(self, key: str) -> bool:
        return key in self._blobs

    def delete(self, key: str) -> None:
        with self._lock:
            self._blobs.pop(key, None)

    def list(self, prefix: str) -> Iterator[str]:
        return iter([k for k in list(self._blobs) if k.startswith(prefix)])

    def sync(self) -> None:
        """Nothing to flush: memory is all there is."""
