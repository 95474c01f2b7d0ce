"""Pathology bookmarks: a named region on one level of a slide, kept with the study.

A bookmark names a study's VL Whole Slide Microscopy series, a pyramid level
(0 = full resolution, then each smaller level in turn, as the series' VOLUME
instances order by size) and a rectangle in that level's total pixel matrix,
plus a name and a free-text note. The region is checked against the level's
matrix when it is written, so a bookmark always reopens onto pixels that exist.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from tessel.catalog.sql.tables import slide_bookmarks
from tessel.errors import InvalidInput, NotFound
from tessel.retrieve import instances
from tessel.stores import Stores

MAX_NAME = 256
MAX_NOTE = 16_384
WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"
_BODY_FIELDS = frozenset({"seriesInstanceUID", "level", "region", "name", "note"})


@dataclass(frozen=True, slots=True)
class Level:
    """One pyramid level of a slide series: its instance and total pixel matrix."""

    index: int
    sop_instance_uid: str
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class Bookmark:
    id: str
    datastore_id: str
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    level: int
    x: int
    y: int
    width: int
    height: int
    name: str
    note: str
    created_by: str
    created_at: float
    updated_at: float

    def to_json(self) -> dict[str, Any]:
        """The API shape (docs/viewer.md)."""
        return {"bookmarkId": self.id, "datastoreId": self.datastore_id,
                "studyInstanceUID": self.study_instance_uid, "seriesInstanceUID": self.series_instance_uid,
                "sopInstanceUID": self.sop_instance_uid, "level": self.level,
                "region": {"x": self.x, "y": self.y, "width": self.width, "height": self.height},
                "name": self.name, "note": self.note, "createdBy": self.created_by,
                "createdAt": self.created_at, "updatedAt": self.updated_at}


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value


def pyramid_levels(stores: Stores, datastore_id: str, study_uid: str, series_uid: str) -> list[Level]:
    """The series' pyramid, largest level first; NotFound if it is not a tiled slide series."""
    sizes: dict[tuple[int, int], str] = {}
    for ref in instances.locate(stores.catalog, datastore_id, study_uid, series_uid):
        if ref.sop_class_uid != WSI_SOP_CLASS:
            continue
        attrs, _ = instances.instance_attributes(stores, datastore_id, ref)
        image_type = attrs.get("ImageType") or []
        if isinstance(image_type, list) and len(image_type) > 2 and image_type[2] not in ("VOLUME", ""):
            continue  # LABEL, OVERVIEW and THUMBNAIL images are not pyramid levels
        width = _first(attrs.get("TotalPixelMatrixColumns")) or _first(attrs.get("Columns"))
        height = _first(attrs.get("TotalPixelMatrixRows")) or _first(attrs.get("Rows"))
        if width and height:
            sizes.setdefault((int(width), int(height)), ref.sop_instance_uid)  # one instance per size
    if not sizes:
        raise NotFound(f"series {series_uid} has no whole-slide pyramid levels")
    ordered = sorted(sizes.items(), key=lambda item: -item[0][0] * item[0][1])
    return [Level(k, sop, w, h) for k, ((w, h), sop) in enumerate(ordered)]


def _int(body: dict[str, Any], name: str, minimum: int) -> int:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{name} must be an integer (got {value!r})")
    if value < minimum:
        raise InvalidInput(f"{name} must be at least {minimum} (got {value})")
    return value


def _text(body: dict[str, Any], name: str, limit: int, *, required: bool) -> str:
    value = body.get(name, None if required else "")
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string" + (" and is required" if required else ""))
    if name == "name":
        value = value.strip()
    if required and not value:
        raise InvalidInput(f"{name} must not be empty")
    if len(value) > limit:
        raise InvalidInput(f"{name} is longer than {limit} characters")
    return value


def _checked(stores: Stores, datastore_id: str, study_uid: str, body: Any) -> dict[str, Any]:
    """The bookmark's columns from a request body, checked against the slide's pyramid."""
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    unknown = sorted(set(body) - _BODY_FIELDS)
    if unknown:
        raise InvalidInput(f"unknown field(s): {', '.join(unknown)}")
    series = body.get("seriesInstanceUID")
    if not isinstance(series, str) or not series:
        raise InvalidInput("seriesInstanceUID (the slide's series) is required")
    region = body.get("region")
    if not isinstance(region, dict):
        raise InvalidInput("region must be an object {x, y, width, height} in the level's pixels")
    level_index = _int(body, "level", 0)
    x, y = _int(region, "x", 0), _int(region, "y", 0)
    width, height = _int(region, "width", 1), _int(region, "height", 1)
    name = _text(body, "name", MAX_NAME, required=True)
    note = _text(body, "note", MAX_NOTE, required=False)
    levels = pyramid_levels(stores, datastore_id, study_uid, series)
    if level_index >= len(levels):
        raise InvalidInput(f"level {level_index} does not exist: the slide has levels 0..{len(levels) - 1}")
    level = levels[level_index]
    if x + width > level.width or y + height > level.height:
        raise InvalidInput(f"region {x},{y} {width}x{height} lies outside level {level_index} "
                           f"({level.width}x{level.height} pixels)")
    return {"series_instance_uid": series, "sop_instance_uid": level.sop_instance_uid, "level": level_index,
            "x": x, "y": y, "width": width, "height": height, "name": name, "note": note}


def _bookmark(row: Any) -> Bookmark:
    return Bookmark(**{c.name: getattr(row, c.name) for c in slide_bookmarks.columns})


def create_bookmark(stores: Stores, datastore_id: str, study_uid: str, body: Any, created_by: str) -> Bookmark:
    values = _checked(stores, datastore_id, study_uid, body)
    now = time.time()
    row = {"id": secrets.token_hex(16), "datastore_id": datastore_id, "study_instance_uid": study_uid,
           **values, "created_by": created_by, "created_at": now, "updated_at": now}
    with stores.catalog.write() as conn:
        conn.execute(sa.insert(slide_bookmarks).values(**row))
    return Bookmark(**row)


def list_bookmarks(stores: Stores, datastore_id: str, study_uid: str,
                   series_uid: str | None = None) -> list[Bookmark]:
    """The study's bookmarks, oldest first (NotFound if the study is not in the datastore)."""
    instances.locate(stores.catalog, datastore_id, study_uid)
    b = slide_bookmarks
    q = sa.select(b).where(b.c.datastore_id == datastore_id, b.c.study_instance_uid == study_uid)
    if series_uid:
        q = q.where(b.c.series_instance_uid == series_uid)
    with stores.catalog.read() as conn:
        return [_bookmark(r) for r in conn.execute(q.order_by(b.c.created_at, b.c.id))]


def get_bookmark(stores: Stores, datastore_id: str, study_uid: str, bookmark_id: str) -> Bookmark:
    """One bookmark of a study that is in the datastore (the bookmarks of a study whose image sets
    were all deleted are not served; they come back if the study is imported again)."""
    instances.locate(stores.catalog, datastore_id, study_uid)
    b = slide_bookmarks
    with stores.catalog.read() as conn:
        row = conn.execute(sa.select(b).where(b.c.id == bookmark_id, b.c.datastore_id == datastore_id,
                                              b.c.study_instance_uid == study_uid)).first()
    if row is None:
        raise NotFound(f"bookmark {bookmark_id} is not in study {study_uid}")
    return _bookmark(row)


def update_bookmark(stores: Stores, datastore_id: str, study_uid: str, bookmark_id: str, body: Any) -> Bookmark:
    """Change a bookmark's level, region, name or note (fields left out keep their values)."""
    old = get_bookmark(stores, datastore_id, study_uid, bookmark_id)
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    merged = {"seriesInstanceUID": old.series_instance_uid, "level": old.level, "name": old.name,
              "note": old.note, "region": {"x": old.x, "y": old.y, "width": old.width, "height": old.height},
              **body}
    values = _checked(stores, datastore_id, study_uid, merged)
    b = slide_bookmarks
    with stores.catalog.write() as conn:
        conn.execute(sa.update(b).where(b.c.id == bookmark_id).values(**values, updated_at=time.time()))
    return get_bookmark(stores, datastore_id, study_uid, bookmark_id)


def delete_bookmark(stores: Stores, datastore_id: str, study_uid: str, bookmark_id: str) -> None:
    get_bookmark(stores, datastore_id, study_uid, bookmark_id)
    b = slide_bookmarks
    with stores.catalog.write() as conn:
        conn.execute(sa.delete(b).where(b.c.id == bookmark_id))
