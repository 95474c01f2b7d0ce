"""Data keys: random 256-bit keys kept in the catalog wrapped by a master key.

Each datastore's blobs are encrypted under its own data key (`datastore/<id>`), made
when the datastore is first written to and wrapped by the master key its kmsKeyArn
names (the keyring's default key when it names none). Rotating a master key re-wraps
these rows only: the data they protect is not touched. Unwrapped keys stay in memory
for the life of the process (a data key never changes once made).
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any, Callable

import sqlalchemy as sa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.exc import IntegrityError

from tessel.catalog import Catalog
from tessel.catalog.sql.tables import data_keys
from tessel.crypto.master import Keyring
from tessel.errors import Unavailable

AES_256_GCM = "AES-256-GCM"
NONE = "none"
ACCESS_KEYS = "access-keys"
AUDIT_CHAIN = "audit-chain"


def datastore_key_name(datastore_id: str) -> str:
    return f"datastore/{datastore_id}"


def _aad(name: str) -> bytes:
    return b"tessel-data-key\x00" + name.encode()


class DataKeys:
    """Named data keys on the catalog; `master_for(name)` picks the master key of a new one."""

    def __init__(self, catalog: Catalog, keyring: Keyring, *, encrypt_new: bool = True,
                 master_for: Callable[[str], str | None] | None = None) -> None:
        self.catalog = catalog
        self.keyring = keyring
        self.encrypt_new = encrypt_new
        self.master_for = master_for or (lambda name: None)
        self._cache: dict[str, bytes] = {}
        self._aeads: dict[str, AESGCM | None] = {}
        self._lock = threading.Lock()

    def secret(self, name: str, *, always: bool = False, plain: bool = False) -> bytes:
        """The data key `name` (made on first use); b"" for a datastore stored unencrypted.
        `always`: make it encrypted whatever TESSEL_ENCRYPTION_AT_REST says (keys, audit);
        `plain`: make it `none` (a datastore whose blobs predate encryption at rest)."""
        with self._lock:
            if name in self._cache:
                return self._cache[name]
        key = self._load(name)
        if key is None:
            key = self._create(name, encrypted=not plain and (always or self.encrypt_new))
        with self._lock:
            self._cache[name] = key
        return key

    def aead(self, name: str, *, always: bool = False) -> AESGCM | None:
        """An AES-256-GCM cipher under data key `name`, or None if that key is `none`."""
        cached = self._aeads.get(name, False)
        if cached is not False:
            return cached
        secret = self.secret(name, always=always)
        cipher = AESGCM(secret) if secret else None
        with self._lock:
            self._aeads[name] = cipher
        return cipher

    def _load(self, name: str) -> bytes | None:
        with self.catalog.read() as conn:
            row = conn.execute(sa.select(data_keys).where(data_keys.c.name == name)).first()
        if row is None:
            return None
        if row.algorithm == NONE:
            return b""
        return self.keyring.unwrap(row.master_key, row.master_version, row.wrapped, _aad(name))

    def _create(self, name: str, *, encrypted: bool) -> bytes:
        master = self.master_for(name) or self.keyring.default
        if encrypted:
            key = secrets.token_bytes(32)
            version, wrapped = self.keyring.wrap(master, key, _aad(name))
            values = dict(algorithm=AES_256_GCM, master_key=master, master_version=version, wrapped=wrapped)
        else:
            key = b""
            values = dict(algorithm=NONE, master_key=master, master_version="-", wrapped=b"")
        try:
            with self.catalog.write() as conn:
                conn.execute(sa.insert(data_keys).values(name=name, created_at=time.time(), **values))
        except IntegrityError:
            pass  # another process made it first: theirs is the key
        else:
            return key
        found = self._load(name)
        if found is None:
            raise Unavailable(f"data key {name} could not be created")
        return found

    def forget(self, conn: Any, name: str) -> None:
        """Delete a data key (in the caller's transaction): whatever it encrypted, anywhere (a
        backup, a versioned bucket), can no longer be read."""
        conn.execute(sa.delete(data_keys).where(data_keys.c.name == name))
        with self._lock:
            self._cache.pop(name, None)
            self._aeads.pop(name, None)

    def names(self) -> set[str]:
        with self.catalog.read() as conn:
            return set(conn.execute(sa.select(data_keys.c.name)).scalars())

    # -- master keys --------------------------------------------------------------------------

    def check(self) -> None:
        """Unavailable unless every master key version a data key was wrapped with is in the keyring."""
        with self.catalog.read() as conn:
            used = conn.execute(sa.select(data_keys.c.master_key, data_keys.c.master_version).where(
                data_keys.c.algorithm != NONE).distinct()).all()
        self.keyring.refresh()
        missing = [f"{m} version {v}" for m, v in used if not self.keyring.has(m, v)]
        if missing:
            raise Unavailable(f"the master key file {self.keyring.path} lacks {', '.join(missing)}, which "
                              "wrap existing data keys: configure the keyring these keys were made with "
                              "(TESSEL_MASTER_KEY_FILE)")

    def rewrap(self, master: str) -> int:
        """Re-wrap every data key under an old version of `master` with its current version."""
        current, _ = self.keyring.versions(master)
        count = 0
        with self.catalog.write() as conn:
            rows = conn.execute(sa.select(data_keys).where(
                data_keys.c.master_key == master, data_keys.c.algorithm != NONE,
                data_keys.c.master_version != current)).all()
            for row in rows:
                key = self.keyring.unwrap(row.master_key, row.master_version, row.wrapped, _aad(row.name))
                version, wrapped = self.keyring.wrap(master, key, _aad(row.name))
                conn.execute(sa.update(data_keys).where(data_keys.c.name == row.name).values(
                    master_version=version, wrapped=wrapped, rewrapped_at=time.time()))
                count += 1
        return count

    def usage(self) -> dict[tuple[str, str], int]:
        """(master key, version) -> how many data keys it wraps."""
        with self.catalog.read() as conn:
            rows = conn.execute(sa.select(data_keys.c.master_key, data_keys.c.master_version, sa.func.count())
                                .where(data_keys.c.algorithm != NONE)
                                .group_by(data_keys.c.master_key, data_keys.c.master_version)).all()
        return {(m, v): int(n) for m, v, n in rows}
