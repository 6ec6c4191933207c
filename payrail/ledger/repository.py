"""Ledger SQL. Every statement is parameterized and scoped to (merchant, livemode)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from payrail.ledger.postings import BalanceTotals, Entry, Status
from payrail.tenants.scope import Scope

Conn = AsyncConnection[Any]


@dataclass(frozen=True, slots=True)
class TransactionHeader:
    id: str
    external_id: str
    content_hash: bytes
    status: Status
    description: str | None
    metadata: dict[str, str]
    reverses_id: str | None
    effective_at: datetime


async def insert_account(
    conn: Conn, scope: Scope, account_id: str, fields: dict[str, Any], created_at: datetime
) -> None:
    await conn.execute(
        """
        INSERT INTO ledger_accounts (id, merchant_id, livemode, name, type, currency,
            normal_balance, non_negative, balance_shards, metadata, created_at)
        VALUES (%(id)s, %(merchant_id)s, %(livemode)s, %(name)s, %(type)s, %(currency)s,
            %(normal_balance)s, %(non_negative)s, %(balance_shards)s, %(metadata)s, %(created_at)s)
        """,
        {
            **fields,
            "id": account_id,
            "merchant_id": scope.merchant_id,
            "livemode": scope.livemode,
            "metadata": orjson.dumps(fields["metadata"]).decode(),
            "created_at": created_at,
        },
    )
    await conn.execute(
        """
        INSERT INTO ledger_balances (account_id, shard, normal_balance, non_negative)
        SELECT %s, shard, %s, %s FROM generate_series(0, %s - 1) AS shard
        """,
        (account_id, fields["normal_balance"], fields["non_negative"], fields["balance_shards"]),
    )


FETCH_ACCOUNTS = """
SELECT
    a.id, a.livemode, a.name, a.type, a.currency, a.normal_balance, a.non_negative,
    a.balance_shards, a.metadata, a.created_at,
    sum(b.debits_pending)::bigint AS debits_pending,
    sum(b.credits_pending)::bigint AS credits_pending,
    sum(b.debits_posted)::bigint AS debits_posted,
    sum(b.credits_posted)::bigint AS credits_posted
FROM ledger_accounts a JOIN ledger_balances b ON b.account_id = a.id
WHERE a.merchant_id = %s AND a.livemode = %s AND a.id = ANY(%s)
GROUP BY a.id
"""


async def fetch_accounts(conn: Conn, scope: Scope, ids: Sequence[str]) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            FETCH_ACCOUNTS,
            (scope.merchant_id, scope.livemode, list(ids)),
        )
        rows = {row["id"]: row for row in await cur.fetchall()}
    return [rows[i] for i in ids if i in rows]


def totals(row: dict[str, Any]) -> BalanceTotals:
    return BalanceTotals(
        row["debits_pending"], row["credits_pending"], row["debits_posted"], row["credits_posted"]
    )


async def account_currencies(conn: Conn, scope: Scope, ids: Sequence[str]) -> dict[str, str]:
    cur = await conn.execute(
        "SELECT id, currency FROM ledger_accounts"
        " WHERE merchant_id = %s AND livemode = %s AND id = ANY(%s)",
        (scope.merchant_id, scope.livemode, list(ids)),
    )
    return {row[0]: row[1] for row in await cur.fetchall()}


async def existing_external_ids(
    conn: Conn, scope: Scope, external_ids: Sequence[str]
) -> dict[str, tuple[str, bytes]]:
    cur = await conn.execute(
        "SELECT external_id, id, content_hash FROM ledger_transactions"
        " WHERE merchant_id = %s AND livemode = %s AND external_id = ANY(%s)",
        (scope.merchant_id, scope.livemode, list(external_ids)),
    )
    return {row[0]: (row[1], bytes(row[2])) for row in await cur.fetchall()}


# One statement writes every header and entry of a batch: one round trip for N postings.
INSERT_TRANSACTIONS = """
WITH tx AS (
    INSERT INTO ledger_transactions (id, merchant_id, livemode, external_id, content_hash,
        status, description, metadata, reverses_id, effective_at, created_at, posted_at)
    SELECT t.id, %(merchant_id)s, %(livemode)s, t.external_id, t.content_hash, t.status,
           t.description, t.metadata, t.reverses_id, coalesce(t.effective_at, %(now)s),
           %(now)s, CASE WHEN t.status = 'posted' THEN %(now)s END
    FROM unnest(%(ids)s::text[], %(external_ids)s::text[], %(hashes)s::bytea[],
                %(statuses)s::text[], %(descriptions)s::text[], %(metadata)s::jsonb[],
                %(reverses)s::text[], %(effective)s::timestamptz[])
         AS t(id, external_id, content_hash, status, description, metadata, reverses_id,
              effective_at)
    RETURNING id
)
INSERT INTO ledger_entries (transaction_id, account_id, merchant_id, livemode, currency,
                            direction, amount, phase)
SELECT e.transaction_id, e.account_id, %(merchant_id)s, %(livemode)s, e.currency,
       e.direction, e.amount, e.phase
FROM unnest(%(e_tx)s::text[], %(e_account)s::text[], %(e_currency)s::text[],
            %(e_direction)s::text[], %(e_amount)s::bigint[], %(e_phase)s::text[])
     AS e(transaction_id, account_id, currency, direction, amount, phase)
JOIN tx ON tx.id = e.transaction_id
"""


async def insert_transactions(
    conn: Conn,
    scope: Scope,
    now: datetime,
    headers: Sequence[TransactionHeader],
    entries: Sequence[tuple[str, Entry]],
) -> None:
    await conn.execute(
        INSERT_TRANSACTIONS,
        {
            "merchant_id": scope.merchant_id,
            "livemode": scope.livemode,
            "now": now,
            "ids": [h.id for h in headers],
            "external_ids": [h.external_id for h in headers],
            "hashes": [h.content_hash for h in headers],
            "statuses": [h.status for h in headers],
            "descriptions": [h.description for h in headers],
            "metadata": [orjson.dumps(h.metadata).decode() for h in headers],
            "reverses": [h.reverses_id for h in headers],
            "effective": [h.effective_at for h in headers],
            "e_tx": [tx for tx, _ in entries],
            "e_account": [e.account_id for _, e in entries],
            "e_currency": [e.currency for _, e in entries],
            "e_direction": [e.direction for _, e in entries],
            "e_amount": [e.amount for _, e in entries],
            "e_phase": [e.phase for _, e in entries],
        },
    )


async def append_entries(
    conn: Conn, scope: Scope, transaction_id: str, entries: Sequence[Entry]
) -> None:
    await conn.execute(
        """
        INSERT INTO ledger_entries (transaction_id, account_id, merchant_id, livemode, currency,
                                    direction, amount, phase)
        SELECT %s, e.account_id, %s, %s, e.currency, e.direction, e.amount, e.phase
        FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[], %s::text[])
             AS e(account_id, currency, direction, amount, phase)
        """,
        (
            transaction_id,
            scope.merchant_id,
            scope.livemode,
            [e.account_id for e in entries],
            [e.currency for e in entries],
            [e.direction for e in entries],
            [e.amount for e in entries],
            [e.phase for e in entries],
        ),
    )


async def set_status(conn: Conn, transaction_id: str, status: Status, at: datetime) -> None:
    await conn.execute(
        "UPDATE ledger_transactions SET status = %(status)s,"
        " posted_at = CASE WHEN %(status)s = 'posted' THEN %(at)s END,"
        " voided_at = CASE WHEN %(status)s = 'voided' THEN %(at)s END"
        " WHERE id = %(id)s",
        {"status": status, "at": at, "id": transaction_id},
    )


FETCH_TRANSACTIONS = """
SELECT
    t.id, t.livemode, t.external_id, t.status, t.description, t.metadata, t.reverses_id,
    t.effective_at, t.created_at, t.posted_at, t.voided_at,
    (SELECT r.id FROM ledger_transactions r WHERE r.reverses_id = t.id) AS reversed_by,
    (SELECT json_agg(json_build_array(e.account_id, e.currency, e.direction, e.amount, e.phase)
                     ORDER BY e.id)
       FROM ledger_entries e WHERE e.transaction_id = t.id) AS entries
FROM ledger_transactions t
WHERE t.merchant_id = %s AND t.livemode = %s AND t.id = ANY(%s)
"""
FETCH_TRANSACTIONS_FOR_UPDATE = FETCH_TRANSACTIONS + " FOR UPDATE OF t"


async def fetch_transactions(
    conn: Conn, scope: Scope, ids: Sequence[str], *, for_update: bool = False
) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            FETCH_TRANSACTIONS_FOR_UPDATE if for_update else FETCH_TRANSACTIONS,
            (scope.merchant_id, scope.livemode, list(ids)),
        )
        rows = {row["id"]: row for row in await cur.fetchall()}
    for row in rows.values():
        row["entries"] = [Entry(*item) for item in row["entries"] or []]
    return [rows[i] for i in ids if i in rows]
