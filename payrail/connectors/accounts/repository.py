"""Connector accounts and routing rules SQL. Parameterized, scoped by merchant and mode.

Only `sealed_credentials` reads the sealed credentials; every other read leaves them out,
so no API object can be built from a row that holds them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from payrail.tenants.scope import Scope

Conn = AsyncConnection[Any]

_ACCOUNT_COLUMNS = """
SELECT id, livemode, provider, name, base_url, currencies, enabled, credentials_last4,
       metadata, created_at, updated_at
FROM connector_accounts
WHERE merchant_id = %s AND livemode = %s
"""


async def insert_account(conn: Conn, scope: Scope, row: dict[str, Any]) -> None:
    await conn.execute(
        """
        INSERT INTO connector_accounts (id, merchant_id, livemode, provider, name, base_url,
            currencies, enabled, data_key_id, credentials_sealed, credentials_last4, metadata,
            created_at, updated_at)
        VALUES (%(id)s, %(merchant_id)s, %(livemode)s, %(provider)s, %(name)s, %(base_url)s,
            %(currencies)s, %(enabled)s, %(data_key_id)s, %(credentials_sealed)s,
            %(credentials_last4)s, %(metadata)s, %(created_at)s, %(updated_at)s)
        """,
        {
            **row,
            "merchant_id": scope.merchant_id,
            "livemode": scope.livemode,
            "metadata": orjson.dumps(row["metadata"]).decode(),
        },
    )


async def fetch_accounts(conn: Conn, scope: Scope, ids: Sequence[str]) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            _ACCOUNT_COLUMNS + " AND id = ANY(%s)", (scope.merchant_id, scope.livemode, list(ids))
        )
        rows = {row["id"]: row for row in await cur.fetchall()}
    return [rows[i] for i in ids if i in rows]


async def lock_account(conn: Conn, scope: Scope, account_id: str) -> dict[str, Any] | None:
    """The account's row, locked until the transaction ends: concurrent updates (a
    metadata merge, say) apply one after the other, each to the other's result."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            _ACCOUNT_COLUMNS + " AND id = %s FOR UPDATE",
            (scope.merchant_id, scope.livemode, account_id),
        )
        return await cur.fetchone()


async def update_account(
    conn: Conn, scope: Scope, row: dict[str, Any], sealed: tuple[str, bytes] | None
) -> None:
    """Write the account's changeable fields; the credentials only when `sealed` (data
    key id, sealed secret) is given."""
    data_key_id, credentials_sealed = sealed if sealed is not None else (None, None)
    await conn.execute(
        """
        UPDATE connector_accounts SET
            name = %(name)s, base_url = %(base_url)s, currencies = %(currencies)s,
            enabled = %(enabled)s, metadata = %(metadata)s, updated_at = %(updated_at)s,
            credentials_last4 = %(credentials_last4)s,
            data_key_id = coalesce(%(data_key_id)s, data_key_id),
            credentials_sealed = coalesce(%(credentials_sealed)s, credentials_sealed)
        WHERE merchant_id = %(merchant_id)s AND livemode = %(livemode)s AND id = %(id)s
        """,
        {
            "name": row["name"],
            "base_url": row["base_url"],
            "currencies": row["currencies"],
            "enabled": row["enabled"],
            "metadata": orjson.dumps(row["metadata"]).decode(),
            "updated_at": row["updated_at"],
            "credentials_last4": row["credentials_last4"],
            "data_key_id": data_key_id,
            "credentials_sealed": credentials_sealed,
            "merchant_id": scope.merchant_id,
            "livemode": scope.livemode,
            "id": row["id"],
        },
    )


async def sealed_credentials(
    conn: Conn, scope: Scope, account_id: str
) -> tuple[str, str | None, str, bytes] | None:
    """(provider, base_url, data key id, sealed credentials) of one account."""
    cur = await conn.execute(
        "SELECT provider, base_url, data_key_id, credentials_sealed FROM connector_accounts"
        " WHERE merchant_id = %s AND livemode = %s AND id = %s",
        (scope.merchant_id, scope.livemode, account_id),
    )
    row = await cur.fetchone()
    return (row[0], row[1], row[2], bytes(row[3])) if row else None


async def account_scope(conn: Conn, account_id: str) -> tuple[str, bool] | None:
    """(merchant id, livemode) of an account, whoever's it is: a provider's webhook names
    only the account it is for, and that account says whose it is."""
    cur = await conn.execute(
        "SELECT merchant_id, livemode FROM connector_accounts WHERE id = %s", (account_id,)
    )
    row = await cur.fetchone()
    return (row[0], row[1]) if row else None


async def account_modes(conn: Conn, merchant_id: str, ids: Sequence[str]) -> dict[str, bool]:
    """The mode of each of the merchant's accounts among `ids`, in either mode: to tell a
    caller that an id is of the other mode rather than unknown (Stripe does the same)."""
    cur = await conn.execute(
        "SELECT id, livemode FROM connector_accounts WHERE merchant_id = %s AND id = ANY(%s)",
        (merchant_id, list(ids)),
    )
    return {row[0]: row[1] for row in await cur.fetchall()}


async def insert_rule(conn: Conn, scope: Scope, row: dict[str, Any]) -> None:
    await conn.execute(
        """
        INSERT INTO routing_rules (id, merchant_id, livemode, priority, conditions,
            connector_accounts, created_at)
        VALUES (%(id)s, %(merchant_id)s, %(livemode)s, %(priority)s, %(conditions)s,
            %(connector_accounts)s, %(created_at)s)
        """,
        {
            **row,
            "merchant_id": scope.merchant_id,
            "livemode": scope.livemode,
            "conditions": orjson.dumps(row["conditions"]).decode(),
        },
    )


_RULE_COLUMNS = """
SELECT id, livemode, priority, conditions, connector_accounts, created_at
FROM routing_rules
WHERE merchant_id = %s AND livemode = %s
"""


async def fetch_rules(conn: Conn, scope: Scope, ids: Sequence[str]) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            _RULE_COLUMNS + " AND id = ANY(%s)", (scope.merchant_id, scope.livemode, list(ids))
        )
        rows = {row["id"]: row for row in await cur.fetchall()}
    return [rows[i] for i in ids if i in rows]


async def delete_rule(conn: Conn, scope: Scope, rule_id: str) -> dict[str, Any] | None:
    """Delete one rule; its row as it was, or None if there was none."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "DELETE FROM routing_rules WHERE merchant_id = %s AND livemode = %s AND id = %s"
            " RETURNING id, livemode, priority, conditions, connector_accounts, created_at",
            (scope.merchant_id, scope.livemode, rule_id),
        )
        return await cur.fetchone()


async def routing(
    conn: Conn, scope: Scope
) -> tuple[list[dict[str, Any]], list[tuple[str, bool, list[str]]]]:
    """Every rule, by priority then age, and every account (id, enabled, currencies),
    oldest first: the order in which accounts are offered when no rule matches."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            _RULE_COLUMNS + " ORDER BY priority, seq", (scope.merchant_id, scope.livemode)
        )
        rules = await cur.fetchall()
    found = await conn.execute(
        "SELECT id, enabled, currencies FROM connector_accounts"
        " WHERE merchant_id = %s AND livemode = %s ORDER BY seq",
        (scope.merchant_id, scope.livemode),
    )
    accounts = [(row[0], row[1], row[2]) for row in await found.fetchall()]
    return rules, accounts
