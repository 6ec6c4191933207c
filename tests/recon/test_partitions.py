"""The monthly partitions of provider transactions: made by attaching a table, they are
what CREATE TABLE ... PARTITION OF makes, and making one holds up no other run."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from payrail.recon.partitions import ensure_partition, month_start, months, prepare

PARENT = "recon_provider_transactions"

COLUMNS = (
    "report_id, report_date, merchant_id, livemode, connector_account_id, line, kind,"
    " category, reference, payment_reference, merchant_reference, payout_reference,"
    " currency, amount, fee, net, occurred_at"
)
# A USD charge (day, reference, day again: it was made on its report date); returns the
# partition the row went to.
_ROW = (
    f"INSERT INTO {PARENT} ({COLUMNS})"
    " VALUES ('rpt_x', %s, 'mer_x', false, 'ca_x', 1, 'charge', 'charge', %s, '', '', '',"
    " 'USD', 1000, 59, 941, %s::date + time '10:00')"
    " RETURNING tableoid::regclass::text"
)

Conn = psycopg.AsyncConnection[Any]


async def rows(conn: Conn, query: str, *params: Any) -> list[tuple[Any, ...]]:
    return await (await conn.execute(query, params)).fetchall()


async def shape(conn: Conn, table: str) -> dict[str, Any]:
    """A table's columns, defaults, constraints, partition bounds and indexes, with its
    own name written T: what two partitions of different months must share."""

    def plain(text: str | None) -> str | None:
        return None if text is None else text.replace(table, "T")

    columns = await rows(
        conn,
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,"
        " pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a LEFT JOIN pg_attrdef d"
        " ON (d.adrelid, d.adnum) = (a.attrelid, a.attnum)"
        " WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped"
        " ORDER BY a.attnum",
        table,
    )
    checks = await rows(
        conn,
        "SELECT contype, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = %s::regclass AND contype <> 'n' ORDER BY 1, 2",
        table,
    )
    indexes = await rows(
        conn,
        "SELECT c.relname, pg_get_indexdef(i.indexrelid), i.indisunique, i.indisvalid,"
        " h.inhparent::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " LEFT JOIN pg_inherits h ON h.inhrelid = i.indexrelid"
        " WHERE i.indrelid = %s::regclass ORDER BY 1",
        table,
    )
    [(bound,)] = await rows(
        conn, "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE oid = %s::regclass", table
    )
    return {
        "columns": columns,
        "checks": checks,
        "indexes": [tuple(plain(v) if isinstance(v, str) else v for v in i) for i in indexes],
        "partition of": bound is not None,
    }


async def parents_indexes(conn: Conn) -> list[str]:
    found = await rows(
        conn,
        "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = %s::regclass",
        PARENT,
    )
    return sorted(name for (name,) in found)


def test_months_run_from_the_first_days_month_to_the_last_days_across_a_year() -> None:
    assert month_start(date(2025, 12, 31)) == date(2025, 12, 1)
    assert month_start(date(2025, 11, 15), 2) == date(2026, 1, 1)
    assert months(date(2025, 11, 30), date(2026, 2, 1)) == [
        date(2025, 11, 1),
        date(2025, 12, 1),
        date(2026, 1, 1),
        date(2026, 2, 1),
    ]
    assert months(date(2026, 3, 1), date(2026, 2, 28)) == []


async def test_an_attached_partition_is_what_partition_of_makes(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        async with conn.transaction():
            assert await ensure_partition(conn, date(2026, 2, 14))
        await conn.execute(
            f"CREATE TABLE {PARENT}_2026_03 PARTITION OF {PARENT}"
            " FOR VALUES FROM ('2026-03-01') TO ('2026-04-01')"
        )
        attached = await shape(conn, f"{PARENT}_2026_02")
        made = await shape(conn, f"{PARENT}_2026_03")
        assert attached == made
        # Each of the parent's indexes, unique or not, has its index on the partition,
        # and stays valid: every partition is covered.
        assert sorted(parent for *_, parent in attached["indexes"]) == await parents_indexes(conn)
        assert attached["indexes"], "the parent's indexes reach the partition"
        assert all(valid for _, _, _, valid, _ in attached["indexes"])
        invalid = await rows(
            conn,
            "SELECT indexrelid::regclass::text FROM pg_index"
            " WHERE indrelid = %s::regclass AND NOT indisvalid",
            PARENT,
        )
        assert invalid == []
        [(landed,)] = await rows(conn, _ROW, date(2026, 2, 28), "ch_feb", date(2026, 2, 28))
        assert landed == f"{PARENT}_2026_02"
        [(net,)] = await rows(conn, f"SELECT net FROM {PARENT} WHERE reference = 'ch_feb'")
        assert net == 941


async def test_making_a_months_partition_holds_up_no_run_of_another_month(
    pool: AsyncConnectionPool,
) -> None:
    """While February's partition is being made, in a transaction not yet committed,
    another session writes January's rows through the parent (INSERT and COPY, as runs
    do) and reads them back, without waiting: its lock_timeout would end it otherwise."""
    async with pool.connection() as conn, conn.transaction():
        await ensure_partition(conn, date(2026, 1, 1))
    async with pool.connection() as making, making.transaction(force_rollback=True):
        assert await ensure_partition(making, date(2026, 2, 1))
        held = await rows(
            making,
            "SELECT relation::regclass::text, mode FROM pg_locks WHERE pid = pg_backend_pid()"
            " AND relation IN (SELECT %s::regclass UNION ALL"
            "  SELECT indexrelid FROM pg_index WHERE indrelid = %s::regclass)",
            PARENT,
            PARENT,
        )
        # Nothing that conflicts with ROW EXCLUSIVE (COPY, INSERT) or ACCESS SHARE.
        assert {mode for _, mode in held} <= {"AccessShareLock", "ShareUpdateExclusiveLock"}
        async with pool.connection() as other, other.transaction(force_rollback=True):
            await other.execute("SET LOCAL lock_timeout = '2s'")
            await other.execute(_ROW, (date(2026, 1, 31), "ch_jan", date(2026, 1, 31)))
            copied = (
                *("rpt_y", date(2026, 1, 30), "mer_y", False, "ca_y", 1, "charge", "charge"),
                *("ch_copied", "", "", "", "USD", 500, 45, 455, "2026-01-30 10:00Z"),
            )
            async with other.cursor().copy(f"COPY {PARENT} ({COLUMNS}) FROM STDIN") as copy:
                await copy.write_row(copied)
            found = await rows(other, f"SELECT reference FROM {PARENT} ORDER BY reference")
            assert found == [("ch_copied",), ("ch_jan",)]


async def test_two_first_runs_of_a_month_make_its_partition_once(
    pool: AsyncConnectionPool,
) -> None:
    """The second waits for the first to commit, and finds the partition made."""
    async with pool.connection() as first, pool.connection() as second:

        async def second_run() -> bool:
            async with second.transaction():
                return await ensure_partition(second, date(2026, 2, 20))

        async with first.transaction():
            assert await ensure_partition(first, date(2026, 2, 1))
            racing = asyncio.create_task(second_run())
            done, _ = await asyncio.wait([racing], timeout=0.5)
            assert not done, "the second made February's partition beside the first"
        assert await racing is False
        partitions = await rows(
            first,
            "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = %s::regclass",
            PARENT,
        )
        assert partitions == [(f"{PARENT}_2026_02",)]


async def test_months_made_ahead_are_made_once_and_take_their_rows(
    pool: AsyncConnectionPool,
) -> None:
    made = await prepare(pool, date(2025, 12, 29), date(2026, 2, 1))
    assert made == [f"{PARENT}_2025_12", f"{PARENT}_2026_01", f"{PARENT}_2026_02"]
    assert await prepare(pool, date(2025, 12, 29), date(2026, 2, 1)) == []
    async with pool.connection() as conn:
        for day, month in [(date(2025, 12, 31), "2025_12"), (date(2026, 2, 1), "2026_02")]:
            [(landed,)] = await rows(conn, _ROW, day, f"ch_{day}", day)
            assert landed == f"{PARENT}_{month}"
