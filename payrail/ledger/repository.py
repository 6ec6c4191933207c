"""Ledger SQL. Every statement is parameterized and scoped to (merchant, livemode)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, TypedDict

import orjson
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from payrail.events.outbox import OutboxEvent, event_rows
from payrail.ledger.postings import BalanceTotals, Direction, Entry, Phase, Status
from payrail.tenants.scope import Scope

Conn = AsyncConnection[Any]


class HeaderRow(TypedDict):
    """A new transaction's header, as `ledger_post_transactions` reads it."""

    id: str
    external_id: str
    content_hash: str  # hex
    status: Status
    description: str | None
    metadata: dict[str, str]
    reverses_id: str | None
    effective_at: datetime


class EntryRow(TypedDict):
    transaction_id: str
    account_id: str
    currency: str
    direction: Direction
    amount: int
    phase: Phase


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
) -> dict[str, str]:
    """Transaction id by external_id."""
    cur = await conn.execute(
        "SELECT external_id, id FROM ledger_transactions"
        " WHERE merchant_id = %s AND livemode = %s AND external_id = ANY(%s)",
        (scope.merchant_id, scope.livemode, list(external_ids)),
    )
    return {row[0]: row[1] for row in await cur.fetchall()}


# Rows travel as one JSON document per statement: one C-speed orjson.dumps instead of a
# Python-level binary dump of a dozen parallel arrays.
ENTRY_ROWS = """
    INSERT INTO ledger_entries (transaction_id, account_id, merchant_id, livemode, currency,
                                direction, amount, phase)
    SELECT e.transaction_id, e.account_id, %(merchant_id)s, %(livemode)s, e.currency,
           e.direction, e.amount, e.phase
    FROM jsonb_to_recordset(%(entries)s::jsonb)
         AS e(transaction_id text, account_id text, currency text, direction text,
              amount bigint, phase text)
"""


def entry_rows(transaction_id: str, entries: Iterable[Entry]) -> list[EntryRow]:
    return [
        {
            "transaction_id": transaction_id,
            "account_id": e.account_id,
            "currency": e.currency,
            "direction": e.direction,
            "amount": e.amount,
            "phase": e.phase,
        }
        for e in entries
    ]


async def post_transactions(
    conn: Conn,
    scope: Scope,
    now: datetime,
    headers: Sequence[HeaderRow],
    entries: Sequence[EntryRow],
    events: Sequence[OutboxEvent],
) -> set[str]:
    """Headers, entries and outbox events in one statement (`ledger_post_transactions`).
    Returns the ids inserted; a header whose external_id is taken by the same content is
    skipped, and by other content raises `ledger_transactions_external_id_content`."""
    cur = await conn.execute(
        "SELECT ledger_post_transactions(%s, %s, %s, %s::jsonb, %s::jsonb, %s::jsonb)",
        (
            scope.merchant_id,
            scope.livemode,
            now,
            orjson.dumps(headers).decode(),
            orjson.dumps(entries).decode(),
            event_rows(events),
        ),
    )
    row = await cur.fetchone()
    assert row is not None
    return set(row[0])


async def append_entries(
    conn: Conn, scope: Scope, transaction_id: str, entries: Sequence[Entry]
) -> None:
    await conn.execute(
        ENTRY_ROWS,
        {
            "merchant_id": scope.merchant_id,
            "livemode": scope.livemode,
            "entries": orjson.dumps(entry_rows(transaction_id, entries)).decode(),
        },
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


async def lock_transaction(conn: Conn, scope: Scope, transaction_id: str) -> bool:
    """Lock a transaction's header. A separate statement from the read that follows: a
    statement that waited for the lock still sees the snapshot from before the wait."""
    cur = await conn.execute(
        "SELECT 1 FROM ledger_transactions"
        " WHERE merchant_id = %s AND livemode = %s AND id = %s FOR UPDATE",
        (scope.merchant_id, scope.livemode, transaction_id),
    )
    return await cur.fetchone() is not None


async def fetch_transactions(conn: Conn, scope: Scope, ids: Sequence[str]) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            FETCH_TRANSACTIONS,
            (scope.merchant_id, scope.livemode, list(ids)),
        )
        rows = {row["id"]: row for row in await cur.fetchall()}
    for row in rows.values():
        row["entries"] = [Entry(*item) for item in row["entries"] or []]
    return [rows[i] for i in ids if i in rows]
