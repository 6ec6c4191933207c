"""The relay publishes every outbox row, in order per aggregate, across replicas and
transport outages, and marks what it published."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Sequence
from datetime import timedelta

import orjson
import psycopg
from psycopg_pool import AsyncConnectionPool

from payrail.clock import ManualClock
from payrail.events import relay
from payrail.events.outbox import OutboxEvent, emit
from payrail.events.pglog import PostgresLog, PostgresLogProducer
from payrail.events.transport import Delivered, Record, TransportUnavailable
from payrail.tenants.scope import Scope

SCOPE = Scope("acct_relay_test", False)
FAST = timedelta(seconds=0.3)


async def write_events(
    pool: AsyncConnectionPool, clock: ManualClock, aggregates: int, per_aggregate: int
) -> None:
    """Each aggregate's events in order, one transaction each, aggregates interleaved."""
    order = [a for a in range(aggregates) for _ in range(per_aggregate)]
    random.Random(5).shuffle(order)
    written: dict[int, int] = defaultdict(int)
    for a in order:
        written[a] += 1
        async with pool.connection() as conn:
            await emit(
                conn,
                SCOPE,
                clock.now(),
                [OutboxEvent("thing.updated", "thing", f"thing_{a}", {"n": written[a]})],
            )


async def read_log(log: PostgresLog) -> list[Delivered]:
    member = await log.subscribe("reader", None)
    got: list[Delivered] = []
    while batch := await member.fetch(1000, max_wait=0.1):
        got += batch
    await member.close()
    return got


def first_copies_in_order(got: Sequence[Delivered]) -> dict[str, list[int]]:
    """Each aggregate's event numbers in the order their first copies arrived."""
    seen: set[str] = set()
    order: dict[str, list[int]] = defaultdict(list)
    for d in got:
        event = orjson.loads(d.value)
        if event["id"] in seen:
            continue
        seen.add(event["id"])
        order[d.key].append(event["data"]["object"]["n"])
    return order


async def unpublished(pool: AsyncConnectionPool) -> int:
    async with pool.connection() as conn:
        row = await (
            await conn.execute("SELECT count(*) FROM events WHERE published_at IS NULL")
        ).fetchone()
    assert row is not None
    return int(row[0])


async def test_publishes_the_envelope_in_order_and_marks_rows(
    pool: AsyncConnectionPool, clock: ManualClock
):
    await write_events(pool, clock, aggregates=10, per_aggregate=12)
    log = PostgresLog(pool, clock)
    one = relay.new_relay(pool, log, clock, batch=50)
    producer = await log.producer()
    slices = await relay.hold_slices(one)
    assert slices == list(range(relay.SLICES))
    while await relay.publish_once(one, producer, slices):
        pass
    assert await unpublished(pool) == 0
    got = await read_log(log)
    assert len(got) == 120
    assert all(order == list(range(1, 13)) for order in first_copies_in_order(got).values())
    first = orjson.loads(got[0].value)
    assert first.keys() == {
        "id",
        "object",
        "type",
        "version",
        "created",
        "livemode",
        "merchant",
        "data",
    }
    assert first["object"] == "event" and first["merchant"] == SCOPE.merchant_id
    assert got[0].topic == "payrail.things"
    assert got[0].headers["event_type"] == "thing.updated"


class Outage(PostgresLog):
    """The log, with a switch that makes publishing fail as a broker outage does."""

    down = False

    async def producer(self) -> PostgresLogProducer:
        outer = self

        class Failing(PostgresLogProducer):
            async def publish(self, records: Sequence[Record]) -> None:
                if outer.down:
                    raise TransportUnavailable("broker down")
                await super().publish(records)

        return Failing(self)


async def test_keeps_rows_while_the_transport_is_down_and_resumes(
    pool: AsyncConnectionPool, clock: ManualClock
):
    log = Outage(pool, clock)
    log.down = True
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(relay.new_relay(pool, log, clock, lease=FAST), stop))
    await write_events(pool, clock, aggregates=5, per_aggregate=4)
    await asyncio.sleep(0.5)
    assert await unpublished(pool) == 20
    log.down = False
    for _ in range(100):
        if await unpublished(pool) == 0:
            break
        await asyncio.sleep(0.1)
    stop.set()
    await task
    got = await read_log(log)
    assert sorted(len(v) for v in first_copies_in_order(got).values()) == [4] * 5


async def test_two_replicas_share_slices_and_keep_each_aggregates_order(
    pool: AsyncConnectionPool, clock: ManualClock
):
    log = PostgresLog(pool, clock)
    stop = asyncio.Event()
    replicas = [relay.new_relay(pool, log, clock, batch=7, lease=FAST) for _ in range(2)]
    tasks = [asyncio.create_task(relay.run(r, stop)) for r in replicas]
    await write_events(pool, clock, aggregates=40, per_aggregate=10)
    for _ in range(100):
        if await unpublished(pool) == 0:
            break
        await asyncio.sleep(0.1)
    async with pool.connection() as conn:
        owners = await (
            await conn.execute(
                "SELECT owner, count(*) FROM event_leases WHERE pool = 'relay' GROUP BY owner"
            )
        ).fetchall()
    stop.set()
    await asyncio.gather(*tasks)
    assert sorted(count for _, count in owners) == [8, 8]
    orders = first_copies_in_order(await read_log(log))
    assert len(orders) == 40
    assert all(order == list(range(1, 11)) for order in orders.values())


async def test_a_replica_that_dies_hands_its_slices_over_when_its_lease_ends(
    pool: AsyncConnectionPool, clock: ManualClock
):
    await write_events(pool, clock, aggregates=8, per_aggregate=3)
    log = PostgresLog(pool, clock)
    dead = relay.new_relay(pool, log, clock)
    assert len(await relay.hold_slices(dead)) == relay.SLICES
    heir = relay.new_relay(pool, log, clock)
    assert await relay.hold_slices(heir) == []
    clock.advance(relay.LEASE + timedelta(seconds=1))
    slices = await relay.hold_slices(heir)
    assert slices == list(range(relay.SLICES))
    producer = await log.producer()
    assert await relay.publish_once(heir, producer, slices) == 24


async def test_the_relay_outlives_its_database_connections_dropping(
    database_url: str, clock: ManualClock
):
    """A failover or a restart drops every connection: the relay must carry on after
    it, or the outbox grows unseen (its backlog metrics are set by the relay too)."""
    from payrail.db.pool import open_pool

    pool = await open_pool(database_url, min_size=2, max_size=4)
    log = PostgresLog(pool, clock)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(relay.new_relay(pool, log, clock, lease=FAST), stop))
    try:
        await write_events(pool, clock, aggregates=3, per_aggregate=2)
        async with pool.connection() as conn:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await emit(conn, SCOPE, clock.now(), [OutboxEvent("thing.updated", "thing", "t", {})])
        for _ in range(100):
            async with await psycopg.AsyncConnection.connect(database_url) as conn:
                row = await (
                    await conn.execute("SELECT count(*) FROM events WHERE published_at IS NULL")
                ).fetchone()
            if row == (0,):
                break
            await asyncio.sleep(0.1)
        assert row == (0,)
        assert not task.done()
    finally:
        stop.set()
        await task
        await pool.close()
