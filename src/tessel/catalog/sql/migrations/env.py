"""Alembic environment: runs on the connection tessel hands over (config.attributes['connection'])."""

from alembic import context

from tessel.catalog.sql import dialects  # noqa: F401  (TEXT and BIGINT on PostgreSQL)
from tessel.catalog.sql.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
