"""Alembic environment: migrations are plain SQL run over psycopg 3.

The connection string is any libpq conninfo (URL or key=value), handed over in
`config.attributes` by payrail.db.migrate.
"""

from __future__ import annotations

import psycopg
from alembic import context
from sqlalchemy import create_engine

conninfo: str = context.config.attributes["conninfo"]
engine = create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(conninfo))
with engine.connect() as connection:
    context.configure(connection=connection, transactional_ddl=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
