"""Concurrent writers: each on its own pooled connection and database transaction.

Races are forced, not hoped for: a blocker transaction first locks the contended row,
every worker is started and observed waiting on a lock in pg_stat_activity, and only
then is the blocker released, so all workers really are in flight at once.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from payrail.clock import ManualClock
from payrail.db.pool import open_pool
from payrail.errors import Conflict, InvalidRequest, PayrailError
from payrail.ledger import service
from payrail.ledger.schemas import AccountCreate, Direction, EntryCreate, TransactionCreate
from payrail.ledger.verify import verify
from payrail.tenants.scope import Scope
from payrail.tenants.service import create_merchant

T = TypeVar("T")
Conn = AsyncConnection[Any]
Job = Callable[[], Coroutine[Any, Any, dict[str, Any]]]
WORKERS = 40
ROUNDS = 8  # per worker in the deadlock test: batches of 3 and single postings, alternating


@pytest.fixture
async def big_pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    pool = await open_pool(database_url, min_size=1, max_size=45)
    yield pool
    await pool.close()


@dataclass
class Ledger:
    pool: AsyncConnectionPool
    clock: ManualClock
    scope: Scope

    async def account(self, **fields: Any) -> str:
        async with self.pool.connection() as conn, conn.transaction():
            row = await service.create_account(
                conn, self.scope, self.clock, AccountCreate(**fields)
            )
        return str(row["id"])

    def params(
        self, external_id: str, legs: list[tuple[str, Direction, int]], *, pending: bool = False
    ) -> TransactionCreate:
        return TransactionCreate(
            external_id=external_id,
            entries=[EntryCreate(account=a, direction=d, amount=n) for a, d, n in legs],
            pending=pending,
        )

    async def write(self, op: Callable[[Conn], Awaitable[T]]) -> T:
        async with self.pool.connection() as conn, conn.transaction():
            return await op(conn)

    async def post(
        self, external_id: str, legs: list[tuple[str, Direction, int]], *, pending: bool = False
    ) -> dict[str, Any]:
        params = self.params(external_id, legs, pending=pending)
        [obj] = await self.write(
            lambda c: service.post_transactions(c, self.scope, self.clock, [params])
        )
        return obj

    async def balances(self, account_id: str) -> dict[str, dict[str, int]]:
        async with self.pool.connection() as conn:
            return dict((await service.get_account(conn, self.scope, account_id))["balances"])

    async def verify_ok(self) -> None:
        async with self.pool.connection() as conn:
            report = await verify(conn)
        assert report.ok, report
        assert report.drifted == [] and report.broken == []


@pytest.fixture
async def ledger(big_pool: AsyncConnectionPool) -> Ledger:
    clock = ManualClock()
    async with big_pool.connection() as conn:
        merchant = await create_merchant(conn, clock, "Concurrent Co")
    return Ledger(big_pool, clock, Scope(merchant.id, livemode=False))


async def gather_all(tasks: list[asyncio.Task[T]]) -> list[T | BaseException]:
    return list(await asyncio.gather(*tasks, return_exceptions=True))


async def waiting_on_locks(conn: Conn) -> int:
    cur = await conn.execute(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def gated(
    pool: AsyncConnectionPool,
    lock_sql: str,
    lock_params: tuple[Any, ...],
    workers: list[Job],
) -> list[dict[str, Any] | BaseException]:
    """Run every worker while a blocker holds `lock_sql`'s row lock; release it only once
    all of them are waiting on a lock, so they contend for real."""
    async with pool.connection() as blocker, pool.connection() as observer:
        async with blocker.transaction():
            await blocker.execute(lock_sql, lock_params)
            tasks = [asyncio.create_task(work()) for work in workers]
            deadline = asyncio.get_running_loop().time() + 30
            while (waiting := await waiting_on_locks(observer)) < len(workers):
                early = [t for t in tasks if t.done()]
                assert not early, f"workers finished while the row was locked: {early[0]!r}"
                assert asyncio.get_running_loop().time() < deadline, f"only {waiting} waiting"
                await asyncio.sleep(0.005)
        return await gather_all(tasks)


def codes(results: list[Any]) -> dict[str | None, int]:
    counted: dict[str | None, int] = defaultdict(int)
    for result in results:
        if isinstance(result, PayrailError):
            counted[result.code] += 1
        elif isinstance(result, BaseException):
            raise result
        else:
            counted["ok"] += 1
    return dict(counted)


# --------------------------------------------------------------------------- non_negative


async def wallet_and_sink(ledger: Ledger, funding: int) -> tuple[str, str]:
    equity = await ledger.account(name="Equity", type="equity", currency="USD")
    wallet = await ledger.account(
        name="Wallet", type="liability", currency="USD", non_negative=True
    )
    sink = await ledger.account(
        name="Settlement", type="liability", currency="USD", balance_shards=8
    )
    await ledger.post("fund", [(equity, "debit", funding), (wallet, "credit", funding)])
    return wallet, sink


async def test_concurrent_transfers_never_overdraw(ledger: Ledger) -> None:
    wallet, sink = await wallet_and_sink(ledger, 100)

    def transfer(i: int) -> Job:
        return lambda: ledger.post(f"out-{i}", [(wallet, "debit", 10), (sink, "credit", 10)])

    results = await gated(
        ledger.pool,
        "SELECT 1 FROM ledger_balances WHERE account_id = %s FOR UPDATE",
        (wallet,),
        [transfer(i) for i in range(WORKERS)],
    )
    assert codes(results) == {"ok": 10, "balance_insufficient": WORKERS - 10}
    assert await ledger.balances(wallet) == {
        "posted": {"debits": 100, "credits": 100, "amount": 0},
        "pending": {"debits": 100, "credits": 100, "amount": 0},
        "available": {"debits": 100, "credits": 100, "amount": 0},
    }
    assert (await ledger.balances(sink))["posted"] == {"debits": 0, "credits": 100, "amount": 100}
    async with ledger.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM ledger_transactions WHERE merchant_id = %s AND external_id"
            " LIKE 'out-%%'",
            (ledger.scope.merchant_id,),
        )
        assert await cur.fetchone() == (10,)
    await ledger.verify_ok()


async def test_concurrent_holds_never_overdraw(ledger: Ledger) -> None:
    wallet, sink = await wallet_and_sink(ledger, 100)

    def hold(i: int) -> Job:
        return lambda: ledger.post(
            f"hold-{i}", [(wallet, "debit", 10), (sink, "credit", 10)], pending=True
        )

    results = await gated(
        ledger.pool,
        "SELECT 1 FROM ledger_balances WHERE account_id = %s FOR UPDATE",
        (wallet,),
        [hold(i) for i in range(WORKERS)],
    )
    assert codes(results) == {"ok": 10, "balance_insufficient": WORKERS - 10}
    assert await ledger.balances(wallet) == {
        "posted": {"debits": 0, "credits": 100, "amount": 100},
        "pending": {"debits": 100, "credits": 100, "amount": 0},
        "available": {"debits": 100, "credits": 100, "amount": 0},
    }
    # With every unit on hold, not even a posted transfer of 1 gets through.
    with pytest.raises(InvalidRequest) as info:
        await ledger.post("one-more", [(wallet, "debit", 1), (sink, "credit", 1)])
    assert info.value.code == "balance_insufficient"

    # Settle the holds concurrently: five posted in full, three in part, two voided.
    def finish(tx_id: str, action: str) -> Coroutine[Any, Any, dict[str, Any]]:
        if action == "void":
            return ledger.write(
                lambda c: service.void_pending(c, ledger.scope, ledger.clock, tx_id)
            )
        amount = None if action == "full" else 4
        return ledger.write(
            lambda c: service.post_pending(c, ledger.scope, ledger.clock, tx_id, amount)
        )

    held = [r["id"] for r in results if isinstance(r, dict)]
    plan = ["full"] * 5 + ["part"] * 3 + ["void"] * 2
    settled = await gather_all(
        [asyncio.create_task(finish(t, a)) for t, a in zip(held, plan, strict=True)]
    )
    assert codes(settled) == {"ok": 10}
    posted = 5 * 10 + 3 * 4
    assert await ledger.balances(wallet) == {
        "posted": {"debits": posted, "credits": 100, "amount": 100 - posted},
        "pending": {"debits": posted, "credits": 100, "amount": 100 - posted},
        "available": {"debits": posted, "credits": 100, "amount": 100 - posted},
    }
    await ledger.verify_ok()


async def test_concurrent_mixed_spends_never_overdraw(ledger: Ledger) -> None:
    """Holds, postings and refunds of different sizes racing on one wallet."""
    wallet, sink = await wallet_and_sink(ledger, 1000)
    rng = random.Random(20260101)
    plans = [(rng.choice([1, 7, 50, 120, 333]), rng.random() < 0.4) for _ in range(WORKERS)]

    def spend(i: int) -> Job:
        amount, pending = plans[i]
        return lambda: ledger.post(
            f"spend-{i}", [(wallet, "debit", amount), (sink, "credit", amount)], pending=pending
        )

    results = await gated(
        ledger.pool,
        "SELECT 1 FROM ledger_balances WHERE account_id = %s FOR UPDATE",
        (wallet,),
        [spend(i) for i in range(WORKERS)],
    )
    counted = codes(results)
    assert set(counted) <= {"ok", "balance_insufficient"}
    ok = [(plans[i], r) for i, r in enumerate(results) if isinstance(r, dict)]
    posted = sum(amount for (amount, pending), _ in ok if not pending)
    on_hold = sum(amount for (amount, pending), _ in ok if pending)
    assert posted + on_hold <= 1000
    # Every rejected spend really did not fit: the wallet only ever emptied, so what is left
    # now is less than the smallest amount it refused.
    rejected = [plans[i][0] for i, r in enumerate(results) if isinstance(r, PayrailError)]
    assert rejected, "the plan asks for more than the wallet holds"
    assert 1000 - posted - on_hold < min(rejected)
    balances = await ledger.balances(wallet)
    assert balances["posted"] == {"debits": posted, "credits": 1000, "amount": 1000 - posted}
    assert balances["available"]["amount"] == 1000 - posted - on_hold >= 0
    await ledger.verify_ok()


# --------------------------------------------------------------------------- no deadlocks


async def test_hot_sharded_account_with_opposite_orders_does_not_deadlock(ledger: Ledger) -> None:
    revenue = await ledger.account(name="Revenue", type="revenue", currency="USD", balance_shards=8)
    others = [
        await ledger.account(name=f"Cash {i}", type="asset", currency="USD") for i in range(8)
    ]
    rng = random.Random(7)
    expected: dict[str, dict[str, int]] = defaultdict(lambda: {"debit": 0, "credit": 0})
    batches: list[list[TransactionCreate]] = []
    for worker in range(WORKERS):
        for round_ in range(ROUNDS):
            size = 1 if round_ % 2 else 3
            batch = []
            for k in range(size):
                picked = rng.sample(others, rng.randint(1, 3))
                amounts = [rng.randint(1, 500) for _ in picked]
                legs: list[tuple[str, Direction, int]] = [
                    (a, "debit", n) for a, n in zip(picked, amounts, strict=True)
                ]
                legs.append((revenue, "credit", sum(amounts)))
                # Half the workers list the hot account first, half last.
                if worker % 2:
                    legs.reverse()
                for account, direction, amount in legs:
                    expected[account][direction] += amount
                batch.append(ledger.params(f"w{worker}-r{round_}-{k}", legs))
            batches.append(batch)

    async def write_batch(conn: Conn, batch: list[TransactionCreate]) -> None:
        await service.post_transactions(
            conn, ledger.scope, ledger.clock, batch, batched=len(batch) > 1
        )

    async def run(worker: int) -> None:
        for round_ in range(ROUNDS):
            async with ledger.pool.connection() as conn, conn.transaction():
                await write_batch(conn, batches[worker * ROUNDS + round_])

    results = await gather_all([asyncio.create_task(run(w)) for w in range(WORKERS)])
    failures = [r for r in results if isinstance(r, BaseException)]
    assert failures == [], failures[:3]
    for account in [revenue, *others]:
        got = (await ledger.balances(account))["posted"]
        assert (got["debits"], got["credits"]) == (
            expected[account]["debit"],
            expected[account]["credit"],
        )
    async with ledger.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM ledger_transactions WHERE merchant_id = %s",
            (ledger.scope.merchant_id,),
        )
        assert await cur.fetchone() == (WORKERS * ROUNDS * 2,)
        cur = await conn.execute(
            "SELECT count(*) FILTER (WHERE credits_posted > 0) FROM ledger_balances"
            " WHERE account_id = %s",
            (revenue,),
        )
        spread = await cur.fetchone()
    assert spread is not None and spread[0] > 1, "the hot account's postings used one shard"
    await ledger.verify_ok()


# --------------------------------------------------------------------------- one winner


async def test_concurrent_writes_of_one_external_id_create_one_transaction(ledger: Ledger) -> None:
    cash = await ledger.account(name="Cash", type="asset", currency="USD")
    revenue = await ledger.account(name="Revenue", type="revenue", currency="USD")
    same = ledger.params("order-1", [(cash, "debit", 500), (revenue, "credit", 500)])
    other = ledger.params("order-1", [(cash, "debit", 501), (revenue, "credit", 501)])

    async def send(params: TransactionCreate) -> dict[str, Any]:
        [obj] = await ledger.write(
            lambda c: service.post_transactions(c, ledger.scope, ledger.clock, [params])
        )
        return obj

    async with ledger.pool.connection() as blocker, blocker.transaction():
        # Hold the unique key: the first writer's insert, still uncommitted.
        [first] = await service.post_transactions(blocker, ledger.scope, ledger.clock, [same])
        tasks = [asyncio.create_task(send(same if i % 2 else other)) for i in range(WORKERS)]
        async with ledger.pool.connection() as observer:
            deadline = asyncio.get_running_loop().time() + 30
            while await waiting_on_locks(observer) < WORKERS:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.005)
    results = await gather_all(tasks)
    replays = [r for r in results if isinstance(r, dict)]
    conflicts = [r for r in results if isinstance(r, Conflict)]
    unexpected = [r for r in results if not isinstance(r, dict | Conflict)]
    assert unexpected == []
    assert len(replays) == WORKERS // 2
    assert {r["id"] for r in replays} == {first["id"]}
    assert len(conflicts) == WORKERS // 2
    assert {c.code for c in conflicts} == {"external_id_conflict"}
    assert (await ledger.balances(cash))["posted"]["amount"] == 500
    await ledger.verify_ok()


async def test_concurrent_posts_of_one_hold_capture_once_and_say_so(ledger: Ledger) -> None:
    """Racing captures of one hold: one wins; a loser may only succeed if what it asked for
    is what was captured, and then it must show the captured entries."""
    cash = await ledger.account(name="Cash", type="asset", currency="USD")
    revenue = await ledger.account(name="Revenue", type="revenue", currency="USD")
    hold = await ledger.post(
        "auth-1", [(cash, "debit", 100), (revenue, "credit", 100)], pending=True
    )
    amounts = [10 + i for i in range(WORKERS // 4)]

    def capture(amount: int) -> Job:
        return lambda: ledger.write(
            lambda c: service.post_pending(c, ledger.scope, ledger.clock, hold["id"], amount)
        )

    results = await gated(
        ledger.pool,
        "SELECT 1 FROM ledger_transactions WHERE id = %s FOR UPDATE",
        (hold["id"],),
        [capture(a) for a in amounts],
    )
    raw = [r for r in results if isinstance(r, BaseException) and not isinstance(r, PayrailError)]
    assert raw == [], f"unhandled database errors: {raw[:1]!r}"
    captured = (await ledger.balances(cash))["posted"]["amount"]
    assert captured in amounts
    final = await ledger.write(lambda c: service.get_transaction(c, ledger.scope, hold["id"]))
    assert final["status"] == "posted"
    for amount, result in zip(amounts, results, strict=True):
        if isinstance(result, dict):
            assert amount == captured, (
                f"asked to capture {amount}, told ok; {captured} was captured"
            )
            assert result["entries"] == final["entries"]
        else:
            assert isinstance(result, InvalidRequest)
            assert result.code == "transaction_not_pending"
    await ledger.verify_ok()


async def test_concurrent_post_and_void_settle_once(ledger: Ledger) -> None:
    cash = await ledger.account(name="Cash", type="asset", currency="USD")
    revenue = await ledger.account(name="Revenue", type="revenue", currency="USD")
    hold = await ledger.post(
        "auth-2", [(cash, "debit", 100), (revenue, "credit", 100)], pending=True
    )

    def act(i: int) -> Job:
        if i % 2:
            return lambda: ledger.write(
                lambda c: service.void_pending(c, ledger.scope, ledger.clock, hold["id"])
            )
        return lambda: ledger.write(
            lambda c: service.post_pending(c, ledger.scope, ledger.clock, hold["id"], None)
        )

    results = await gated(
        ledger.pool,
        "SELECT 1 FROM ledger_transactions WHERE id = %s FOR UPDATE",
        (hold["id"],),
        [act(i) for i in range(20)],
    )
    final = await ledger.write(lambda c: service.get_transaction(c, ledger.scope, hold["id"]))
    assert final["status"] in {"posted", "voided"}
    winner = "post" if final["status"] == "posted" else "void"
    for i, result in enumerate(results):
        mine = "void" if i % 2 else "post"
        if mine == winner:
            assert isinstance(result, dict), result
            assert result["status"] == final["status"]
            assert result["entries"] == final["entries"]
        else:
            assert isinstance(result, InvalidRequest), result
            assert result.code == "transaction_not_pending"
    amount = 100 if winner == "post" else 0
    assert await ledger.balances(cash) == {
        "posted": {"debits": amount, "credits": 0, "amount": amount},
        "pending": {"debits": amount, "credits": 0, "amount": amount},
        "available": {"debits": amount, "credits": 0, "amount": amount},
    }
    async with ledger.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM ledger_entries WHERE transaction_id = %s", (hold["id"],)
        )
        assert await cur.fetchone() == ((6,) if winner == "post" else (4,))
    await ledger.verify_ok()


@pytest.mark.parametrize("naming", ["default", "distinct"])
async def test_concurrent_reversals_reverse_once(ledger: Ledger, naming: str) -> None:
    """A second reverse returns the same reversal, also when the calls race."""
    cash = await ledger.account(name="Cash", type="asset", currency="USD")
    revenue = await ledger.account(name="Revenue", type="revenue", currency="USD")
    original = await ledger.post("sale-1", [(cash, "debit", 100), (revenue, "credit", 100)])

    def reverse(i: int) -> Job:
        external_id = None if naming == "default" else f"refund-{i}"
        return lambda: ledger.write(
            lambda c: service.reverse(
                c,
                ledger.scope,
                ledger.clock,
                original["id"],
                external_id=external_id,
                description=None,
                metadata={},
            )
        )

    results = await gated(
        ledger.pool,
        "SELECT 1 FROM ledger_transactions WHERE id = %s FOR UPDATE",
        (original["id"],),
        [reverse(i) for i in range(20)],
    )
    raw = [r for r in results if isinstance(r, BaseException) and not isinstance(r, PayrailError)]
    assert raw == [], f"unhandled database errors: {raw[:1]!r}"
    final = await ledger.write(lambda c: service.get_transaction(c, ledger.scope, original["id"]))
    reversal_id = final["reversed_by"]
    assert reversal_id is not None
    assert all(isinstance(r, dict) and r["id"] == reversal_id for r in results), [
        r if isinstance(r, dict) else repr(r) for r in results
    ][:3]
    assert (await ledger.balances(cash))["posted"] == {"debits": 100, "credits": 100, "amount": 0}
    await ledger.verify_ok()
