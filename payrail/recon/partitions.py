"""The monthly partitions of `recon_provider_transactions`.

A partition is made as a table of its own, then attached: ATTACH PARTITION takes a SHARE
UPDATE EXCLUSIVE lock on the parent, which the COPY, INSERT and SELECT of other runs do
not wait for, where CREATE TABLE ... PARTITION OF takes ACCESS EXCLUSIVE and would stop
every run of every merchant until the making transaction ends. The recon worker makes
them ahead of time, each in a short transaction of its own, so that a run seldom has to.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool

Conn = AsyncConnection[Any]

PARENT = "recon_provider_transactions"


def month_start(day: date, months_later: int = 0) -> date:
    """The first day of `day`'s month, or of the month `months_later` after it."""
    index = day.year * 12 + day.month - 1 + months_later
    return date(index // 12, index % 12 + 1, 1)


def months(since: date, until: date) -> list[date]:
    """The first day of every month from `since`'s to `until`'s, both included."""
    first, last = month_start(since), month_start(until)
    found = []
    while first <= last:
        found.append(first)
        first = month_start(first, 1)
    return found


def partition_name(day: date) -> str:
    return f"{PARENT}_{month_start(day):%Y_%m}"


async def _exists(conn: Conn, name: str) -> bool:
    # Read from pg_class under the statement's snapshot: to_regclass answers from the
    # session's catalog cache, which can still miss a partition another transaction
    # committed while this one waited for the month's lock.
    found = await (
        await conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_class"
            " WHERE relname = %s AND relnamespace = current_schema()::regnamespace)",
            (name,),
        )
    ).fetchone()
    return found == (True,)


async def ensure_partition(conn: Conn, report_date: date) -> bool:
    """Make the month's partition if it is missing, in the caller's transaction; whether
    this call made it. The month's advisory lock is taken only then, so that two first
    runs of a month do not both make it; runs of a month whose partition exists take no
    lock here at all. Until the caller commits, other runs read and write the parent as
    ever, while making another month's partition waits (ATTACH's lock conflicts with
    itself): hence `prepare`, ahead of time."""
    name = partition_name(report_date)
    if await _exists(conn, name):
        return False
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (name,))
    if await _exists(conn, name):
        return False  # made by the run that held the lock before us
    first = month_start(report_date)
    table = sql.Identifier(name)
    # Defaults (the id sequence) and CHECKs come along; the indexes do not, since
    # ATTACH makes each of the parent's partitioned indexes on the partition itself.
    await conn.execute(
        sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)").format(
            table, sql.Identifier(PARENT)
        )
    )
    await conn.execute(
        sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
            sql.Identifier(PARENT),
            table,
            sql.Literal(first),
            sql.Literal(month_start(first, 1)),
        )
    )
    return True


async def prepare(pool: AsyncConnectionPool, since: date, until: date) -> list[str]:
    """The partitions of every month from `since`'s to `until`'s, made where missing,
    each in a short transaction of its own; the names of those made."""
    made = []
    for first in months(since, until):
        async with pool.connection() as conn, conn.transaction():
            # ATTACH waits for a run making a month inside its own transaction; ahead of
            # time there is no hurry, and a worker's tick must not hang on it.
            await conn.execute("SET LOCAL lock_timeout = '5s'")
            if await ensure_partition(conn, first):
                made.append(partition_name(first))
    return made
