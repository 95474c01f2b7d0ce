"""The AE registry: peers tessel may open associations to (C-MOVE destinations, commitment reports).

`tessel ae add NAME HOST PORT | list | remove NAME` edits it; the running server reads it on
every C-MOVE, so changes apply at once without a restart.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa

from tessel.catalog import Catalog
from tessel.catalog.sql.tables import dicom_peers
from tessel.errors import InvalidInput, NotFound


@dataclass(frozen=True, slots=True)
class Peer:
    name: str  # the peer's AE title
    host: str
    port: int
    created_at: float
    updated_at: float


def ae_title(value: str) -> str:
    """A valid AE title (PS3.5 AE VR: 1-16 characters, no backslash or control characters)."""
    title = value.strip()
    if not title:
        raise InvalidInput("an AE title must not be empty")
    if len(title) > 16:
        raise InvalidInput(f"AE title {title!r} is longer than 16 characters")
    if "\\" in title or any(ord(c) < 0x20 or ord(c) > 0x7E for c in title):
        raise InvalidInput(f"AE title {title!r} may only hold printable ASCII without a backslash")
    return title


def _port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise InvalidInput(f"port {value} is not between 1 and 65535")
    return value


def _peer(row: sa.Row[tuple[str, str, int, float, float]]) -> Peer:
    return Peer(name=row.name, host=row.host, port=row.port, created_at=row.created_at,
                updated_at=row.updated_at)


def add_peer(catalog: Catalog, name: str, host: str, port: int) -> tuple[Peer, bool]:
    """Register (or re-address) a peer; True when it is new."""
    name, port = ae_title(name), _port(port)
    host = host.strip()
    if not host or any(c.isspace() for c in host):
        raise InvalidInput(f"host {host!r} is not a host name or address")
    now = time.time()
    with catalog.write() as conn:
        existing = conn.execute(sa.select(dicom_peers).where(dicom_peers.c.name == name)).first()
        if existing is None:
            conn.execute(sa.insert(dicom_peers).values(name=name, host=host, port=port, created_at=now,
                                                       updated_at=now))
            return Peer(name, host, port, now, now), True
        conn.execute(sa.update(dicom_peers).where(dicom_peers.c.name == name)
                     .values(host=host, port=port, updated_at=now))
        return Peer(name, host, port, existing.created_at, now), False


def get_peer(catalog: Catalog, name: str) -> Peer | None:
    with catalog.read() as conn:
        row = conn.execute(sa.select(dicom_peers).where(dicom_peers.c.name == name.strip())).first()
    return _peer(row) if row else None


def list_peers(catalog: Catalog) -> list[Peer]:
    with catalog.read() as conn:
        return [_peer(r) for r in conn.execute(sa.select(dicom_peers).order_by(dicom_peers.c.name))]


def remove_peer(catalog: Catalog, name: str) -> Peer:
    with catalog.write() as conn:
        row = conn.execute(sa.select(dicom_peers).where(dicom_peers.c.name == name.strip())).first()
        if row is None:
            raise NotFound(f"no DICOM peer is registered as {name.strip()!r}")
        conn.execute(sa.delete(dicom_peers).where(dicom_peers.c.name == row.name))
    return _peer(row)
