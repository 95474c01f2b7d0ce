"""The stores every service works on, opened once from Settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tessel.blobs import BlobStore, open_blob_store
from tessel.blobs.encrypted import EncryptedBlobStore
from tessel.catalog import Catalog
from tessel.config import Settings
from tessel.crypto import DataKeys, Keyring, datastore_key_name, key_name_from_arn
from tessel.errors import InvalidInput


@dataclass(slots=True)
class Stores:
    settings: Settings
    catalog: Catalog
    blobs: BlobStore
    crypto: DataKeys | None = None
    writer: Any = None  # the ingest.writer.Writer of this process, made on first use

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.catalog.close()


def keyring(settings: Settings) -> Keyring:
    """The master keys: TESSEL_MASTER_KEY, or else the keyring file (generated on first use)."""
    if settings.master_key:
        if settings.master_key_file is not None:
            raise InvalidInput("set TESSEL_MASTER_KEY or TESSEL_MASTER_KEY_FILE, not both")
        return Keyring.from_environment(settings.master_key)
    return Keyring.open(settings.resolved_master_key_file)


def data_keys(settings: Settings, catalog: Catalog) -> DataKeys:
    """The data keys on `catalog`, wrapped by the keyring file (generated on first use)."""
    prefix = datastore_key_name("")

    def master_for(name: str) -> str | None:
        if not name.startswith(prefix):
            return None
        ds = catalog.get_datastore(name[len(prefix):])
        return key_name_from_arn(ds.kms_key_arn) if ds is not None and ds.kms_key_arn else None

    return DataKeys(catalog, keyring(settings),
                    encrypt_new=settings.encryption_at_rest, master_for=master_for)


def encrypted_blobs(settings: Settings, keys: DataKeys, *, fsync: bool = True) -> BlobStore:
    return EncryptedBlobStore(open_blob_store(settings.resolved_blob_url, settings, fsync=fsync),
                              lambda datastore_id: keys.aead(datastore_key_name(datastore_id)))


def open_stores(settings: Settings) -> Stores:
    if settings.catalog_url is None or settings.blob_url is None:  # the embedded stores live there
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    catalog = Catalog.open(settings.resolved_catalog_url)
    keys = data_keys(settings, catalog)
    keys.check()
    stores = Stores(settings=settings, catalog=catalog, blobs=encrypted_blobs(settings, keys), crypto=keys)
    _key_every_datastore(stores, keys)
    return stores


def _key_every_datastore(stores: Stores, keys: DataKeys) -> None:
    """Give each datastore its data key now (datastores made before encryption at rest existed
    keep their blobs as they are), so none is ever made inside a catalog write transaction."""
    keyed = keys.names()
    for ds in stores.catalog.list_datastores(limit=100_000):
        name = datastore_key_name(ds.id)
        if name not in keyed and ds.status.value != "DELETED":
            inner = stores.blobs.inner if isinstance(stores.blobs, EncryptedBlobStore) else stores.blobs
            legacy = next(iter(inner.list(f"ds/{ds.id}/")), None) is not None
            keys.secret(name, plain=legacy)


def open_worker_blobs(settings: Settings, *, fsync: bool = True) -> BlobStore:
    """The blob store of an import worker process (local or on a Dask worker): its own catalog
    connection reads the data keys, already migrated by the process that started the job."""
    from tessel.catalog.sql.engine import create_engine

    keys = data_keys(settings, Catalog(create_engine(settings.resolved_catalog_url)))
    return encrypted_blobs(settings, keys, fsync=fsync)
