"""Blob storage: one port (`BlobStore`), adapters per backend, and `keys` naming every blob."""

from tessel.blobs.models import BlobStore
from tessel.blobs.open import open_blob_store

__all__ = ["BlobStore", "open_blob_store"]
