"""Every test that touches the database gets its own, cloned from a migrated template.

The server is embedded PostgreSQL unless PAYRAIL_TEST_DATABASE_URL names another (its
user must be allowed to create databases).
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from payrail.api.app import create_app
from payrail.api.context import Services
from payrail.clock import ManualClock
from payrail.db.embedded import NON_DURABLE, EmbeddedPostgres
from payrail.db.migrate import upgrade, with_database
from payrail.db.pool import open_pool
from payrail.ops.logging import MaskingFormatter, configure_structlog
from payrail.ops.logging import configure as configure_logging
from payrail.runtime import serve_in_thread
from payrail.tenants.service import NewMerchant, create_merchant
from tests.vaults import fixed_vault

TEMPLATE = "payrail_template"


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("PAYRAIL_TEST_DATABASE_URL")
    if external:
        yield external
        return
    server = EmbeddedPostgres(Path(tmp_path_factory.mktemp("postgres")), settings=NON_DURABLE)
    server.start()
    try:
        yield server.url("postgres")
    finally:
        server.stop()


def _admin(server_url: str) -> psycopg.Connection:
    return psycopg.connect(with_database(server_url, "postgres"), autocommit=True)


@pytest.fixture(scope="session")
def template(server_url: str) -> str:
    with _admin(server_url) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(TEMPLATE))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE)))
    upgrade(with_database(server_url, TEMPLATE))
    asyncio.run(_prepare_vault(with_database(server_url, TEMPLATE)))
    return TEMPLATE


async def _prepare_vault(url: str) -> None:
    """The vault's first keys, as `payrail up` makes them at start."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await fixed_vault().prepare(conn, ManualClock().now())


@pytest.fixture
def database_url(server_url: str, template: str) -> Iterator[str]:
    name = f"test_{secrets.token_hex(6)}"
    with _admin(server_url) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY file_copy").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    yield with_database(server_url, name)
    with _admin(server_url) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    pool = await open_pool(database_url, min_size=1, max_size=10)
    yield pool
    await pool.close()


@pytest.fixture
async def services(pool: AsyncConnectionPool, clock: ManualClock) -> AsyncIterator[Services]:
    services = Services(pool=pool, clock=clock, vault=fixed_vault())
    yield services
    await services.connectors.aclose()


@pytest.fixture
async def client(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://payrail.test") as client:
        yield client


async def new_merchant(pool: AsyncConnectionPool, clock: ManualClock, name: str) -> NewMerchant:
    async with pool.connection() as conn:
        return await create_merchant(conn, clock, name)


@pytest.fixture
async def merchant(pool: AsyncConnectionPool, clock: ManualClock) -> NewMerchant:
    return await new_merchant(pool, clock, "Acme Streaming")


@pytest.fixture
def auth(merchant: NewMerchant) -> dict[str, str]:
    return {"Authorization": f"Bearer {merchant.test_secret}"}


@pytest.fixture
def live_server(database_url: str, clock: ManualClock) -> Iterator[str]:
    """The API over real HTTP (uvicorn on a free loopback port, in its own thread)."""
    with serve_in_thread(database_url, clock, fixed_vault()) as url:
        yield url


@pytest.fixture(scope="session", autouse=True)
def plain_structlog() -> None:
    """payrail's own log lines. structlog's default renders tracebacks through rich,
    locals and all, which costs seconds per logged exception."""
    configure_structlog(logging.DEBUG)


@pytest.fixture
def written_logs() -> Iterator[io.StringIO]:
    """Everything logged, formatted as payrail writes it, at DEBUG for every logger."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(MaskingFormatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    configure_logging(logging.DEBUG)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        configure_structlog(logging.DEBUG)
