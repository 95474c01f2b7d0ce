"""Datastores: create, find, list, delete."""

from __future__ import annotations

import secrets
import time

from tessel.catalog.models import Datastore, DatastoreId, DatastoreStatus, LosslessStorageFormat
from tessel.codecs import HTJ2K_LOSSLESS_RPCL, J2K_LOSSLESS
from tessel.crypto import datastore_key_name, key_name_from_arn
from tessel.errors import Conflict, InvalidInput, NotFound
from tessel.stores import Stores


def lossless_syntax(fmt: LosslessStorageFormat) -> str:
    return J2K_LOSSLESS if fmt == LosslessStorageFormat.JPEG_2000_LOSSLESS else HTJ2K_LOSSLESS_RPCL


def create_datastore(stores: Stores, name: str, *, client_token: str | None = None,
                     lossless_storage_format: LosslessStorageFormat = LosslessStorageFormat.HTJ2K,
                     kms_key_arn: str | None = None,
                     lambda_authorizer_arn: str | None = None) -> Datastore:
    if client_token:
        existing = stores.catalog.find_datastore(client_token=client_token)
        if existing is not None:
            if (existing.name, existing.lossless_storage_format, existing.kms_key_arn) != (
                    name, lossless_storage_format, kms_key_arn):
                raise Conflict(f"clientToken {client_token} was already used for a different datastore")
            return existing
    if kms_key_arn is not None and stores.crypto is not None:
        master = key_name_from_arn(kms_key_arn)
        if not stores.crypto.keyring.has(master):
            stores.crypto.keyring.refresh()
        if not stores.crypto.keyring.has(master):
            raise InvalidInput(f"kmsKeyArn {kms_key_arn} names master key {master!r}, which is not in the "
                               f"keyring; create it first: tessel master-key create {master}")
    now = time.time()
    ds = Datastore(id=DatastoreId(secrets.token_hex(16)), name=name, status=DatastoreStatus.ACTIVE,
                   lossless_storage_format=lossless_storage_format, kms_key_arn=kms_key_arn,
                   lambda_authorizer_arn=lambda_authorizer_arn, client_token=client_token,
                   created_at=now, updated_at=now)
    with stores.catalog.write() as conn:
        stores.catalog.insert_datastore(conn, ds)
    if stores.crypto is not None:  # its data key, wrapped by the master key kmsKeyArn names
        stores.crypto.secret(datastore_key_name(ds.id))
    return ds


def get_datastore(stores: Stores, datastore_id: str) -> Datastore:
    ds = stores.catalog.get_datastore(datastore_id)
    if ds is None or ds.status == DatastoreStatus.DELETED:
        raise NotFound(f"datastore {datastore_id} does not exist")
    return ds


def find_or_create(stores: Stores, name: str) -> Datastore:
    """The datastore with this name, or this id, created if neither exists (CLI convenience)."""
    ds = stores.catalog.find_datastore(name=name)
    if ds is None:
        by_id = stores.catalog.get_datastore(name)
        if by_id is not None and by_id.status != DatastoreStatus.DELETED:
            return by_id
        ds = create_datastore(stores, name)
    return ds


def delete_datastore(stores: Stores, datastore_id: str) -> Datastore:
    ds = get_datastore(stores, datastore_id)
    with stores.catalog.write() as conn:
        if stores.catalog.count_live_image_sets(conn, datastore_id):
            raise Conflict(f"datastore {datastore_id} still holds image sets; delete them first")
        stores.catalog.set_datastore_status(conn, datastore_id, DatastoreStatus.DELETED, time.time())
    return ds
