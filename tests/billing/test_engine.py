"""The engine's leases: workers split the due subscriptions, none is billed twice, and a
dead worker's claim passes to another when its lease runs out."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from psycopg_pool import AsyncConnectionPool

from payrail.api.context import Services
from payrail.billing.engine import _CLAIM_SUBSCRIPTIONS, Engine, EngineOptions, due_count
from payrail.clock import ManualClock
from tests.billing.conftest import Api, customer_with_card, monthly_price


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[arg-type, misc]


async def _subscribe(api: Api, clock: ManualClock, count: int) -> list[str]:
    clock.current = at(2026, 6, 1)
    price = await monthly_price(api, 990)
    ids = []
    for _ in range(count):
        customer = await customer_with_card(api)
        sub = await api.post(
            "/v1/subscriptions", {"customer": customer["id"], "items": [{"price": price["id"]}]}
        )
        ids.append(sub["id"])
    return ids


async def _cycle_invoices(pool: AsyncConnectionPool) -> list[tuple[str, int]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT subscription_id, count(*) FROM invoices"
            " WHERE billing_reason = 'subscription_cycle' GROUP BY subscription_id"
        )
        return list(await cur.fetchall())


async def test_workers_split_the_due_subscriptions_and_bill_each_once(
    api: Api, pool: AsyncConnectionPool, services: Services, clock: ManualClock
) -> None:
    ids = await _subscribe(api, clock, 12)
    clock.current = at(2026, 7, 1)
    assert await due_count(pool, clock.current) == 12
    workers = [Engine(pool, services, EngineOptions(batch=3)) for _ in range(3)]

    async def drain(engine: Engine) -> int:
        renewed = 0
        while (result := await engine.run_once()).work:
            renewed += result.renewed
        return renewed

    done = await asyncio.gather(*(drain(w) for w in workers))
    assert sum(done) == 12
    assert sorted(await _cycle_invoices(pool)) == sorted((i, 1) for i in ids)
    assert await due_count(pool, clock.current) == 0


async def test_a_dead_workers_claim_passes_on_when_its_lease_runs_out(
    api: Api, pool: AsyncConnectionPool, services: Services, clock: ManualClock
) -> None:
    [sub_id] = await _subscribe(api, clock, 1)
    clock.current = at(2026, 7, 1)
    dead = Engine(pool, services, EngineOptions(lease=timedelta(seconds=30)))
    # It claims the subscription, then dies before billing it.
    claimed = await dead._claim(_CLAIM_SUBSCRIPTIONS, clock.current)
    assert [object_id for object_id, _ in claimed] == [sub_id]
    alive = Engine(pool, services)
    assert (await alive.run_once()).renewed == 0  # leased to the dead worker
    clock.advance(timedelta(seconds=31))
    assert (await alive.run_once()).renewed == 1
    assert await _cycle_invoices(pool) == [(sub_id, 1)]
    # The dead worker, back from the dead, finds its lease gone and bills nothing.
    assert await dead.advance_subscription(claimed[0][1], sub_id, clock.current) == 0
    assert await _cycle_invoices(pool) == [(sub_id, 1)]


async def test_a_backfill_run_bills_up_to_its_time_and_no_further(
    api: Api, pool: AsyncConnectionPool, services: Services, clock: ManualClock
) -> None:
    [sub_id] = await _subscribe(api, clock, 1)
    clock.current = at(2026, 10, 15)  # three periods have ended since June 1st
    engine = Engine(pool, services)
    seen: list[int] = []
    total = await engine.run_until(at(2026, 8, 15), lambda result: seen.append(result.renewed))
    assert total.renewed == 2  # July 1st and August 1st, not September 1st
    assert sum(seen) == 2
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT period_start FROM invoices WHERE subscription_id = %s ORDER BY period_start",
            (sub_id,),
        )
        starts = [row[0] for row in await cur.fetchall()]
    assert starts == [at(2026, 6, 1), at(2026, 7, 1), at(2026, 8, 1)]
    assert (await engine.run_until(clock.current)).renewed == 2  # September, October
