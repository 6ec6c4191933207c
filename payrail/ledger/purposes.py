"""What the domains that post to the ledger (payments, billing, reconciliation) share: the
ledger account each keeps per purpose and currency, made on first use, and a transaction
built from signed amounts per account."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from psycopg import AsyncConnection, sql

from payrail.clock import Clock
from payrail.ledger import service as ledger
from payrail.ledger.schemas import AccountCreate, EntryCreate, TransactionCreate
from payrail.tenants.scope import Scope

Conn = AsyncConnection[Any]


async def purpose_account(
    conn: Conn, scope: Scope, clock: Clock, table: str, key: Mapping[str, str], new: AccountCreate
) -> str:
    """The ledger account `table` names for the scope and `key` (purpose, currency, ...);
    made as `new` and recorded in `table` the first time it is asked for."""
    columns = {"merchant_id": scope.merchant_id, "livemode": scope.livemode, **key}
    select = sql.SQL("SELECT ledger_account_id FROM {} WHERE {}").format(
        sql.Identifier(table),
        sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in columns),
    )
    values = tuple(columns.values())
    found = await (await conn.execute(select, values)).fetchone()
    if found is not None:
        return str(found[0])
    # First use: one creator per key, so no orphan ledger account is made in a race.
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
        ("|".join([table, *map(str, values)]),),
    )
    found = await (await conn.execute(select, values)).fetchone()
    if found is not None:
        return str(found[0])
    account = await ledger.create_account(conn, scope, clock, new)
    insert = sql.SQL("INSERT INTO {} ({}, ledger_account_id) VALUES ({}, %s)").format(
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(", ").join(sql.Placeholder() * len(columns)),
    )
    await conn.execute(insert, (*values, account["id"]))
    return str(account["id"])


def movement(
    external_id: str, debits: Iterable[tuple[str, int]], metadata: dict[str, str]
) -> TransactionCreate | None:
    """One transaction from signed amounts per account (positive debits, negative
    credits), netted per account; None when nothing moves."""
    net: dict[str, int] = defaultdict(int)
    for account, amount in debits:
        net[account] += amount
    entries = [
        EntryCreate(
            account=account, direction="debit" if amount > 0 else "credit", amount=abs(amount)
        )
        for account, amount in sorted(net.items())
        if amount != 0
    ]
    if not entries:
        return None
    assert sum(e.amount if e.direction == "debit" else -e.amount for e in entries) == 0
    return TransactionCreate(external_id=external_id, entries=entries, metadata=metadata)
