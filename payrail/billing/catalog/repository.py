"""Catalog SQL: products and prices, parameterized, scoped by merchant and mode."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

import orjson
from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

from payrail.tenants.scope import Scope

Conn = AsyncConnection[Any]
Lock = Literal["update", "key share"] | None

# The columns an update may set; the service decides which, never the request.
PRODUCT_UPDATABLE = ("name", "description", "active", "metadata", "default_price_id")
# A price's terms (amount, currency, interval, product) are not among them: they never change.
PRICE_UPDATABLE = ("active", "nickname", "lookup_key", "metadata")


def _lock_clause(lock: Lock) -> str:
    return {None: "", "update": " FOR UPDATE", "key share": " FOR KEY SHARE"}[lock]


def _json(value: dict[str, Any]) -> str:
    return orjson.dumps(value).decode()


async def insert_product(conn: Conn, scope: Scope, row: dict[str, Any]) -> None:
    await conn.execute(
        """
        INSERT INTO products (id, merchant_id, livemode, name, description, active,
                              default_price_id, metadata, created_at, updated_at)
        VALUES (%(id)s, %(merchant_id)s, %(livemode)s, %(name)s, %(description)s, %(active)s,
                %(default_price_id)s, %(metadata)s, %(created_at)s, %(created_at)s)
        """,
        {
            **row,
            "merchant_id": scope.merchant_id,
            "livemode": scope.livemode,
            "metadata": _json(row["metadata"]),
        },
    )


async def fetch_products(
    conn: Conn, scope: Scope, ids: Sequence[str], *, lock: Lock = None
) -> list[dict[str, Any]]:
    query = (
        "SELECT id, livemode, name, description, active, default_price_id, metadata,"
        " created_at, updated_at FROM products"
        " WHERE merchant_id = %s AND livemode = %s AND id = ANY(%s)"
    )
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            query + _lock_clause(lock), (scope.merchant_id, scope.livemode, list(ids))
        )
        rows = {row["id"]: row for row in await cur.fetchall()}
    return [rows[i] for i in ids if i in rows]


async def update_product(
    conn: Conn, product_id: str, changes: dict[str, Any], updated_at: datetime
) -> None:
    assert changes and set(changes) <= set(PRODUCT_UPDATABLE)
    await _update(conn, "products", product_id, {**changes, "updated_at": updated_at})


async def product_has_prices(conn: Conn, product_id: str) -> bool:
    cur = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM prices WHERE product_id = %s)", (product_id,)
    )
    row = await cur.fetchone()
    assert row is not None
    return bool(row[0])


async def delete_product(conn: Conn, product_id: str) -> None:
    await conn.execute("DELETE FROM products WHERE id = %s", (product_id,))


async def insert_price(conn: Conn, scope: Scope, row: dict[str, Any]) -> None:
    await conn.execute(
        """
        INSERT INTO prices (id, merchant_id, livemode, product_id, type, currency, unit_amount,
                            recurring_interval, recurring_interval_count, trial_period_days,
                            active, nickname, lookup_key, metadata, created_at)
        VALUES (%(id)s, %(merchant_id)s, %(livemode)s, %(product_id)s, %(type)s, %(currency)s,
                %(unit_amount)s, %(recurring_interval)s, %(recurring_interval_count)s,
                %(trial_period_days)s, %(active)s, %(nickname)s, %(lookup_key)s, %(metadata)s,
                %(created_at)s)
        """,
        {
            **row,
            "merchant_id": scope.merchant_id,
            "livemode": scope.livemode,
            "metadata": _json(row["metadata"]),
        },
    )


async def fetch_prices(
    conn: Conn, scope: Scope, ids: Sequence[str], *, lock: Lock = None
) -> list[dict[str, Any]]:
    """Price rows in the order of `ids` (missing ones left out), each with its product's
    `product_active`."""
    query = (
        "SELECT p.id, p.livemode, p.product_id, p.type, p.currency, p.unit_amount,"
        " p.recurring_interval, p.recurring_interval_count, p.trial_period_days, p.active,"
        " p.nickname, p.lookup_key, p.metadata, p.used, p.created_at,"
        " pr.active AS product_active"
        " FROM prices p JOIN products pr ON pr.id = p.product_id"
        " WHERE p.merchant_id = %s AND p.livemode = %s AND p.id = ANY(%s)"
    )
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            query + (" FOR UPDATE OF p" if lock == "update" else ""),
            (scope.merchant_id, scope.livemode, list(ids)),
        )
        rows = {row["id"]: row for row in await cur.fetchall()}
    return [rows[i] for i in ids if i in rows]


async def update_price(conn: Conn, price_id: str, changes: dict[str, Any]) -> None:
    assert changes and set(changes) <= set(PRICE_UPDATABLE)
    await _update(conn, "prices", price_id, changes)


async def lock_lookup_key(conn: Conn, scope: Scope, lookup_key: str) -> None:
    """Serialize every writer of one lookup key until commit, so that the holder read
    next is still the holder when the key is taken or moved."""
    key = f"prices.lookup_key|{scope.merchant_id}|{scope.livemode}|{lookup_key}"
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))


async def lookup_key_holder(conn: Conn, scope: Scope, lookup_key: str) -> str | None:
    cur = await conn.execute(
        "SELECT id FROM prices WHERE merchant_id = %s AND livemode = %s AND lookup_key = %s",
        (scope.merchant_id, scope.livemode, lookup_key),
    )
    row = await cur.fetchone()
    return None if row is None else str(row[0])


async def mark_used(conn: Conn, price_ids: Sequence[str]) -> None:
    # `AND NOT used`: a price already used is not written (nor locked) again.
    await conn.execute(
        "UPDATE prices SET used = true WHERE id = ANY(%s) AND NOT used", (list(price_ids),)
    )


async def _update(conn: Conn, table: str, object_id: str, changes: dict[str, Any]) -> None:
    values = {k: _json(v) if k == "metadata" else v for k, v in changes.items()}
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder(k)) for k in values
    )
    await conn.execute(
        sql.SQL("UPDATE {} SET {} WHERE id = {}").format(
            sql.Identifier(table), assignments, sql.Placeholder("object_id")
        ),
        {**values, "object_id": object_id},
    )
