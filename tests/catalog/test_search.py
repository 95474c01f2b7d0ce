"""SearchImageSets on catalog rows: every filter and operator, sorts, keyset pages, validation, plans."""

from __future__ import annotations

import base64
import itertools
import json
import re
from typing import Any, Iterator

import pytest
import sqlalchemy as sa

from tessel.catalog import Catalog
from tessel.catalog import search as search_module
from tessel.catalog.search import SearchCriteria, SearchFilter, SearchPage, search_image_sets
from tessel.documents import study_date_time
from tessel.errors import InvalidInput
from tessel.lifecycle.datastores import create_datastore
from tessel.lifecycle.imagesets import delete_image_set, update_image_set_metadata
from tessel.stores import Stores
from tests.lifecycle import make_image_set, uid

DS = "a" * 32
OTHER = "b" * 32


def row(n: int, datastore_id: str = DS, **values: Any) -> dict[str, Any]:
    date, time_ = values.pop("study_date", f"2024{1 + n % 12:02d}{1 + n % 28:02d}"), values.pop("study_time", None)
    base = {
        "id": f"{n:032x}", "datastore_id": datastore_id, "latest_version": 1, "state": "ACTIVE",
        "workflow_status": "CREATED", "message": None, "is_primary": n % 4 != 0, "group_key": f"g{n}",
        "created_at": 1000.0 + n, "updated_at": 5000.0 - n, "deleted_at": None, "last_accessed_at": None,
        "storage_tier": "FREQUENT_ACCESS", "patient_id": f"P{n % 3}", "patient_name": "X", "patient_birth_date": None,
        "patient_sex": None, "study_instance_uid": f"1.2.{n % 5}", "study_id": str(n % 2),
        "study_description": None, "accession_number": f"A{n % 7}", "study_date": date, "study_time": time_,
        "study_date_time": study_date_time(date, time_), "series_instance_uid": f"1.2.{n % 5}.{n}",
        "series_modality": "CT", "series_body_part": None, "series_number": n, "number_of_series": 1,
        "number_of_instances": 1}
    base.update(values)
    return base


@pytest.fixture
def catalog(stores: Stores) -> Catalog:
    with stores.catalog.write() as conn:
        for n in range(30):
            stores.catalog.insert_image_set(conn, row(n))
        stores.catalog.insert_image_set(conn, row(30, study_date=None))
        stores.catalog.insert_image_set(conn, row(31, study_date=None))
        stores.catalog.insert_image_set(conn, row(32, state="DELETED"))
        stores.catalog.insert_image_set(conn, row(33, datastore_id=OTHER))
    return stores.catalog


def ids(page: SearchPage) -> list[int]:
    return [int(s.id, 16) for s in page.image_sets]


def search(catalog: Catalog, *filters: SearchFilter, sort: str | None = None, order: str = "DESC",
           limit: int = 50, cursor: str | None = None) -> SearchPage:
    return search_image_sets(catalog, DS, SearchCriteria(tuple(filters), sort, order), limit=limit, cursor=cursor)


def walk(catalog: Catalog, *filters: SearchFilter, sort: str | None = None, order: str = "DESC",
         limit: int = 4) -> Iterator[SearchPage]:
    cursor = None
    while True:
        page = search(catalog, *filters, sort=sort, order=order, limit=limit, cursor=cursor)
        yield page
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def EQ(field: str, value: Any) -> SearchFilter:
    return SearchFilter("EQUAL", field, (value,))


def BETWEEN(field: str, low: Any, high: Any) -> SearchFilter:
    return SearchFilter("BETWEEN", field, (low, high))


LIVE = [n for n in range(32)]


def test_an_empty_search_lists_live_image_sets_of_the_datastore_by_updated_at_desc(catalog: Catalog) -> None:
    page = search(catalog)
    assert ids(page) == LIVE  # updated_at = 5000 - n
    assert page.next_cursor is None


@pytest.mark.parametrize("field, value, expected", [
    ("DICOMPatientId", "P1", [n for n in LIVE if n % 3 == 1]),
    ("DICOMAccessionNumber", "A3", [n for n in LIVE if n % 7 == 3]),
    ("DICOMStudyId", "0", [n for n in LIVE if n % 2 == 0]),
    ("DICOMStudyInstanceUID", "1.2.4", [n for n in LIVE if n % 5 == 4]),
    ("DICOMSeriesInstanceUID", "1.2.2.7", [7]),
    ("isPrimary", True, [n for n in LIVE if n % 4]),
    ("isPrimary", False, [n for n in LIVE if n % 4 == 0]),
    ("DICOMPatientId", "nobody", []),
    ("DICOMPatientId", "p1", []),  # exact, case-sensitive
])
def test_equal_filters(catalog: Catalog, field: str, value: Any, expected: list[int]) -> None:
    assert ids(search(catalog, EQ(field, value))) == expected


def test_between_timestamps_includes_both_bounds(catalog: Catalog) -> None:
    assert ids(search(catalog, BETWEEN("createdAt", 1003, 1006))) == [3, 4, 5, 6]
    assert ids(search(catalog, BETWEEN("createdAt", 1003.5, 1005.9999))) == [4, 5]
    assert ids(search(catalog, BETWEEN("updatedAt", 4990, 4992))) == [8, 9, 10]
    assert ids(search(catalog, BETWEEN("updatedAt", 4992, 4992))) == [8]
    assert ids(search(catalog, BETWEEN("createdAt", 0, 999.999))) == []
    assert ids(search(catalog, BETWEEN("createdAt", 1031, 1_000_000))) == [31]  # 32 is deleted, 33 elsewhere


def test_between_study_date_and_time_treats_a_missing_time_as_midnight(stores: Stores) -> None:
    with stores.catalog.write() as conn:
        for n, (date, time_) in enumerate([("20240101", None), ("20240101", "101500"), ("20240101", "235959.5"),
                                           ("20240102", None), ("20240102", "000000.000001"), (None, None)]):
            stores.catalog.insert_image_set(conn, row(n, study_date=date, study_time=time_))
    catalog = stores.catalog
    day = BETWEEN("DICOMStudyDateAndTime", ("20240101", None), ("20240102", None))
    assert ids(search(catalog, day)) == [0, 1, 2, 3]  # upper bound is 2024-01-02 00:00:00, inclusive
    assert ids(search(catalog, BETWEEN("DICOMStudyDateAndTime", ("20240101", None), ("20240101", None)))) == [0]
    assert ids(search(catalog, BETWEEN("DICOMStudyDateAndTime", ("20240101", "101500"),
                                       ("20240101", "235959.5")))) == [1, 2]
    assert ids(search(catalog, BETWEEN("DICOMStudyDateAndTime", ("20240101", "1015"),
                                       ("20240101", "101500.000000")))) == [1]
    assert ids(search(catalog, BETWEEN("DICOMStudyDateAndTime", ("20240102", "000000.000001"),
                                       ("20991231", None)))) == [4]


def test_two_filters_combine_with_and(catalog: Catalog) -> None:
    assert ids(search(catalog, EQ("DICOMPatientId", "P0"), EQ("isPrimary", False))) == \
        [n for n in LIVE if n % 3 == 0 and n % 4 == 0]
    assert ids(search(catalog, BETWEEN("updatedAt", 4970, 4990), EQ("DICOMSeriesInstanceUID", "1.2.2.7"),
                      sort="updatedAt", order="ASC")) == []
    assert ids(search(catalog, BETWEEN("updatedAt", 4970, 4990), EQ("DICOMSeriesInstanceUID", "1.2.2.17"),
                      sort="updatedAt", order="ASC")) == [17]
    assert ids(search(catalog, BETWEEN("createdAt", 1000, 1010), BETWEEN("updatedAt", 4995, 5000))) == [0, 1, 2, 3, 4, 5]


def _expected(catalog: Catalog, sort: str, order: str, keep: Any = lambda row: True) -> list[int]:
    """The live image sets of DS that `keep` accepts, sorted in Python."""
    with catalog.read() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.text(
            "SELECT * FROM image_sets WHERE datastore_id = :ds AND state != 'DELETED'"), {"ds": DS})]
    column = {"updatedAt": "updated_at", "createdAt": "created_at", "DICOMStudyDateAndTime": "study_date_time"}[sort]
    # nulls are the smallest values; ties broken by id in the same direction
    rows = [r for r in rows if keep(r)]
    key = [((r[column] is not None), r[column] or "", r["id"]) for r in rows]
    ordered = sorted(zip(key, rows), key=lambda kr: kr[0], reverse=order == "DESC")
    return [int(r["id"], 16) for _, r in ordered]


@pytest.mark.parametrize("sort, order", list(itertools.product(
    ["updatedAt", "createdAt", "DICOMStudyDateAndTime"], ["ASC", "DESC"])))
@pytest.mark.parametrize("limit", [1, 4, 8, 32, 50])
def test_every_sort_pages_through_everything_once_in_order(catalog: Catalog, sort: str, order: str,
                                                           limit: int) -> None:
    pages = list(walk(catalog, sort=sort, order=order, limit=limit))
    seen = [n for page in pages for n in ids(page)]
    assert seen == _expected(catalog, sort, order)
    assert all(len(page.image_sets) == limit for page in pages[:-1])
    assert pages[-1].image_sets  # a last page is never empty, even when rows divide evenly (32 / 4)
    cursors = [page.next_cursor for page in pages[:-1]]
    assert len(set(cursors)) == len(cursors) and all(cursors)  # a new token every page
    assert all(len(c) <= 8192 and c.isascii() for c in cursors if c)


def test_study_dates_sort_with_missing_dates_smallest(catalog: Catalog) -> None:
    desc = ids(search(catalog, sort="DICOMStudyDateAndTime"))
    asc = ids(search(catalog, sort="DICOMStudyDateAndTime", order="ASC"))
    assert desc[-2:] == [31, 30] and asc[:2] == [30, 31]


@pytest.mark.parametrize("sort", ["updatedAt", "createdAt", "DICOMStudyDateAndTime"])
@pytest.mark.parametrize("filters", [
    (EQ("DICOMPatientId", "P1"),), (EQ("isPrimary", True),), (BETWEEN("createdAt", 1002, 1029),),
    (BETWEEN("updatedAt", 4975, 4998),),
    (BETWEEN("DICOMStudyDateAndTime", ("20240201", None), ("20241231", None)),),
    (EQ("DICOMStudyId", "1"), BETWEEN("createdAt", 1002, 1029)),
])
def test_filtered_searches_page_like_the_unpaged_result(catalog: Catalog, sort: str,
                                                        filters: tuple[SearchFilter, ...]) -> None:
    whole = ids(search(catalog, *filters, sort=sort))
    assert whole
    for order in ("ASC", "DESC"):
        paged = [n for page in walk(catalog, *filters, sort=sort, order=order, limit=3) for n in ids(page)]
        full = ids(search(catalog, *filters, sort=sort, order=order))
        assert paged == full and sorted(full) == sorted(whole)


@pytest.mark.parametrize("wide_range", [0, 10**9])
@pytest.mark.parametrize("sort", ["updatedAt", "createdAt", "DICOMStudyDateAndTime"])
@pytest.mark.parametrize("filters, keep", [
    ((BETWEEN("createdAt", 1003, 1027),), lambda r: 1003 <= r["created_at"] <= 1027),
    ((BETWEEN("updatedAt", 4980, 4990),), lambda r: 4980 <= r["updated_at"] <= 4990),
    ((BETWEEN("DICOMStudyDateAndTime", ("20240301", None), ("20241031", None)),),
     lambda r: study_date_time("20240301", None) <= (r["study_date_time"] or "") <= study_date_time("20241031", None)),
    ((EQ("DICOMStudyId", "1"), BETWEEN("createdAt", 1002, 1029)),
     lambda r: r["study_id"] == "1" and 1002 <= r["created_at"] <= 1029),
    ((BETWEEN("DICOMStudyDateAndTime", ("20240101", None), ("20241231", None)), EQ("isPrimary", True)),
     lambda r: r["is_primary"] and r["study_date_time"] is not None),
    ((BETWEEN("createdAt", 1000, 1020), BETWEEN("updatedAt", 4985, 5000)),
     lambda r: 1000 <= r["created_at"] <= 1020 and 4985 <= r["updated_at"] <= 5000),
])
def test_a_range_on_another_column_than_the_sort_pages_alike_walked_or_sorted(
        catalog: Catalog, monkeypatch: pytest.MonkeyPatch, wide_range: int, sort: str,
        filters: tuple[SearchFilter, ...], keep: Any) -> None:
    # With an equality filter, such a range matching at least WIDE_RANGE image sets is tested on
    # the rows along the (equality, sort) index, a narrower one sorted from its own index.
    monkeypatch.setattr(search_module, "WIDE_RANGE", wide_range)
    for order in ("ASC", "DESC"):
        expected = _expected(catalog, sort, order, keep)
        assert expected
        for limit in (1, 4, 50):
            pages = list(walk(catalog, *filters, sort=sort, order=order, limit=limit))
            assert [n for page in pages for n in ids(page)] == expected, (order, limit)
            assert all(len(page.image_sets) == limit for page in pages[:-1])


def test_ties_in_the_sort_value_page_by_id(stores: Stores) -> None:
    with stores.catalog.write() as conn:
        for n in range(7):
            stores.catalog.insert_image_set(conn, row(n, updated_at=42.0))
    paged = [n for page in walk(stores.catalog, limit=2) for n in ids(page)]
    assert paged == [6, 5, 4, 3, 2, 1, 0]


def test_a_cursor_only_continues_the_search_it_came_from(catalog: Catalog) -> None:
    cursor = search(catalog, limit=2).next_cursor
    assert cursor is not None
    assert ids(search(catalog, limit=2, cursor=cursor)) == [2, 3]
    with pytest.raises(InvalidInput, match="different search"):
        search(catalog, EQ("DICOMPatientId", "P1"), limit=2, cursor=cursor)
    with pytest.raises(InvalidInput, match="different search"):
        search(catalog, sort="createdAt", limit=2, cursor=cursor)
    with pytest.raises(InvalidInput, match="different search"):
        search_image_sets(catalog, OTHER, SearchCriteria(), limit=2, cursor=cursor)
    decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    forged = base64.urlsafe_b64encode(json.dumps([*decoded[:3], "x'; --", decoded[4]]).encode()).decode()
    for garbage in ("x", "!!!!", "eyJhIjoxfQ", cursor[:-3], forged):
        with pytest.raises(InvalidInput, match="nextToken"):
            search(catalog, limit=2, cursor=garbage)


def test_other_datastores_and_deleted_image_sets_are_not_found(catalog: Catalog) -> None:
    everything = ids(search(catalog, limit=50))
    assert 32 not in everything and 33 not in everything
    assert ids(search_image_sets(catalog, OTHER, SearchCriteria(), limit=5, cursor=None)) == [33]


@pytest.mark.parametrize("criteria, message", [
    (SearchCriteria(tuple(EQ("DICOMPatientId", "P1") for _ in range(3))), "at most 2 filters"),
    (SearchCriteria((SearchFilter("EQUAL", "DICOMPatientId", ("a", "b")),)), "exactly one value"),
    (SearchCriteria((SearchFilter("BETWEEN", "createdAt", (1.0,)),)), "lower and an upper bound"),
    (SearchCriteria((EQ("createdAt", 1.0),)), "use BETWEEN for createdAt"),
    (SearchCriteria((BETWEEN("DICOMPatientId", "a", "b"),)), "use EQUAL for DICOMPatientId"),
    (SearchCriteria((EQ("DICOMPatientName", "a"),)), "unknown field"),
    (SearchCriteria((SearchFilter("LIKE", "DICOMPatientId", ("a",)),)), "unknown operator"),
    (SearchCriteria((BETWEEN("createdAt", 5, 1),)), "lower bound is after"),
    (SearchCriteria((BETWEEN("createdAt", "a", 1),)), "epoch seconds"),
    (SearchCriteria((BETWEEN("DICOMStudyDateAndTime", ("2024-01-01", None), ("20240102", None)),)), "YYYYMMDD"),
    (SearchCriteria((BETWEEN("DICOMStudyDateAndTime", ("20240101", "25:00"), ("20240102", None)),)), "HHMMSS"),
    (SearchCriteria((BETWEEN("DICOMStudyDateAndTime", ("20240102", None), ("20240101", None)),)), "after"),
    (SearchCriteria((EQ("isPrimary", "true"),)), "true or false"),
    (SearchCriteria((EQ("DICOMPatientId", 5),)), "string"),
    (SearchCriteria((), "patientName"), "unknown sort field"),
    (SearchCriteria((), "updatedAt", "UP"), "unknown sort order"),
])
def test_invalid_criteria_are_refused(catalog: Catalog, criteria: SearchCriteria, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        search_image_sets(catalog, DS, criteria, limit=5, cursor=None)


def test_limit_must_be_positive(catalog: Catalog) -> None:
    with pytest.raises(InvalidInput):
        search(catalog, limit=0)


# -- the plans: each filter + sort is served by an index ---------------------------------------


def _plans(catalog: Catalog, criteria: SearchCriteria, *, ordered: bool = False) -> list[str]:
    return [plan for _, plan in _statement_plans(catalog, criteria, ordered=ordered)]


def _statement_plans(catalog: Catalog, criteria: SearchCriteria, *, ordered: bool = False) -> list[tuple[str, str]]:
    """(statement, plan) of each SELECT a search of `criteria` runs."""
    statements: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    sa.event.listen(catalog.engine, "before_cursor_execute", capture)
    try:
        search_image_sets(catalog, DS, criteria, limit=5, cursor=None)
    finally:
        sa.event.remove(catalog.engine, "before_cursor_execute", capture)
    with catalog.read() as conn:
        if conn.dialect.name == "sqlite":
            return [(s, " ; ".join(r[-1] for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {s}", p)))
                    for s, p in statements]
        # A few dozen rows fit one page, where the planner's costs say little about a large table
        # (benchmarks/search_pg.py shows those plans): forbid a full scan, and with `ordered` a
        # sort, so the plan shows that an index serves the filter (and the order).
        conn.exec_driver_sql("ANALYZE image_sets")
        conn.exec_driver_sql("SET enable_seqscan = off")
        conn.exec_driver_sql(f"SET enable_sort = {'off' if ordered else 'on'}")
        conn.exec_driver_sql(f"SET enable_incremental_sort = {'off' if ordered else 'on'}")  # a sort too
        try:
            return [(s, "\n".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {s}", p))) for s, p in statements]
        finally:
            conn.exec_driver_sql("RESET enable_seqscan")
            conn.exec_driver_sql("RESET enable_sort")
            conn.exec_driver_sql("RESET enable_incremental_sort")


def _sorts(plan: str) -> bool:
    """Whether a plan sorts rows (SQLite: a temp b-tree; PostgreSQL: a Sort node)."""
    return "TEMP B-TREE" in plan or re.search(r"(^|->)\s*(Incremental )?Sort\b", plan, re.M) is not None


def _scans(plan: str) -> bool:
    """Whether a plan reads the whole table."""
    return re.search(r"(^|; |->\s*)SCAN image_sets\b", plan) is not None or "Seq Scan" in plan


def _uses(plan: str, index: str) -> bool:
    """Whether a plan reads `index` (SQLite: USING [COVERING] INDEX; PostgreSQL: an index scan
    "using" it or a bitmap index scan "on" it)."""
    return any(f"{word} {index}{end}" in plan for word in ("INDEX", " using", " on") for end in (" ", "\n"))


def _any_index(plan: str) -> bool:
    """Whether a plan reads one of the search indexes."""
    return any(f"{word} ix_image_sets_" in plan for word in ("INDEX", " using", " on"))


@pytest.mark.parametrize("sort", ["updatedAt", "createdAt", "DICOMStudyDateAndTime"])
@pytest.mark.parametrize("field, value", [
    ("DICOMPatientId", "P1"), ("DICOMAccessionNumber", "A1"), ("DICOMStudyId", "1"),
    ("DICOMStudyInstanceUID", "1.2.1"), ("DICOMSeriesInstanceUID", "1.2.1.1"), ("isPrimary", True),
    (None, None)])
def test_equality_filters_and_sorts_are_one_ordered_index_scan(catalog: Catalog, sort: str, field: str | None,
                                                               value: Any) -> None:
    filters = (EQ(field, value),) if field else ()
    for plan in _plans(catalog, SearchCriteria(filters, sort), ordered=True):
        assert "INDEX ix_image_sets_" in plan or " using ix_image_sets_" in plan, plan
        assert not _sorts(plan) and not _scans(plan), plan


@pytest.mark.parametrize("sort", ["updatedAt", "createdAt", "DICOMStudyDateAndTime"])
@pytest.mark.parametrize("field, bounds", [
    ("createdAt", (1, 2)), ("updatedAt", (1, 2)),
    ("DICOMStudyDateAndTime", (("20240101", None), ("20240102", None)))])
@pytest.mark.parametrize("equal", [None, "narrow", "wide"])
def test_range_filters_use_their_index(catalog: Catalog, monkeypatch: pytest.MonkeyPatch, sort: str, field: str,
                                       bounds: tuple[Any, Any], equal: str | None) -> None:
    names = {"createdAt": "created", "updatedAt": "updated", "DICOMStudyDateAndTime": "study_dt"}
    filters = (BETWEEN(field, *bounds), *((EQ("DICOMPatientId", "P1"),) if equal else ()))
    # With an equality filter, the matches of a range on another column than the sort are
    # counted (up to WIDE_RANGE) first: as many as that are walked in sort order, fewer sorted.
    monkeypatch.setattr(search_module, "WIDE_RANGE", 0 if equal == "wide" else 10**9)
    statements = _statement_plans(catalog, SearchCriteria(filters, sort), ordered=equal == "wide")
    counts = [plan for statement, plan in statements if "count(*)" in statement]
    assert len(counts) == (equal is not None and field != sort)
    sqlite = catalog.engine.dialect.name == "sqlite"
    for statement, plan in statements:
        assert not _scans(plan), plan
        if plan in counts:  # on the (equality, range) index's entries alone
            assert _uses(plan, f"ix_image_sets_patient_{names[field]}") if sqlite else _any_index(plan), plan
        elif field == sort and sqlite:
            assert _uses(plan, f"ix_image_sets_{'patient_' if equal else ''}{names[field]}"), plan
            assert not _sorts(plan), plan
        elif field == sort:  # PostgreSQL may sort a tiny bitmap scan's rows, from either index with an equality,
            # and may take the range's covering index (datastore, range, ...) for the same range scan
            assert (_uses(plan, f"ix_image_sets_{names[field]}") or f"ix_image_sets_{names[field]}_by_" in plan
                    or equal and _any_index(plan)), plan
        elif equal == "wide":  # in sort order along the (equality, sort) index: no sort
            assert _uses(plan, f"ix_image_sets_patient_{names[sort]}"), plan
            assert not _sorts(plan), plan
        elif not sqlite or equal:
            # An index of image_sets, never a scan of the table; which index (the range's or the sort's)
            # is the planner's cost decision, and it changes with the statistics of the moment.
            assert _any_index(plan), plan
        else:  # (value, id) pairs sorted from a covering index, then only the page's rows are read
            assert "COVERING INDEX ix_image_sets_" in plan, plan
            if sort != "DICOMStudyDateAndTime":  # (its IS NULL segment may lead with study_date_time)
                assert _uses(plan, f"ix_image_sets_{names[field]}_by_{names[sort]}"), plan


# -- through the life cycle ---------------------------------------------------------------------


def test_updates_and_deletes_show_in_search(stores: Stores) -> None:
    ds = create_datastore(stores, "t").id
    first = make_image_set(stores, ds, study=uid("s1"), series=uid("s1", 1), count=1, patient_id="PX")
    second = make_image_set(stores, ds, study=uid("s2"), series=uid("s2", 1), count=1, patient_id="PX")
    page = search_image_sets(stores.catalog, ds, SearchCriteria(), limit=10, cursor=None)
    assert [s.id for s in page.image_sets] == [second, first]
    update_image_set_metadata(stores, ds, first, latest_version_id=1, updatable={
        "SchemaVersion": 1.1, "Patient": {"DICOM": {"PatientID": "PY"}}, "Study": {"DICOM": {
            "AccessionNumber": "NEW", "StudyDate": "19990101", "StudyTime": "120000"}}})
    page = search_image_sets(stores.catalog, ds, SearchCriteria(), limit=10, cursor=None)
    assert [s.id for s in page.image_sets] == [first, second]  # most recently updated first
    assert [s.id for s in search_image_sets(stores.catalog, ds, SearchCriteria((EQ("DICOMPatientId", "PY"),)),
                                            limit=10, cursor=None).image_sets] == [first]
    assert [s.id for s in search_image_sets(stores.catalog, ds, SearchCriteria((EQ("DICOMAccessionNumber", "NEW"),)),
                                            limit=10, cursor=None).image_sets] == [first]
    window = BETWEEN("DICOMStudyDateAndTime", ("19990101", "115959"), ("19990101", "120000"))
    assert [s.id for s in search_image_sets(stores.catalog, ds, SearchCriteria((window,)), limit=10,
                                            cursor=None).image_sets] == [first]
    delete_image_set(stores, ds, first)
    assert [s.id for s in search_image_sets(stores.catalog, ds, SearchCriteria(), limit=10,
                                            cursor=None).image_sets] == [second]
