"""Vault SQL: wrapped keys and card payment methods. Parameterized, scoped by merchant."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from payrail.tenants.scope import Scope

Conn = AsyncConnection[Any]
Purpose = Literal["data", "fingerprint"]


@dataclass(frozen=True, slots=True)
class WrappedKey:
    id: str
    purpose: Purpose
    master_version: int
    wrapped: bytes


def _key(row: tuple[Any, ...]) -> WrappedKey:
    return WrappedKey(row[0], row[1], row[2], bytes(row[3]))


async def active_key(conn: Conn, purpose: Purpose) -> WrappedKey | None:
    cur = await conn.execute(
        "SELECT id, purpose, master_version, wrapped FROM vault_keys"
        " WHERE purpose = %s AND retired_at IS NULL",
        (purpose,),
    )
    row = await cur.fetchone()
    return _key(row) if row else None


async def key(conn: Conn, key_id: str) -> WrappedKey:
    cur = await conn.execute(
        "SELECT id, purpose, master_version, wrapped FROM vault_keys WHERE id = %s", (key_id,)
    )
    row = await cur.fetchone()
    if row is None:
        raise LookupError(f"vault key {key_id} is missing")
    return _key(row)


INSERT_KEY = """
INSERT INTO vault_keys (id, purpose, master_version, wrapped, created_at)
VALUES (%s, %s, %s, %s, %s)
"""


async def insert_key(conn: Conn, key: WrappedKey, now: datetime) -> None:
    await conn.execute(INSERT_KEY, (key.id, key.purpose, key.master_version, key.wrapped, now))


async def insert_first_key(conn: Conn, key: WrappedKey, now: datetime) -> None:
    """Insert a key unless one of its purpose is active: two processes creating the first
    key race on the partial unique index, and one wins."""
    await conn.execute(
        INSERT_KEY + "ON CONFLICT (purpose) WHERE retired_at IS NULL DO NOTHING",
        (key.id, key.purpose, key.master_version, key.wrapped, now),
    )


async def retire_key(conn: Conn, key_id: str, now: datetime) -> None:
    await conn.execute("UPDATE vault_keys SET retired_at = %s WHERE id = %s", (now, key_id))


async def lock_keys(conn: Conn) -> list[WrappedKey]:
    cur = await conn.execute(
        "SELECT id, purpose, master_version, wrapped FROM vault_keys ORDER BY id FOR UPDATE"
    )
    return [_key(row) for row in await cur.fetchall()]


async def rewrap(conn: Conn, key_id: str, master_version: int, wrapped: bytes) -> None:
    await conn.execute(
        "UPDATE vault_keys SET master_version = %s, wrapped = %s WHERE id = %s",
        (master_version, wrapped, key_id),
    )


async def insert_payment_method(conn: Conn, scope: Scope, row: dict[str, Any]) -> None:
    await conn.execute(
        """
        INSERT INTO payment_methods (id, merchant_id, livemode, type, brand, funding, bin,
            last4, exp_month, exp_year, fingerprint, data_key_id, number_sealed,
            billing_details, metadata, created_at)
        VALUES (%(id)s, %(merchant_id)s, %(livemode)s, 'card', %(brand)s, %(funding)s,
            %(bin)s, %(last4)s, %(exp_month)s, %(exp_year)s, %(fingerprint)s,
            %(data_key_id)s, %(number_sealed)s, %(billing_details)s, %(metadata)s,
            %(created_at)s)
        """,
        {
            **row,
            "merchant_id": scope.merchant_id,
            "livemode": scope.livemode,
            "billing_details": orjson.dumps(row["billing_details"]).decode(),
            "metadata": orjson.dumps(row["metadata"]).decode(),
        },
    )


# Everything but the sealed number: only `sealed_number` reads that, for a connector.
_PUBLIC = """
SELECT id, livemode, type, customer_id, brand, funding, last4, exp_month, exp_year,
       fingerprint, billing_details, metadata, created_at
FROM payment_methods
"""


async def fetch_payment_methods(
    conn: Conn, scope: Scope, ids: Sequence[str]
) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            _PUBLIC + " WHERE merchant_id = %s AND livemode = %s AND id = ANY(%s)",
            (scope.merchant_id, scope.livemode, list(ids)),
        )
        rows = {row["id"]: row for row in await cur.fetchall()}
    return [rows[i] for i in ids if i in rows]


async def sealed_number(
    conn: Conn, scope: Scope, payment_method_id: str
) -> tuple[str, bytes, int, int] | None:
    """(data key id, sealed number, exp_month, exp_year) of one card."""
    cur = await conn.execute(
        "SELECT data_key_id, number_sealed, exp_month, exp_year FROM payment_methods"
        " WHERE merchant_id = %s AND livemode = %s AND id = %s",
        (scope.merchant_id, scope.livemode, payment_method_id),
    )
    row = await cur.fetchone()
    return (row[0], bytes(row[1]), row[2], row[3]) if row else None
