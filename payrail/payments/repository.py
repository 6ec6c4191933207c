"""Payments SQL: parameterized, scoped by merchant and mode where a caller names an id."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from payrail.tenants.scope import Scope

Conn = AsyncConnection[Any]
Table = Literal["payment_intents", "charges", "refunds", "disputes"]

_JSON = frozenset({"metadata", "last_payment_error"})

# The columns a service may change after insert, per table; ids, owners, amounts asked
# for and creation times never change.
_UPDATABLE: dict[Table, frozenset[str]] = {
    "payment_intents": frozenset(
        {
            "status",
            "capture_method",
            "payment_method_id",
            "amount_capturable",
            "amount_received",
            "amount_refunded",
            "description",
            "metadata",
            "last_payment_error",
            "latest_charge_id",
            "cancellation_reason",
            "canceled_at",
            "updated_at",
        }
    ),
    "charges": frozenset(
        {
            "status",
            "provider_id",
            "amount_captured",
            "fee",
            "failure_code",
            "failure_message",
            "failure_decision",
            "pending_operation",
            "operation_amount",
            "checks_done",
            "next_check_at",
            "last_event_sequence",
            "updated_at",
        }
    ),
    "refunds": frozenset(
        {"status", "provider_id", "failure_reason", "checks_done", "next_check_at", "updated_at"}
    ),
    "disputes": frozenset({"status", "last_event_sequence", "updated_at"}),
}


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


async def update(conn: Conn, table: Table, object_id: str, changes: dict[str, Any]) -> None:
    assert changes and set(changes) <= _UPDATABLE[table], set(changes) - _UPDATABLE[table]
    query = sql.SQL("UPDATE {} SET {} WHERE id = {}").format(
        sql.Identifier(table),
        sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder(k)) for k in changes
        ),
        sql.Placeholder("__id"),
    )
    await conn.execute(query, {**{k: _value(k, v) for k, v in changes.items()}, "__id": object_id})


async def fetch(
    conn: Conn, table: Table, scope: Scope, ids: Sequence[str], *, lock: bool = False
) -> list[dict[str, Any]]:
    """Rows in the order of `ids`; ids of other merchants or modes are simply not found."""
    query = sql.SQL(
        "SELECT * FROM {} WHERE merchant_id = %s AND livemode = %s AND id = ANY(%s){}"
    ).format(sql.Identifier(table), sql.SQL(" FOR UPDATE" if lock else ""))
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, (scope.merchant_id, scope.livemode, list(ids)))
        rows = {row["id"]: row for row in await cur.fetchall()}
    return [rows[i] for i in ids if i in rows]


async def fetch_one(
    conn: Conn, table: Table, scope: Scope, object_id: str, *, lock: bool = False
) -> dict[str, Any] | None:
    rows = await fetch(conn, table, scope, [object_id], lock=lock)
    return rows[0] if rows else None


async def lock_intent_of(conn: Conn, scope: Scope, charge_id: str) -> dict[str, Any] | None:
    """The intent a charge belongs to, locked (FOR UPDATE); None for no such charge."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT * FROM payment_intents WHERE merchant_id = %(m)s AND livemode = %(l)s"
            " AND id = (SELECT payment_intent_id FROM charges"
            " WHERE merchant_id = %(m)s AND livemode = %(l)s AND id = %(c)s) FOR UPDATE",
            {"m": scope.merchant_id, "l": scope.livemode, "c": charge_id},
        )
        return await cur.fetchone()


async def by_provider_id(
    conn: Conn, table: Literal["charges", "refunds", "disputes"], connector: str, provider_id: str
) -> dict[str, Any] | None:
    """The row a provider's id names at one connector account (webhooks know no merchant:
    the account they arrived for does)."""
    query: sql.Composable
    if table == "refunds":
        query = sql.SQL(
            "SELECT r.* FROM refunds r JOIN charges c ON c.id = r.charge_id"
            " WHERE c.connector_account_id = %s AND r.provider_id = %s"
        )
    else:
        query = sql.SQL(
            "SELECT * FROM {} WHERE connector_account_id = %s AND provider_id = %s"
        ).format(sql.Identifier(table))
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, (connector, provider_id))
        return await cur.fetchone()


async def charges_of(conn: Conn, intent_id: str) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT * FROM charges WHERE payment_intent_id = %s ORDER BY seq", (intent_id,)
        )
        return await cur.fetchall()


async def claim_due(
    conn: Conn,
    table: Literal["charges", "refunds"],
    now: datetime,
    lease_until: datetime,
    limit: int,
    only: str | None = None,
) -> list[dict[str, Any]]:
    """Rows whose check is due, taken by this worker until `lease_until`: other workers
    skip them meanwhile, and take them again if this one dies before it is done."""
    narrow = sql.SQL(" AND id = %(only)s") if only is not None else sql.SQL("")
    query = sql.SQL(
        """
        WITH due AS (
            SELECT id FROM {table} WHERE next_check_at <= %(now)s{narrow}
            ORDER BY next_check_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED
        )
        UPDATE {table} t SET next_check_at = %(lease_until)s
          FROM due WHERE t.id = due.id
        RETURNING t.*
        """
    ).format(table=sql.Identifier(table), narrow=narrow)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            query, {"now": now, "lease_until": lease_until, "limit": limit, "only": only}
        )
        return await cur.fetchall()
