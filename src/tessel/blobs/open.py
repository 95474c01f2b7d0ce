"""Build a blob store from its URL (file:///path, s3://bucket/prefix, memory://)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from tessel.blobs.models import BlobStore
from tessel.errors import Unsupported

if TYPE_CHECKING:
    from tessel.config import Settings


def open_blob_store(url: str, settings: Settings | None = None, *, fsync: bool = True) -> BlobStore:
    """`settings` supplies the S3 endpoint and credentials for s3:// URLs (else the AWS defaults).

    `fsync=False` (file:// only): puts are atomic but made durable later, by `sync()`.
    """
    parsed = urlparse(url)
    if parsed.scheme == "file":
        from tessel.blobs.file import FileBlobStore

        return FileBlobStore(Path(unquote(parsed.path)), fsync=fsync)
    if parsed.scheme == "s3":
        from tessel.blobs.s3 import open_s3_blob_store

        return open_s3_blob_store(url, settings)
    if parsed.scheme == "memory":
        from tessel.blobs.memory import MemoryBlobStore

        return MemoryBlobStore()
    raise Unsupported(f"blob URL {url!r}: scheme {parsed.scheme!r} is not supported "
                      "(use file:///path or s3://bucket/prefix)")
