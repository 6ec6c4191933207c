"""The connection pool every process shares."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool


async def _configure(conn: AsyncConnection[Any]) -> None:
    await conn.set_autocommit(True)


async def open_pool(url: str, *, min_size: int = 2, max_size: int = 20) -> AsyncConnectionPool:
    pool: AsyncConnectionPool = AsyncConnectionPool(
        url, min_size=min_size, max_size=max_size, configure=_configure, open=False
    )
    await pool.open(wait=True)
    return pool
