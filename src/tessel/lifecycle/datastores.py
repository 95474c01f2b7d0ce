"""Datastores: create (CREATING -> ACTIVE | CREATE_FAILED), find, list, delete (DELETING -> DELETED).

Both transitions do real work between their two states, and a server stopped
half-way finishes it on its next start (`recover`):
- creating writes the datastore's marker object `ds/{id}/datastore.json`, which
  proves the blob store takes its writes before the datastore is declared ACTIVE
  (and names the folder's owner for anyone looking at the storage);
- deleting removes every blob under `ds/{id}/` (frames waiting for deletion,
  leftovers of interrupted imports, the marker) and the datastore's tags, so
  nothing of its data stays on disk.
"""

from __future__ import annotations

import json
import logging
import secrets
import time

import sqlalchemy as sa

from tessel.blobs import keys
from tessel.catalog.models import (Datastore, DatastoreId, DatastoreStatus, JobStatus,
                                   LosslessStorageFormat)
from tessel.catalog.sql.tables import frame_deletions, slide_bookmarks
from tessel.catalog.sql.tables import tags as tag_rows
from tessel.codecs import HTJ2K_LOSSLESS_RPCL, J2K_LOSSLESS
from tessel.config import Settings
from tessel.crypto import datastore_key_name, key_name_from_arn
from tessel.errors import Conflict, InvalidInput, NotFound, TesselError
from tessel.stores import Stores

log = logging.getLogger("tessel.lifecycle")


def lossless_syntax(fmt: LosslessStorageFormat) -> str:
    return J2K_LOSSLESS if fmt == LosslessStorageFormat.JPEG_2000_LOSSLESS else HTJ2K_LOSSLESS_RPCL


def datastore_arn(settings: Settings, datastore_id: str) -> str:
    return f"arn:aws:medical-imaging:{settings.region}:{settings.account_id}:datastore/{datastore_id}"


def image_set_arn(settings: Settings, datastore_id: str, image_set_id: str) -> str:
    return f"{datastore_arn(settings, datastore_id)}/imageset/{image_set_id}"


def marker_key(datastore_id: str) -> str:
    return f"{keys.datastore_prefix(datastore_id)}datastore.json"


def create_datastore(stores: Stores, name: str, *, client_token: str | None = None,
                     lossless_storage_format: LosslessStorageFormat = LosslessStorageFormat.HTJ2K,
                     kms_key_arn: str | None = None, lambda_authorizer_arn: str | None = None,
                     tags: dict[str, str] | None = None) -> Datastore:
    """A new datastore, ACTIVE when this returns (CREATE_FAILED if its storage refused the marker).

    A repeated client_token returns the datastore it made, or is a Conflict if the
    other parameters (tags, when given) differ. `tags` are written with the datastore, under its ARN.
    """
    if client_token:
        existing = stores.catalog.find_datastore(client_token=client_token)
        if existing is not None:
            same = (existing.name, existing.lossless_storage_format, existing.kms_key_arn,
                    existing.lambda_authorizer_arn) == (name, lossless_storage_format, kms_key_arn,
                                                        lambda_authorizer_arn)
            if not same or (tags and stores.catalog.get_tags(datastore_arn(stores.settings, existing.id)) != tags):
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
    ds = Datastore(id=DatastoreId(secrets.token_hex(16)), name=name, status=DatastoreStatus.CREATING,
                   lossless_storage_format=lossless_storage_format, kms_key_arn=kms_key_arn,
                   lambda_authorizer_arn=lambda_authorizer_arn, client_token=client_token,
                   created_at=now, updated_at=now)
    with stores.catalog.write() as conn:
        stores.catalog.insert_datastore(conn, ds)
        if tags:
            stores.catalog.set_tags(conn, datastore_arn(stores.settings, ds.id), tags)
    if stores.crypto is not None:  # its data key, wrapped by the master key kmsKeyArn names
        stores.crypto.secret(datastore_key_name(ds.id))
    return _finish_creating(stores, ds)


def _finish_creating(stores: Stores, ds: Datastore) -> Datastore:
    marker = {"datastoreId": ds.id, "datastoreName": ds.name, "createdAt": ds.created_at,
              "losslessStorageFormat": ds.lossless_storage_format.value}
    try:
        stores.blobs.put(marker_key(ds.id), json.dumps(marker).encode())
        status = DatastoreStatus.ACTIVE
    except (OSError, TesselError) as exc:
        log.error("datastore %s could not be created: %s", ds.id, exc)
        status = DatastoreStatus.CREATE_FAILED
    with stores.catalog.write() as conn:
        stores.catalog.set_datastore_status(conn, ds.id, status, time.time())
    found = stores.catalog.get_datastore(ds.id)
    assert found is not None
    return found


def get_datastore(stores: Stores, datastore_id: str) -> Datastore:
    """The datastore in any state but DELETED (which is NotFound)."""
    ds = stores.catalog.get_datastore(datastore_id)
    if ds is None or ds.status == DatastoreStatus.DELETED:
        raise NotFound(f"datastore {datastore_id} does not exist")
    return ds


def active_datastore(stores: Stores, datastore_id: str) -> Datastore:
    """The datastore, which must be ACTIVE to take writes (Conflict while CREATING or DELETING)."""
    ds = get_datastore(stores, datastore_id)
    if ds.status != DatastoreStatus.ACTIVE:
        raise Conflict(f"datastore {datastore_id} is {ds.status.value}, not ACTIVE")
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
    """DELETING, then every blob, tag and slide bookmark of the datastore removed, then DELETED.

    Refused (Conflict) while it holds image sets or runs import jobs.
    """
    ds = get_datastore(stores, datastore_id)
    with stores.catalog.write() as conn:
        if stores.catalog.count_live_image_sets(conn, datastore_id):
            raise Conflict(f"datastore {datastore_id} still holds image sets; delete them first")
        running = stores.catalog.list_jobs(datastore_id, statuses=[JobStatus.SUBMITTED.value,
                                                                   JobStatus.IN_PROGRESS.value], limit=1)
        if running:
            raise Conflict(f"datastore {datastore_id} is running import job {running[0].id}; "
                           f"delete it when the job has ended")
        stores.catalog.set_datastore_status(conn, datastore_id, DatastoreStatus.DELETING, time.time())
    return _finish_deleting(stores, ds)


def _finish_deleting(stores: Stores, ds: Datastore) -> Datastore:
    arn = datastore_arn(stores.settings, ds.id)
    for key in list(stores.blobs.list(keys.datastore_prefix(ds.id))):
        stores.blobs.delete(key)
    with stores.catalog.write() as conn:
        conn.execute(sa.delete(frame_deletions).where(frame_deletions.c.datastore_id == ds.id))
        conn.execute(sa.delete(slide_bookmarks).where(slide_bookmarks.c.datastore_id == ds.id))  # notes: PHI
        conn.execute(sa.delete(tag_rows).where(sa.or_(  # its image sets' tags too
            tag_rows.c.resource_arn == arn, tag_rows.c.resource_arn.startswith(arn + "/"))))
        stores.catalog.set_datastore_status(conn, ds.id, DatastoreStatus.DELETED, time.time())
        if stores.crypto is not None:  # crypto-shredding: copies of its blobs anywhere become unreadable
            stores.crypto.forget(conn, datastore_key_name(ds.id))
    found = stores.catalog.get_datastore(ds.id)
    assert found is not None
    return found


def recover_datastores(stores: Stores, *, older_than: float) -> None:
    """Finish the transitions a stopped server left half-done (CREATING, DELETING for `older_than` s)."""
    before = time.time() - older_than
    for ds in stores.catalog.list_datastores(status=DatastoreStatus.CREATING.value, limit=10_000):
        if ds.updated_at < before:
            _finish_creating(stores, ds)
    for ds in stores.catalog.list_datastores(status=DatastoreStatus.DELETING.value, limit=10_000):
        if ds.updated_at < before:
            _finish_deleting(stores, ds)
