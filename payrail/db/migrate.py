"""Apply Alembic migrations programmatically (`payrail db upgrade`, and on `up`)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from psycopg.conninfo import make_conninfo

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(conninfo: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["conninfo"] = conninfo
    return config


def upgrade(conninfo: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(conninfo), revision)


def with_database(conninfo: str, database: str) -> str:
    """The same server, another database."""
    return make_conninfo(conninfo, dbname=database)
