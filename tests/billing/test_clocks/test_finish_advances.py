"""`finish_advances`, as the billing engine calls it on each pass: an advancing clock turns
ready once no subscription or invoice on it has work due at or before its frozen time,
and none is under a live lease; each clock is flipped, and its event written, once, however
many engine workers call it at the same time. And `frozen_time`, the clock's now."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from payrail.billing.test_clocks.service import finish_advances, frozen_time
from payrail.clock import ManualClock
from payrail.errors import NotFound
from payrail.ids import new_id
from payrail.tenants.scope import Scope
from payrail.tenants.service import NewMerchant
from tests.billing.test_clocks.helpers import (
    CLOCKS,
    DAY,
    FROZEN,
    Json,
    advance,
    bearer,
    events,
    new_clock,
    new_customer,
    new_invoice,
    new_price,
    new_subscription,
    ok,
    set_columns,
)
from tests.conftest import new_merchant

START = datetime.fromtimestamp(FROZEN, UTC)
TARGET = START + timedelta(days=10)


async def status(client: httpx.AsyncClient, auth: dict[str, str], clock_id: str) -> str:
    found: str = ok(await client.get(f"{CLOCKS}/{clock_id}", headers=auth))["status"]
    return found


async def ready_events(pool: AsyncConnectionPool, clock_id: str) -> int:
    return [e[0] for e in await events(pool, clock_id)].count("test_helpers.test_clock.ready")


async def advancing_customer(client: httpx.AsyncClient, auth: dict[str, str]) -> tuple[str, Json]:
    """A clock advancing from START to TARGET, and a customer on it."""
    made = await new_clock(client, auth, FROZEN)
    customer = await new_customer(client, auth, test_clock=made["id"])
    ok(await advance(client, auth, made["id"], int(TARGET.timestamp())))
    return made["id"], customer


async def finish(pool: AsyncConnectionPool, clock: ManualClock) -> list[str]:
    async with pool.connection() as conn:
        return await finish_advances(conn, clock.now())


async def test_a_clock_with_no_due_work_turns_ready_once(
    client: httpx.AsyncClient, auth: dict[str, str], pool: AsyncConnectionPool, clock: ManualClock
) -> None:
    clock_id, _ = await advancing_customer(client, auth)
    idle = await new_clock(client, auth)  # ready already: not touched
    assert await finish(pool, clock) == [clock_id]
    assert await finish(pool, clock) == []
    assert await status(client, auth, clock_id) == "ready"
    assert await ready_events(pool, clock_id) == 1
    assert await ready_events(pool, idle["id"]) == 0


async def test_a_subscription_due_by_the_frozen_time_keeps_the_clock_advancing(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    merchant: NewMerchant,
    pool: AsyncConnectionPool,
    clock: ManualClock,
) -> None:
    clock_id, customer = await advancing_customer(client, auth)
    price = await new_price(pool, merchant.id)
    period_end = START + timedelta(days=7)
    subscription = await new_subscription(
        pool,
        merchant.id,
        customer,
        price,
        start=START,
        period_end=period_end,
        next_action_at=period_end,
    )
    assert await finish(pool, clock) == []
    # Exactly at the frozen time is still due.
    await set_columns(pool, "subscriptions", subscription, next_action_at=TARGET)
    assert await finish(pool, clock) == []
    assert await status(client, auth, clock_id) == "advancing"
    assert await ready_events(pool, clock_id) == 0

    # The engine billed it: its next action lies beyond the clock's time.
    await set_columns(
        pool, "subscriptions", subscription, next_action_at=TARGET + timedelta(seconds=1)
    )
    assert await finish(pool, clock) == [clock_id]
    assert await status(client, auth, clock_id) == "ready"


async def test_a_live_lease_is_work_under_way_an_expired_one_is_not(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    merchant: NewMerchant,
    pool: AsyncConnectionPool,
    clock: ManualClock,
) -> None:
    clock_id, customer = await advancing_customer(client, auth)
    price = await new_price(pool, merchant.id)
    later = TARGET + timedelta(days=30)
    subscription = await new_subscription(
        pool,
        merchant.id,
        customer,
        price,
        start=START,
        period_end=later,
        next_action_at=later,
        lease_expires_at=clock.now() + timedelta(seconds=30),
    )
    assert await finish(pool, clock) == []
    # Due and leased: still under way.
    await set_columns(pool, "subscriptions", subscription, next_action_at=TARGET)
    assert await finish(pool, clock) == []
    # The lease lapsed (its worker died), the work is done: nothing is left.
    await set_columns(
        pool,
        "subscriptions",
        subscription,
        next_action_at=later,
        lease_expires_at=clock.now() - timedelta(seconds=1),
    )
    assert await finish(pool, clock) == [clock_id]


async def test_an_invoice_to_collect_by_the_frozen_time_keeps_the_clock_advancing(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    merchant: NewMerchant,
    pool: AsyncConnectionPool,
    clock: ManualClock,
) -> None:
    clock_id, customer = await advancing_customer(client, auth)
    invoice = await new_invoice(
        pool,
        merchant.id,
        customer,
        period_start=START,
        period_end=START,
        next_payment_attempt=START + timedelta(days=3),
    )
    assert await finish(pool, clock) == []
    await set_columns(
        pool,
        "invoices",
        invoice,
        next_payment_attempt=None,
        lease_owner="worker-1",
        lease_expires_at=clock.now() + timedelta(seconds=30),
    )
    assert await finish(pool, clock) == []
    await set_columns(pool, "invoices", invoice, lease_expires_at=clock.now())
    assert await finish(pool, clock) == []  # a lease expiring this instant still holds
    await set_columns(pool, "invoices", invoice, lease_owner=None, lease_expires_at=None)
    assert await finish(pool, clock) == [clock_id]


async def test_a_dunning_final_action_or_an_attempt_in_flight_keeps_the_clock_advancing(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    merchant: NewMerchant,
    pool: AsyncConnectionPool,
    clock: ManualClock,
) -> None:
    clock_id, customer = await advancing_customer(client, auth)
    invoice = await new_invoice(
        pool,
        merchant.id,
        customer,
        period_start=START,
        period_end=START,
        next_payment_attempt=None,
    )
    await set_columns(pool, "invoices", invoice, final_action_at=TARGET)
    assert await finish(pool, clock) == []
    await set_columns(pool, "invoices", invoice, final_action_at=TARGET + timedelta(days=1))
    # An attempt sent, its outcome not known yet: the engine resolves it first.
    intent_id = new_id("pi")
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO payment_intents (id, merchant_id, livemode, amount, currency, status,"
            " capture_method, metadata, created_at, updated_at)"
            " VALUES (%s, %s, false, 1500, 'USD', 'processing', 'automatic', '{}', now(), now())",
            (intent_id, merchant.id),
        )
    await set_columns(pool, "invoices", invoice, payment_intent_id=intent_id)
    assert await finish(pool, clock) == []
    await set_columns(pool, "invoices", invoice, payment_intent_id=None)
    assert await finish(pool, clock) == [clock_id]


async def test_work_on_other_clocks_does_not_hold_this_one(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    merchant: NewMerchant,
    pool: AsyncConnectionPool,
    clock: ManualClock,
) -> None:
    busy_id, busy_customer = await advancing_customer(client, auth)
    done_id, _ = await advancing_customer(client, auth)
    other = await new_merchant(pool, clock, "Globex")
    theirs_id, _ = await advancing_customer(client, bearer(other.test_secret))
    price = await new_price(pool, merchant.id)
    await new_subscription(
        pool,
        merchant.id,
        busy_customer,
        price,
        start=START,
        period_end=TARGET,
        next_action_at=START,
    )
    assert sorted(await finish(pool, clock)) == sorted([done_id, theirs_id])
    assert await status(client, auth, busy_id) == "advancing"
    # Each ready event belongs to its clock's merchant, in test mode.
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT aggregate_id, merchant_id, livemode FROM events"
            " WHERE type = 'test_helpers.test_clock.ready' ORDER BY aggregate_id"
        )
        rows = await cur.fetchall()
    assert rows == sorted([(done_id, merchant.id, False), (theirs_id, other.id, False)])


async def test_a_caller_skips_the_clocks_another_caller_holds(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    pool: AsyncConnectionPool,
    clock: ManualClock,
    database_url: str,
) -> None:
    clock_ids = sorted([(await advancing_customer(client, auth))[0] for _ in range(3)])
    async with await psycopg.AsyncConnection.connect(database_url) as first:
        # The first worker's pass has flipped them but not committed yet.
        async with first.transaction():
            assert sorted(await finish_advances(first, clock.now())) == clock_ids
            # The second does not wait for it, and does not flip them again.
            second = await asyncio.wait_for(finish(pool, clock), timeout=5)
            assert second == []
        assert await finish(pool, clock) == []
    for clock_id in clock_ids:
        assert await status(client, auth, clock_id) == "ready"
        assert await ready_events(pool, clock_id) == 1


@pytest.mark.parametrize("workers", [2, 4])
async def test_concurrent_callers_flip_each_clock_once(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    pool: AsyncConnectionPool,
    clock: ManualClock,
    workers: int,
) -> None:
    clock_ids = [(await advancing_customer(client, auth))[0] for _ in range(6)]
    results = await asyncio.gather(*(finish(pool, clock) for _ in range(workers)))
    flipped = [clock_id for result in results for clock_id in result]
    assert sorted(flipped) == sorted(clock_ids)  # every clock, by exactly one caller
    for clock_id in clock_ids:
        assert await ready_events(pool, clock_id) == 1


async def test_frozen_time_is_the_clocks_now(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    merchant: NewMerchant,
    pool: AsyncConnectionPool,
    clock: ManualClock,
) -> None:
    made = await new_clock(client, auth, FROZEN)
    scope = Scope(merchant.id, livemode=False)
    async with pool.connection() as conn:
        assert await frozen_time(conn, scope, made["id"]) == START
        assert (await frozen_time(conn, scope, made["id"])).utcoffset() == timedelta(0)
    ok(await advance(client, auth, made["id"], FROZEN + DAY))
    async with pool.connection() as conn:
        assert await frozen_time(conn, scope, made["id"]) == START + timedelta(days=1)
        other = await new_merchant(pool, clock, "Globex")
        with pytest.raises(NotFound) as raised:
            await frozen_time(conn, Scope(other.id, livemode=False), made["id"])
        assert raised.value.param == "test_clock"
        with pytest.raises(NotFound):
            await frozen_time(conn, Scope(merchant.id, livemode=True), made["id"])
