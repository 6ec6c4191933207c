"""Billing SQL shared by subscriptions and invoices: parameterized, scoped by merchant and
mode wherever a caller names an id."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, LiteralString

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from payrail.tenants.scope import Scope

Conn = AsyncConnection[Any]
Table = Literal["subscriptions", "invoices", "invoice_items", "invoice_lines", "credit_notes"]

_JSON = frozenset({"metadata"})


def _value(column: str, value: Any) -> Any:
    return Jsonb(value) if column in _JSON and value is not None else value


async def insert(conn: Conn, table: Table, scope: Scope, row: dict[str, Any]) -> None:
    values = {**row, "merchant_id": scope.merchant_id, "livemode": scope.livemode}
    query = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(table),
        sql.SQL(", ").join(sql.Identifier(k) for k in values),
        sql.SQL(", ").join(sql.Placeholder(k) for k in values),
    )
    await conn.execute(query, {k: _value(k, v) for k, v in values.items()})


async def insert_returning(
    conn: Conn, table: Table, scope: Scope, row: dict[str, Any], conflict: str
) -> bool:
    """Insert unless a row with the same `conflict` key exists; True when inserted."""
    values = {**row, "merchant_id": scope.merchant_id, "livemode": scope.livemode}
    query = sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) DO NOTHING").format(
        sql.Identifier(table),
        sql.SQL(", ").join(sql.Identifier(k) for k in values),
        sql.SQL(", ").join(sql.Placeholder(k) for k in values),
        sql.SQL(conflict),
    )
    cur = await conn.execute(query, {k: _value(k, v) for k, v in values.items()})
    return cur.rowcount == 1


async def update(conn: Conn, table: Table, object_id: str, changes: dict[str, Any]) -> None:
    assert changes and "id" not in changes and "merchant_id" not in changes
    query = sql.SQL("UPDATE {} SET {} WHERE id = {}").format(
        sql.Identifier(table),
        sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder(k)) for k in changes
        ),
        sql.Placeholder("id"),
    )
    await conn.execute(query, {**{k: _value(k, v) for k, v in changes.items()}, "id": object_id})


async def fetch(
    conn: Conn, table: Table, scope: Scope, ids: Sequence[str], *, lock: bool = False
) -> list[dict[str, Any]]:
    """Rows by id in the order asked (missing and other merchants' ids left out)."""
    query = sql.SQL(
        "SELECT * FROM {} WHERE id = ANY(%s) AND merchant_id = %s AND livemode = %s{}"
    ).format(sql.Identifier(table), sql.SQL(" ORDER BY id FOR UPDATE" if lock else ""))
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, (list(ids), scope.merchant_id, scope.livemode))
        found = {row["id"]: row for row in await cur.fetchall()}
    return [found[i] for i in ids if i in found]


async def fetch_one(
    conn: Conn, table: Table, scope: Scope, object_id: str, *, lock: bool = False
) -> dict[str, Any] | None:
    rows = await fetch(conn, table, scope, [object_id], lock=lock)
    return rows[0] if rows else None


async def select(
    conn: Conn, query: LiteralString, params: Sequence[Any] | dict[str, Any]
) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return list(await cur.fetchall())
