"""`payrail bench ledger`: transfers/s through the ledger service, beside pgbench's TPC-B.

Every figure goes through the real write path: checked input, the service's checks, one
SQL statement for headers, entries and an outbox event per transaction, the balance
trigger, the deferred zero-sum check, and COMMIT. Single transfers enter as the API's
pydantic TransactionCreate (`post_transactions`, what the HTTP endpoint and payments
call); batches as the NewTransaction values of `post_new`, the entry point of billing
and reconciliation, which build their own transfers in batches.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from psycopg_pool import AsyncConnectionPool

from payrail.bench.harness import (
    Rate,
    machine,
    pgbench_tps,
    run_for,
    run_on_uvloop,
    throwaway_postgres,
)
from payrail.clock import SystemClock
from payrail.db.migrate import upgrade
from payrail.db.pool import open_pool
from payrail.ledger import service
from payrail.ledger.postings import NewEntry, NewTransaction
from payrail.ledger.schemas import AccountCreate, AccountType, EntryCreate, TransactionCreate
from payrail.ledger.verify import verify
from payrail.tenants.scope import Scope
from payrail.tenants.service import create_merchant

CLOCK = SystemClock()


@dataclass(frozen=True)
class Setup:
    scope: Scope
    accounts: list[str]
    hot: str
    hot_single: str


async def _setup(pool: AsyncConnectionPool, accounts: int) -> Setup:
    async with pool.connection() as conn:
        merchant = await create_merchant(conn, CLOCK, "bench")
        scope = Scope(merchant.id, False)
        ids = []
        async with conn.transaction():
            for index in range(accounts):
                kind: AccountType = "asset" if index % 2 else "liability"
                account = await service.create_account(
                    conn, scope, CLOCK, AccountCreate(name=f"a{index}", type=kind, currency="USD")
                )
                ids.append(account["id"])
            hot = await service.create_account(
                conn,
                scope,
                CLOCK,
                AccountCreate(
                    name="platform revenue", type="revenue", currency="USD", balance_shards=16
                ),
            )
            single = await service.create_account(
                conn,
                scope,
                CLOCK,
                AccountCreate(name="revenue, one balance row", type="revenue", currency="USD"),
            )
    return Setup(scope, ids, hot["id"], single["id"])


class Transfers:
    """Random transfers with unique external ids.

    With `slices`, worker w draws only from its own slice of the accounts, as billing
    workers do: each claims its own subscriptions (SKIP LOCKED), so concurrent batches
    share no customer account, only the platform's hot accounts."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.counter = 0
        self.random = random.Random(7)
        self.slices: dict[tuple[int, int], list[str]] = {}

    def _draw(self, hot: str | None, worker: int, slices: int) -> tuple[str, str, str, int]:
        self.counter += 1
        accounts = self.slices.get((worker, slices))
        if accounts is None:
            accounts = self.slices[(worker, slices)] = self.setup.accounts[worker::slices]
        debit, credit = self.random.sample(accounts, 2)
        return f"t{self.counter}", debit, hot or credit, self.random.randint(1, 100_000)

    def api(self, hot: str | None) -> TransactionCreate:
        external_id, debit, credit, amount = self._draw(hot, 0, 1)
        return TransactionCreate(
            external_id=external_id,
            entries=[
                EntryCreate(account=debit, direction="debit", amount=amount),
                EntryCreate(account=credit, direction="credit", amount=amount),
            ],
        )

    def internal(self, hot: str | None, worker: int, slices: int) -> NewTransaction:
        external_id, debit, credit, amount = self._draw(hot, worker, slices)
        return NewTransaction(
            external_id,
            (NewEntry(debit, "debit", amount), NewEntry(credit, "credit", amount)),
        )


async def _measure(
    pool: AsyncConnectionPool,
    setup: Setup,
    transfers: Transfers,
    *,
    seconds: float,
    workers: int,
    batch: int,
    hot: str | None,
) -> Rate:
    """One transfer per step through the API's entry point, or `batch` per step through
    billing's. Either way one database transaction per step: the posting is one
    statement on an autocommit connection."""

    async def single(worker: int) -> int:
        made = transfers.api(hot)
        async with pool.connection() as conn:
            await service.post_transactions(conn, setup.scope, CLOCK, [made])
        return 1

    async def batched(worker: int) -> int:
        made = [transfers.internal(hot, worker, workers) for _ in range(batch)]
        async with pool.connection() as conn:
            await service.post_new(conn, setup.scope, CLOCK, made)
        return batch

    return await run_for(seconds, workers, batched if batch > 1 else single)


async def _run(url: str, seconds: float, workers: int) -> dict[str, Any]:
    pool = await open_pool(url, min_size=workers, max_size=workers)
    setup = await _setup(pool, 1000)
    transfers = Transfers(setup)
    await _measure(pool, setup, transfers, seconds=1, workers=workers, batch=1, hot=None)
    # Measured on connections opened against a ledger that holds rows, as a running
    # deployment's are: PostgreSQL plans the triggers' statements by what it sees then.
    await pool.close()
    pool = await open_pool(url, min_size=workers, max_size=workers)
    try:
        results = {
            "single": await _measure(
                pool, setup, transfers, seconds=seconds, workers=workers, batch=1, hot=None
            ),
            "batched": await _measure(
                pool, setup, transfers, seconds=seconds, workers=2, batch=1000, hot=None
            ),
            "hot_single": await _measure(
                pool, setup, transfers, seconds=seconds, workers=workers, batch=1, hot=setup.hot
            ),
            "hot_single_unsharded": await _measure(
                pool,
                setup,
                transfers,
                seconds=seconds,
                workers=workers,
                batch=1,
                hot=setup.hot_single,
            ),
            "hot_batched": await _measure(
                pool, setup, transfers, seconds=seconds, workers=2, batch=1000, hot=setup.hot
            ),
        }
        async with pool.connection() as conn:
            report = await verify(conn)
        return {"rates": results, "verified": report.ok, "accounts": report.accounts}
    finally:
        await pool.close()


def run(seconds: float = 15, workers: int = 8) -> list[tuple[str, str, str]]:
    """Rows of (measure, figure, target) for the printed table."""
    with throwaway_postgres() as server:
        url = server.url()
        upgrade(url)
        tps = pgbench_tps(server, clients=workers, seconds=int(seconds))
        outcome = run_on_uvloop(_run(url, seconds, workers))
    rates: dict[str, Rate] = outcome["rates"]

    def fmt(rate: Rate) -> str:
        return f"{rate.per_second:,.0f}/s"

    single = rates["single"].per_second
    return [
        ("machine", machine(), ""),
        ("pgbench TPC-B (reference)", f"{tps:,.0f} tps", f"{workers} clients"),
        (
            "one transfer per transaction (API input, post_transactions)",
            fmt(rates["single"]),
            f">= {0.5 * tps:,.0f}/s (0.5 x pgbench): {single / tps:.2f} x",
        ),
        (
            "batched, 1,000 per transaction (billing input, post_new)",
            fmt(rates["batched"]),
            ">= 20,000/s",
        ),
        ("hot account, batched", fmt(rates["hot_batched"]), ">= 5,000/s"),
        (
            "hot account (16 shards), one per transaction",
            fmt(rates["hot_single"]),
            f"{rates['hot_single'].per_second / single:.2f} x uncontended",
        ),
        (
            "hot account (1 balance row), one per transaction",
            fmt(rates["hot_single_unsharded"]),
            f"{rates['hot_single_unsharded'].per_second / single:.2f} x uncontended",
        ),
        (
            "ledger verify after the run",
            "OK" if outcome["verified"] else "DRIFT",
            f"{outcome['accounts']} accounts",
        ),
    ]
