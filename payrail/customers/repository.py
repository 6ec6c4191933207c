"""Customers SQL: parameterized, scoped by merchant and mode."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

from payrail.tenants.scope import Scope

Conn = AsyncConnection[Any]

# The columns an update may set; the service decides which, never the request.
UPDATABLE = (
    "email",
    "name",
    "phone",
    "description",
    "metadata",
    "default_payment_method_id",
    "time_zone",
)


async def insert_customer(conn: Conn, scope: Scope, row: dict[str, Any]) -> None:
    await conn.execute(
        """
        INSERT INTO customers (id, merchant_id, livemode, email, name, phone, description,
                               metadata, test_clock_id, time_zone, created_at)
        VALUES (%(id)s, %(merchant_id)s, %(livemode)s, %(email)s, %(name)s, %(phone)s,
                %(description)s, %(metadata)s, %(test_clock_id)s, %(time_zone)s,
                %(created_at)s)
        """,
        {
            **row,
            "merchant_id": scope.merchant_id,
            "livemode": scope.livemode,
            "metadata": orjson.dumps(row["metadata"]).decode(),
        },
    )


async def fetch_customers(
    conn: Conn, scope: Scope, ids: Sequence[str], *, lock: bool = False
) -> list[dict[str, Any]]:
    query = (
        "SELECT id, livemode, email, name, phone, description, default_payment_method_id,"
        " metadata, test_clock_id, time_zone, created_at, deleted_at FROM customers"
        " WHERE merchant_id = %s AND livemode = %s AND id = ANY(%s)"
    )
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            query + (" FOR UPDATE" if lock else ""),
            (scope.merchant_id, scope.livemode, list(ids)),
        )
        rows = {row["id"]: row for row in await cur.fetchall()}
    return [rows[i] for i in ids if i in rows]


async def update_customer(conn: Conn, customer_id: str, changes: dict[str, Any]) -> None:
    assert changes and set(changes) <= set(UPDATABLE)
    values = {k: orjson.dumps(v).decode() if k == "metadata" else v for k, v in changes.items()}
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder(k)) for k in values
    )
    await conn.execute(
        sql.SQL("UPDATE customers SET {} WHERE id = {}").format(
            assignments, sql.Placeholder("customer_id")
        ),
        {**values, "customer_id": customer_id},
    )


async def mark_deleted(conn: Conn, customer_id: str, at: datetime) -> None:
    await conn.execute("UPDATE customers SET deleted_at = %s WHERE id = %s", (at, customer_id))


async def attach(conn: Conn, scope: Scope, payment_method_id: str, customer_id: str) -> bool:
    """Attach unless attached to another customer; one statement, so two concurrent
    attaches of one card to two customers cannot both win."""
    cur = await conn.execute(
        "UPDATE payment_methods SET customer_id = %s"
        " WHERE merchant_id = %s AND livemode = %s AND id = %s"
        " AND (customer_id IS NULL OR customer_id = %s)",
        (customer_id, scope.merchant_id, scope.livemode, payment_method_id, customer_id),
    )
    return cur.rowcount == 1


async def detach(conn: Conn, scope: Scope, payment_method_id: str) -> str | None:
    """Detach; the customer it was attached to, or None if it was not attached. Call in a
    transaction: the row is locked between the read and the write."""
    cur = await conn.execute(
        "SELECT customer_id FROM payment_methods"
        " WHERE merchant_id = %s AND livemode = %s AND id = %s FOR UPDATE",
        (scope.merchant_id, scope.livemode, payment_method_id),
    )
    row = await cur.fetchone()
    if row is None or row[0] is None:
        return None
    await conn.execute(
        "UPDATE payment_methods SET customer_id = NULL WHERE id = %s", (payment_method_id,)
    )
    customer_id: str = row[0]
    return customer_id
