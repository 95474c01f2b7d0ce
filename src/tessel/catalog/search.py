"""SearchImageSets (spec section 6): filters, sort and keyset pagination on catalog columns only.

No document is read: every filter and sort is a column of `image_sets` with an
index that starts (datastore_id, <equality column>, <sort column>, id), so a page
is one index range scan however many image sets match. Deleted image sets are
left out.

Pages continue after the last row of the previous page (keyset pagination), so
concurrent changes never repeat or skip rows that did not move. The cursor is
opaque: base64url of the last row's sort value and id, plus a fingerprint of the
criteria so that a cursor cannot be replayed against a different search.

Image sets without a study date sort as the smallest DICOMStudyDateAndTime: last
when descending, first when ascending. They are read as a segment of their own
(`study_date_time IS NULL`, ordered by id), which keeps both segments indexable
on every database whatever its NULL ordering.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Callable, Sequence

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from tessel.catalog import Catalog
from tessel.catalog.models import ImageSet, ImageSetState
from tessel.catalog.store import image_sets_from_rows
from tessel.catalog.sql.tables import image_sets
from tessel.documents import study_date_time
from tessel.errors import InvalidInput


class SearchOperator(StrEnum):
    EQUAL = "EQUAL"
    BETWEEN = "BETWEEN"


class SortField(StrEnum):
    UPDATED_AT = "updatedAt"
    CREATED_AT = "createdAt"
    DICOM_STUDY_DATE_AND_TIME = "DICOMStudyDateAndTime"


class SortOrder(StrEnum):
    ASC = "ASC"
    DESC = "DESC"


@dataclass(frozen=True, slots=True)
class SearchFilter:
    operator: SearchOperator | str
    field: str
    values: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class SearchCriteria:
    filters: tuple[SearchFilter, ...] = ()
    sort_field: SortField | str | None = None
    sort_order: SortOrder | str = SortOrder.DESC


@dataclass(frozen=True, slots=True)
class SearchPage:
    image_sets: list[ImageSet]
    next_cursor: str | None


EQUAL_COLUMNS: dict[str, sa.Column[Any]] = {
    "DICOMPatientId": image_sets.c.patient_id,
    "DICOMAccessionNumber": image_sets.c.accession_number,
    "DICOMStudyId": image_sets.c.study_id,
    "DICOMStudyInstanceUID": image_sets.c.study_instance_uid,
    "DICOMSeriesInstanceUID": image_sets.c.series_instance_uid,
    "isPrimary": image_sets.c.is_primary,
}
RANGE_COLUMNS: dict[str, sa.Column[Any]] = {
    "createdAt": image_sets.c.created_at,
    "updatedAt": image_sets.c.updated_at,
    "DICOMStudyDateAndTime": image_sets.c.study_date_time,
}
SORT_COLUMNS: dict[SortField, sa.Column[Any]] = {
    SortField.UPDATED_AT: image_sets.c.updated_at,
    SortField.CREATED_AT: image_sets.c.created_at,
    SortField.DICOM_STUDY_DATE_AND_TIME: image_sets.c.study_date_time,
}
MAX_FILTERS = 2
_DATE = re.compile(r"\d{8}")
_TIME = re.compile(r"\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?")
_VALUES, _NULLS = "v", "n"  # cursor segments: rows with a sort value, rows without one
# An equality filter with a range on another column than the sort matching at least this many rows:
# walk the (equality, sort) index and test the range rather than sort the range's matches.
WIDE_RANGE = 2000


def search_image_sets(catalog: Catalog, datastore_id: str, criteria: SearchCriteria, *, limit: int,
                      cursor: str | None, visible: Callable[[list[str]], set[str]] | None = None) -> SearchPage:
    """One page of live image sets of the datastore matching every filter, in the requested order.

    `visible` (image set ids -> those the caller may see) leaves the others out; pages stay full."""
    if limit < 1:
        raise InvalidInput("limit must be at least 1")
    filters, filter_conditions = _conditions(criteria.filters)
    sort_field = _enum(SortField, criteria.sort_field or SortField.UPDATED_AT, "sort field")
    descending = _enum(SortOrder, criteria.sort_order, "sort order") == SortOrder.DESC
    column = SORT_COLUMNS[sort_field]
    nullable = sort_field == SortField.DICOM_STUDY_DATE_AND_TIME
    ranges = [RANGE_COLUMNS[f] for op, f in filters if op == SearchOperator.BETWEEN]
    crossed = bool(ranges) and all(r is not column for r in ranges)  # no index gives order and range
    conditions = [image_sets.c.datastore_id == datastore_id,
                  image_sets.c.state != ImageSetState.DELETED.value, *filter_conditions]
    # Ranges alone: sort the (value, id) pairs of the range's covering index
    # (ix_image_sets_<range>_by_<sort>) and fetch only the page's rows. Sorting on an
    # expression keeps the planner off the sort column's index.
    deferred = crossed and len(ranges) == len(filters)
    # With an equality filter: its (equality, range) index sorts few matches fast, its (equality,
    # sort) index finds a page of many (a de-identified PatientID over years) in a few dozen rows.
    # SQLite has no statistics to choose: count the matches (deleted ones too: an estimate), up to
    # WIDE_RANGE, on the first index (entries side by side, no table page). A wide range is then
    # written so that no index serves it, which leaves the planner (either database) the sort's.
    walked = crossed and not deferred
    walk_conditions = [*conditions[:2], *_conditions(criteria.filters, indexed=False)[1]] if walked else []
    fingerprint = _fingerprint(datastore_id, criteria, sort_field, descending)
    segment, after = _read_cursor(cursor, fingerprint, nullable) if cursor else (None, None)
    # Nulls are the smallest values: they come last when descending, first when ascending.
    segments = [_VALUES] if not nullable else ([_VALUES, _NULLS] if descending else [_NULLS, _VALUES])
    if any(r is column for r in ranges):
        segments = [_VALUES]  # a range on the sort column matches no image set without a value
    if segment is not None:
        if segment not in segments:
            raise InvalidInput("nextToken is not valid for this search")
        segments = segments[segments.index(segment):]

    def bounds(current: str, position: tuple[Any, str] | None,
               sort_key: ColumnElement[Any]) -> tuple[list[ColumnElement[bool]], list[ColumnElement[Any]]]:
        """The segment's rows after `position` and their order (by `sort_key`, then id)."""
        where: list[ColumnElement[bool]] = []
        if current == _VALUES:
            if nullable:
                where.append(column.is_not(None))
            order = [sort_key.desc(), image_sets.c.id.desc()] if descending else [sort_key, image_sets.c.id]
            if position is not None:
                key = sa.tuple_(sort_key, image_sets.c.id)
                last = sa.tuple_(sa.literal(position[0]), sa.literal(position[1]))
                where.append(key < last if descending else key > last)
        else:
            where.append(column.is_(None))
            # All NULL, so ordering by the column too changes nothing, but it names the index
            # order (.., study_date_time, id): PostgreSQL does not treat IS NULL as an equality.
            order = [column.desc(), image_sets.c.id.desc()] if descending else [column, image_sets.c.id]
            if position is not None:
                where.append(image_sets.c.id < position[1] if descending else image_sets.c.id > position[1])
        return where, order

    wide_range: list[bool] = []  # counted once, on the first read that needs it

    def wide(conn: Any) -> bool:
        if walked and not wide_range:
            matches = sa.select(sa.literal(1)).where(
                image_sets.c.datastore_id == datastore_id, *filter_conditions).limit(WIDE_RANGE).subquery()
            wide_range.append(conn.execute(sa.select(sa.func.count()).select_from(matches)).scalar() >= WIDE_RANGE)
        return walked and wide_range[0]

    def read(conn: Any, current: str, position: tuple[Any, str] | None, wanted: int) -> tuple[list[Any], bool]:
        """The next `wanted` matches after `position`, and whether the segment has no more."""
        if deferred:
            sort_key = _unindexed(column)
            where, order = bounds(current, position, sort_key)
            ids = sa.select(image_sets.c.id).where(*conditions, *where).order_by(*order).limit(wanted)
            order = [column.desc() if descending else column, *order[1:]] if current == _VALUES else order
            query = sa.select(image_sets).where(image_sets.c.id.in_(ids)).order_by(*order)
        else:
            where, order = bounds(current, position, column)
            query = sa.select(image_sets).where(*(walk_conditions if wide(conn) else conditions), *where)
            query = query.order_by(*order).limit(wanted)
        fetched = list(conn.execute(query))
        return fetched, len(fetched) < wanted

    rows: list[tuple[str, Any]] = []  # (segment, row)
    with catalog.read() as conn:
        for index, current in enumerate(segments):
            position = after if index == 0 else None
            while len(rows) < limit + 1:
                wanted = limit + 1 - len(rows)
                if visible is not None:
                    wanted = max(wanted, 64)  # some will be left out: read ahead
                fetched, exhausted = read(conn, current, position, wanted)
                # `visible`: only the image sets the caller may see (a policy's tag conditions).
                shown = visible([r.id for r in fetched]) if visible is not None and fetched else None
                rows.extend((current, r) for r in fetched if shown is None or r.id in shown)
                if exhausted or not fetched:
                    break
                position = (getattr(fetched[-1], column.name), fetched[-1].id)
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last_segment, last_row = page[-1]
        next_cursor = _write_cursor(fingerprint, last_segment, getattr(last_row, column.name), last_row.id)
    return SearchPage(image_sets_from_rows([row for _, row in page]), next_cursor)


def _enum(kind: Any, value: Any, what: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise InvalidInput(f"unknown {what} {value!r}; expected one of {allowed}") from None


def _unindexed(column: sa.Column[Any]) -> ColumnElement[Any]:
    """`column` as an expression of the same value and order, which no index serves."""
    return column.concat("") if column is image_sets.c.study_date_time else column + 0


def _conditions(filters: Sequence[SearchFilter], *, indexed: bool = True) -> tuple[
        list[tuple[SearchOperator, str]], list[ColumnElement[bool]]]:
    """The validated (operator, field) pairs and their SQL conditions (`indexed`: False writes
    the ranges so that no index serves them)."""
    if len(filters) > MAX_FILTERS:
        raise InvalidInput(f"a search takes at most {MAX_FILTERS} filters, not {len(filters)}")
    checked: list[tuple[SearchOperator, str]] = []
    conditions: list[ColumnElement[bool]] = []
    for number, search_filter in enumerate(filters, 1):
        operator = _enum(SearchOperator, search_filter.operator, "operator")
        field, values = search_filter.field, tuple(search_filter.values)
        where = f"filter {number} ({field} {operator.value})"
        if operator == SearchOperator.EQUAL:
            if field not in EQUAL_COLUMNS:
                raise InvalidInput(f"{where}: EQUAL works on {', '.join(EQUAL_COLUMNS)}; use BETWEEN "
                                   f"for {field}" if field in RANGE_COLUMNS else f"{where}: unknown field")
            if len(values) != 1:
                raise InvalidInput(f"{where}: EQUAL takes exactly one value, not {len(values)}")
            conditions.append(EQUAL_COLUMNS[field] == _equal_value(field, values[0], where))
        else:
            if field not in RANGE_COLUMNS:
                raise InvalidInput(f"{where}: BETWEEN works on {', '.join(RANGE_COLUMNS)}; use EQUAL "
                                   f"for {field}" if field in EQUAL_COLUMNS else f"{where}: unknown field")
            if len(values) != 2:
                raise InvalidInput(f"{where}: BETWEEN takes a lower and an upper bound, not "
                                   f"{len(values)} value(s)")
            low, high = (_range_value(field, v, where) for v in values)
            if low > high:
                raise InvalidInput(f"{where}: the lower bound is after the upper bound")
            column = RANGE_COLUMNS[field]
            conditions.append((column if indexed else _unindexed(column)).between(low, high))
        checked.append((operator, field))
    return checked, conditions


def _equal_value(field: str, value: Any, where: str) -> Any:
    if field == "isPrimary":
        if not isinstance(value, bool):
            raise InvalidInput(f"{where}: isPrimary is true or false")
        return value
    if not isinstance(value, str):
        raise InvalidInput(f"{where}: the value is a string")
    return value


def _range_value(field: str, value: Any, where: str) -> Any:
    if field == "DICOMStudyDateAndTime":
        if not (isinstance(value, (tuple, list)) and len(value) == 2):
            raise InvalidInput(f"{where}: each bound is (DICOMStudyDate, DICOMStudyTime or None)")
        date, time_ = value
        if not isinstance(date, str) or not _DATE.fullmatch(date):
            raise InvalidInput(f"{where}: DICOMStudyDate {date!r} is not YYYYMMDD")
        if time_ is not None and (not isinstance(time_, str) or not _TIME.fullmatch(time_)):
            raise InvalidInput(f"{where}: DICOMStudyTime {time_!r} is not HHMMSS[.FFFFFF]")
        return study_date_time(date, time_ or None)  # a missing time is 00:00:00, as in AHI
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInput(f"{where}: {field} bounds are epoch seconds")
    return float(value)


def _fingerprint(datastore_id: str, criteria: SearchCriteria, sort_field: SortField, descending: bool) -> str:
    described = [datastore_id, sort_field.value, descending,
                 [[str(f.operator), f.field, [list(v) if isinstance(v, tuple) else v for v in f.values]]
                  for f in criteria.filters]]
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _write_cursor(fingerprint: str, segment: str, value: Any, image_set_id: str) -> str:
    raw = json.dumps([1, fingerprint, segment, value, image_set_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _read_cursor(cursor: str, fingerprint: str, text_sort: bool) -> tuple[str, tuple[Any, str]]:
    invalid = InvalidInput("nextToken is not a token this service issued")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        version, found, segment, value, image_set_id = json.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise invalid from None
    if version != 1 or not isinstance(image_set_id, str) or segment not in (_VALUES, _NULLS):
        raise invalid
    if found != fingerprint:
        raise InvalidInput("nextToken belongs to a different search (filters, sort or datastore changed)")
    # The token is only base64: check what goes into SQL has the sort column's type.
    if segment == _VALUES and not (isinstance(value, str) if text_sort else
                                   isinstance(value, (int, float)) and not isinstance(value, bool)):
        raise invalid
    return segment, (value, image_set_id)
