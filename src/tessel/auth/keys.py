"""Access keys on the catalog's `access_keys` table, and the bootstrap administrator.

SigV4 verification needs each secret itself (the signature is an HMAC keyed
by it), so a secret is stored encrypted (AES-256-GCM under the `access-keys`
data key, bound to its key id), never in plain text, and printed only once,
when it is made. A key without a policy is an administrator.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import string
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Mapping

import sqlalchemy as sa

from tessel.auth.policy import Policy, parse_policy
from tessel.catalog import Catalog
from tessel.catalog.sql.tables import access_keys
from tessel.config import Secret, Settings
from tessel.crypto import ACCESS_KEYS, DataKeys, open_sealed, seal
from tessel.errors import InvalidInput, NotFound

BOOTSTRAP_NAME = "administrator"
_KEY_ALPHABET = string.ascii_uppercase + string.digits
_SEALED = "v1:"  # prefix of an encrypted secret in the table


class KeyStatus(StrEnum):
    ACTIVE = "Active"
    DISABLED = "Disabled"


@dataclass(frozen=True, slots=True)
class AccessKey:
    access_key_id: str
    name: str
    secret: Secret
    status: KeyStatus
    policy: Policy | None
    created_at: float

    @property
    def is_admin(self) -> bool:
        return self.policy is None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as every front end's authentication yields it.

    `access_key_id` identifies the principal in the audit trail: an access key id, or
    `oidc:<subject>` for an OpenID Connect token, or `ae:<title>` for a DIMSE peer.
    """

    access_key_id: str
    name: str
    policy: Policy | None
    method: str  # sigv4 | basic | bearer | oidc | dimse | none

    @property
    def is_admin(self) -> bool:
        return self.policy is None

    @property
    def id(self) -> str:
        return self.access_key_id

    @classmethod
    def of(cls, key: AccessKey, method: str) -> "Principal":
        return cls(key.access_key_id, key.name, key.policy, method)


@dataclass(frozen=True, slots=True)
class Bootstrap:
    """The administrator key in use; `secret` is set only when it was just generated (print it once)."""

    access_key_id: str
    secret: Secret | None
    source: str  # environment | generated | stored


def new_key_id() -> str:
    return "TSL" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(17))


def new_secret() -> Secret:
    return Secret(secrets.token_urlsafe(30))  # 40 characters, like an AWS secret key


class KeyStore:
    """Keys on the catalog. Lookups are cached for `ttl` seconds: every request looks its key up,
    and a database read per request would cost more than the SigV4 check itself. A key changed
    by another process (`tessel keys disable`) takes effect within `ttl`."""

    def __init__(self, catalog: Catalog, data_keys: DataKeys, *, ttl: float = 2.0) -> None:
        self.catalog = catalog
        self.data_keys = data_keys
        self.ttl = ttl
        self._cache: dict[str, tuple[float, AccessKey | None]] = {}
        self._cipher()  # made now: sealing later happens inside write transactions
        self._seal_plain_secrets()

    # -- secrets at rest ----------------------------------------------------------------------------

    def _cipher(self) -> Any:
        cipher = self.data_keys.aead(ACCESS_KEYS, always=True)
        assert cipher is not None
        return cipher

    def _seal(self, access_key_id: str, secret: str) -> str:
        sealed = seal(self._cipher(), secret.encode(), access_key_id.encode())
        return _SEALED + base64.b64encode(sealed).decode()

    def _open(self, access_key_id: str, stored: str) -> Secret:
        try:
            sealed = base64.b64decode(stored[len(_SEALED):], validate=True)
        except (binascii.Error, ValueError):
            sealed = b""
        plain = open_sealed(self._cipher(), sealed, access_key_id.encode(), f"the secret of access key {access_key_id}")
        return Secret(plain.decode())

    def _seal_plain_secrets(self) -> None:
        """Encrypt secrets stored in plain text by an earlier version (once, on upgrade)."""
        with self.catalog.read() as conn:
            plain = conn.execute(sa.select(access_keys.c.access_key_id, access_keys.c.secret).where(
                sa.not_(access_keys.c.secret.startswith(_SEALED)))).all()
        if plain:
            with self.catalog.write() as conn:
                for key_id, secret in plain:
                    conn.execute(sa.update(access_keys).where(access_keys.c.access_key_id == key_id).values(
                        secret=self._seal(key_id, secret)))

    def _key(self, row: Any) -> AccessKey:
        return AccessKey(access_key_id=row.access_key_id, name=row.name, secret=self._open(row.access_key_id, row.secret),
                         status=KeyStatus(row.status), policy=parse_policy(row.policy) if row.policy else None,
                         created_at=row.created_at)

    def get(self, access_key_id: str) -> AccessKey | None:
        now = time.monotonic()
        cached = self._cache.get(access_key_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        with self.catalog.read() as conn:
            row = conn.execute(sa.select(access_keys).where(
                access_keys.c.access_key_id == access_key_id)).first()
        key = self._key(row) if row else None
        if len(self._cache) > 10_000:  # unknown ids are cached too; keep the cache bounded
            self._cache.clear()
        self._cache[access_key_id] = (now + self.ttl, key)
        return key

    def list(self) -> list[AccessKey]:
        with self.catalog.read() as conn:
            rows = conn.execute(sa.select(access_keys).order_by(access_keys.c.created_at))
            return [self._key(r) for r in rows]

    def create(self, name: str, *, policy: Mapping[str, Any] | Policy | None = None,
               access_key_id: str | None = None, secret: str | None = None) -> AccessKey:
        if not name or len(name) > 256:
            raise InvalidInput("a key name is 1 to 256 characters")
        parsed = policy if isinstance(policy, Policy) or policy is None else parse_policy(policy)
        key = AccessKey(access_key_id=access_key_id or new_key_id(), name=name,
                        secret=Secret(secret) if secret else new_secret(), status=KeyStatus.ACTIVE,
                        policy=parsed, created_at=time.time())
        self._cache.pop(key.access_key_id, None)
        with self.catalog.write() as conn:
            if conn.execute(sa.select(access_keys.c.access_key_id).where(
                    access_keys.c.access_key_id == key.access_key_id)).first() is not None:
                raise InvalidInput(f"access key {key.access_key_id} already exists")
            conn.execute(sa.insert(access_keys).values(
                access_key_id=key.access_key_id, name=key.name,
                secret=self._seal(key.access_key_id, key.secret.reveal()), status=key.status.value,
                policy=json.dumps(parsed.document) if parsed is not None else None, created_at=key.created_at))
        return key

    def set_status(self, access_key_id: str, status: KeyStatus) -> None:
        self._update(access_key_id, status=status.value)

    def rotate(self, access_key_id: str) -> AccessKey:
        """A new secret for the key; the old one stops working (within the cache's `ttl`)."""
        self._update(access_key_id, secret=self._seal(access_key_id, new_secret().reveal()))
        key = self.get(access_key_id)
        assert key is not None
        return key

    def set_policy(self, access_key_id: str, policy: Mapping[str, Any] | None) -> None:
        parsed = parse_policy(policy) if policy is not None else None
        self._update(access_key_id, policy=json.dumps(parsed.document) if parsed is not None else None)

    def _update(self, access_key_id: str, **values: Any) -> None:
        self._cache.pop(access_key_id, None)
        with self.catalog.write() as conn:
            result = conn.execute(sa.update(access_keys).where(
                access_keys.c.access_key_id == access_key_id).values(**values))
            if result.rowcount != 1:
                raise NotFound(f"access key {access_key_id} does not exist")


def bootstrap(store: KeyStore, settings: Settings) -> Bootstrap:
    """Make sure an administrator key exists: the one named by TESSEL_ACCESS_KEY_ID /
    TESSEL_SECRET_ACCESS_KEY, else the stored one, else a new one (returned with its secret)."""
    if bool(settings.access_key_id) != bool(settings.secret_access_key):
        raise InvalidInput("set both TESSEL_ACCESS_KEY_ID and TESSEL_SECRET_ACCESS_KEY, or neither")
    if settings.access_key_id and settings.secret_access_key:
        secret = settings.secret_access_key.reveal()
        existing = store.get(settings.access_key_id)
        if existing is None:
            store.create(BOOTSTRAP_NAME, access_key_id=settings.access_key_id, secret=secret)
        elif existing.secret.reveal() != secret or existing.status != KeyStatus.ACTIVE or existing.policy:
            # The environment is the authority on its own key.
            store._cache.pop(settings.access_key_id, None)
            with store.catalog.write() as conn:
                conn.execute(sa.update(access_keys).where(
                    access_keys.c.access_key_id == settings.access_key_id).values(
                    secret=store._seal(settings.access_key_id, secret), status=KeyStatus.ACTIVE.value,
                    policy=None))
        return Bootstrap(settings.access_key_id, None, "environment")
    admins = [k for k in store.list() if k.is_admin and k.status == KeyStatus.ACTIVE]
    if admins:
        return Bootstrap(admins[0].access_key_id, None, "stored")
    key = store.create(BOOTSTRAP_NAME)
    return Bootstrap(key.access_key_id, key.secret, "generated")
