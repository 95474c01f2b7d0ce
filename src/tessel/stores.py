"""The stores every service works on, opened once from Settings."""

from __future__ import annotations

from dataclasses import dataclass

from tessel.blobs import BlobStore, open_blob_store
from tessel.catalog import Catalog
from tessel.config import Settings


@dataclass(slots=True)
class Stores:
    settings: Settings
    catalog: Catalog
    blobs: BlobStore

    def close(self) -> None:
        self.catalog.close()


def open_stores(settings: Settings) -> Stores:
    if settings.catalog_url is None or settings.blob_url is None:  # the embedded stores live there
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return Stores(settings=settings, catalog=Catalog.open(settings.resolved_catalog_url),
                  blobs=open_blob_store(settings.resolved_blob_url, settings))
