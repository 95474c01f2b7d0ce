"""Build a blob store from its URL (file:///path, memory://)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from tessel.blobs.models import BlobStore
from tessel.errors import Unsupported


def open_blob_store(url: str) -> BlobStore:
    parsed = urlparse(url)
    if parsed.scheme == "file":
        from tessel.blobs.file import FileBlobStore

        return FileBlobStore(Path(unquote(parsed.path)))
    if parsed.scheme == "memory":
        from tessel.blobs.memory import MemoryBlobStore

        return MemoryBlobStore()
    raise Unsupported(f"blob URL {url!r}: scheme {parsed.scheme!r} is not supported (use file:///path)")
