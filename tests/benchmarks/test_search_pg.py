"""benchmarks/search_pg.py's bulk loader on the real schema: small, to show the harness works
(the figures come from running the benchmark itself)."""

from __future__ import annotations

import sqlalchemy as sa

from benchmarks import search_pg
from tessel.catalog import Catalog
from tests.stack import PostgresServer


def _indexes(catalog: Catalog) -> set[str]:
    with catalog.read() as conn:
        return {r[0] for r in conn.exec_driver_sql(
            "SELECT indexdef FROM pg_indexes WHERE tablename = ANY(%(t)s)", {"t": list(search_pg.TABLES)})}


def test_copy_load_fills_the_migrated_schema_and_every_hot_query_finds_rows(pg_server: PostgresServer) -> None:
    url = pg_server.url(pg_server.new_database("searchbench"))
    layout = search_pg.Layout.make(3000)
    catalog = Catalog.open(url)
    try:
        migrated = _indexes(catalog)
        search_pg.load(url, layout)
        assert _indexes(catalog) == migrated  # every key and index the migrations made is back
        with catalog.read() as conn:
            counts = {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar() for t in search_pg.TABLES}
        assert counts == {"instances": 3000, "frames": 3000, "dicom_instances": 3000, "image_sets": layout.series,
                          "dicom_series": layout.series, "dicom_studies": layout.studies}
        assert layout.studies < layout.series < 3000 and sum(layout.series_size) == 3000
        results = search_pg.measure(catalog, layout, runs=3)
    finally:
        catalog.close()
    assert len(results) >= 25
    empty = [name for name, _, _, _, rows, _ in results if rows == 0]
    assert not empty, f"query shapes that found nothing: {empty}"
