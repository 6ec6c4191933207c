"""Test clocks SQL: parameterized, scoped by merchant and mode."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

from payrail.tenants.scope import Scope

Conn = AsyncConnection[Any]
Lock = Literal["update", "share"] | None
LOCKS: dict[Lock, sql.Composable] = {
    None: sql.SQL(""),
    "update": sql.SQL(" FOR UPDATE"),
    "share": sql.SQL(" FOR SHARE"),
}

COLUMNS = (
    "id",
    "merchant_id",
    "livemode",
    "name",
    "frozen_time",
    "status",
    "deletes_after",
    "created_at",
    "deleted_at",
)


def _columns(table: str) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(table, column) for column in COLUMNS)


async def insert_clock(conn: Conn, scope: Scope, row: dict[str, Any]) -> None:
    await conn.execute(
        """
        INSERT INTO test_clocks (id, merchant_id, livemode, name, frozen_time, status,
                                 deletes_after, created_at)
        VALUES (%(id)s, %(merchant_id)s, %(livemode)s, %(name)s, %(frozen_time)s, 'ready',
                %(deletes_after)s, %(created_at)s)
        """,
        {**row, "merchant_id": scope.merchant_id, "livemode": scope.livemode},
    )


async def fetch_clocks(
    conn: Conn, scope: Scope, ids: Sequence[str], *, lock: Lock = None
) -> list[dict[str, Any]]:
    """The clocks of the scope with these ids, in the order asked, deleted ones included."""
    query = sql.SQL(
        "SELECT {} FROM test_clocks c WHERE merchant_id = %s AND livemode = %s AND id = ANY(%s){}"
    ).format(_columns("c"), LOCKS[lock])
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, (scope.merchant_id, scope.livemode, list(ids)))
        rows = {row["id"]: row for row in await cur.fetchall()}
    return [rows[i] for i in ids if i in rows]


async def start_advance(conn: Conn, clock_id: str, target: datetime) -> None:
    await conn.execute(
        # Billing starts from the old frozen time and steps up to the new one.
        "UPDATE test_clocks SET billing_time = frozen_time, frozen_time = %s,"
        " status = 'advancing' WHERE id = %s",
        (target, clock_id),
    )


async def mark_deleted(conn: Conn, clock_id: str, at: datetime) -> None:
    await conn.execute("UPDATE test_clocks SET deleted_at = %s WHERE id = %s", (at, clock_id))


async def subscription_intervals(conn: Conn, clock_id: str) -> list[tuple[str, int]]:
    """(interval, interval_count) of the prices of the clock's subscriptions that have not
    ended: what bounds how far the clock may advance in one step."""
    cur = await conn.execute(
        """
        SELECT DISTINCT p.recurring_interval, p.recurring_interval_count
        FROM subscriptions s JOIN prices p ON p.id = s.price_id
        WHERE s.test_clock_id = %s AND s.ended_at IS NULL
          AND p.recurring_interval IS NOT NULL
        """,
        (clock_id,),
    )
    return [(interval, count) for interval, count in await cur.fetchall()]


async def mark_ready_when_done(conn: Conn, now: datetime) -> list[dict[str, Any]]:
    """Flip to ready every advancing clock whose subscriptions and invoices have nothing
    left to do at or before its frozen time, and return them as they now are.

    Work is left while a subscription's next action, an invoice's next payment attempt
    or its dunning final action falls at or before the frozen time; while a collection
    attempt awaits its outcome (the engine resolves it); and while a row is under a lease
    that has not expired (a worker is on it, whatever it is due at). Clocks another caller
    holds are skipped, not waited for: that caller decides them, so each clock is flipped
    (and its event written) once."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            sql.SQL("""
            WITH done AS (
                SELECT c.id FROM test_clocks c
                WHERE c.status = 'advancing' AND c.deleted_at IS NULL
                  AND NOT EXISTS (
                      SELECT 1 FROM subscriptions s
                      WHERE s.test_clock_id = c.id
                        AND (s.next_action_at <= c.frozen_time OR s.lease_expires_at >= %(now)s))
                  AND NOT EXISTS (
                      SELECT 1 FROM invoices i
                      WHERE i.test_clock_id = c.id
                        AND (i.next_payment_attempt <= c.frozen_time
                             OR i.final_action_at <= c.frozen_time
                             OR i.payment_intent_id IS NOT NULL
                             OR i.lease_expires_at >= %(now)s))
                ORDER BY c.seq
                FOR UPDATE OF c SKIP LOCKED
            )
            UPDATE test_clocks t SET status = 'ready' FROM done
            WHERE t.id = done.id AND t.status = 'advancing'
            RETURNING {}
            """).format(_columns("t")),
            {"now": now},
        )
        return list(await cur.fetchall())
