"""`payrail bench ledger`: transfers/s through the ledger service, beside pgbench's TPC-B.

Every figure goes through the real write path: pydantic-validated input, the service's
checks, one SQL statement for headers and entries, the balance trigger, the deferred
zero-sum check, an outbox event per transaction, and COMMIT.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any

from psycopg_pool import AsyncConnectionPool

from payrail.bench.harness import Rate, machine, pgbench_tps, run_for, throwaway_postgres
from payrail.clock import SystemClock
from payrail.db.migrate import upgrade
from payrail.db.pool import open_pool
from payrail.ledger import service
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

    def make(self, hot: str | None, worker: int = 0, slices: int = 1) -> TransactionCreate:
        self.counter += 1
        accounts = self.slices.get((worker, slices))
        if accounts is None:
            accounts = self.slices[(worker, slices)] = self.setup.accounts[worker::slices]
        debit, credit = self.random.sample(accounts, 2)
        credit = hot or credit
        amount = self.random.randint(1, 100_000)
        return TransactionCreate(
            external_id=f"t{self.counter}",
            entries=[
                EntryCreate(account=debit, direction="debit", amount=amount),
                EntryCreate(account=credit, direction="credit", amount=amount),
            ],
        )


async def _post(pool: AsyncConnectionPool, scope: Scope, batch: list[TransactionCreate]) -> int:
    """One database transaction: the posting is one statement on an autocommit connection."""
    async with pool.connection() as conn:
        await service.post_transactions(conn, scope, CLOCK, batch)
    return len(batch)


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
    slices = workers if batch > 1 else 1

    async def step(worker: int) -> int:
        made = [transfers.make(hot, worker, slices) for _ in range(batch)]
        return await _post(pool, setup.scope, made)

    return await run_for(seconds, workers, step)


async def _run(url: str, seconds: float, workers: int) -> dict[str, Any]:
    pool = await open_pool(url, min_size=workers, max_size=workers)
    try:
        setup = await _setup(pool, 1000)
        transfers = Transfers(setup)
        await _measure(pool, setup, transfers, seconds=1, workers=workers, batch=1, hot=None)
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
        outcome = asyncio.run(_run(url, seconds, workers))
    rates: dict[str, Rate] = outcome["rates"]

    def fmt(rate: Rate) -> str:
        return f"{rate.per_second:,.0f}/s"

    single = rates["single"].per_second
    return [
        ("machine", machine(), ""),
        ("pgbench TPC-B (reference)", f"{tps:,.0f} tps", f"{workers} clients"),
        (
            "one transfer per transaction",
            fmt(rates["single"]),
            f">= {0.5 * tps:,.0f}/s (0.5 x pgbench): {single / tps:.2f} x",
        ),
        ("batched, 1,000 per transaction", fmt(rates["batched"]), ">= 20,000/s"),
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
