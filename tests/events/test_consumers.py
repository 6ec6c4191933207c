"""A consumer's effect happens once per event: through duplicates, retries, a kill in
mid-batch; what keeps failing is dead-lettered and can be replayed."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import orjson
import pytest
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from payrail.clock import ManualClock
from payrail.events import consumers
from payrail.events.consumers import Consumer
from payrail.events.pglog import PostgresLog
from payrail.events.schemas import Event
from payrail.events.transport import Record


def event(n: int, aggregate: str = "thing_1") -> Record:
    body = {
        "id": f"evt_{n}",
        "object": "event",
        "type": "thing.updated",
        "version": 1,
        "created": 1_700_000_000 + n,
        "livemode": False,
        "merchant": "acct_1",
        "data": {"object": {"id": aggregate, "n": n}},
    }
    return Record("payrail.things", aggregate, orjson.dumps(body))


@pytest.fixture
async def effects(pool: AsyncConnectionPool) -> AsyncConnection[Any]:
    """A table of effects with no unique key: only the inbox stops a second one."""
    async with pool.connection() as conn:
        await conn.execute("CREATE TABLE effects (event_id text NOT NULL)")
    return conn


async def record_effect(conn: AsyncConnection[Any], event: Event) -> None:
    await conn.execute("INSERT INTO effects (event_id) VALUES (%s)", (event.id,))


async def effect_counts(pool: AsyncConnectionPool) -> dict[str, int]:
    async with pool.connection() as conn:
        rows = await (
            await conn.execute("SELECT event_id, count(*) FROM effects GROUP BY event_id")
        ).fetchall()
    return {row[0]: row[1] for row in rows}


async def run_until_idle(
    pool: AsyncConnectionPool, log: PostgresLog, consumer: Consumer, clock: ManualClock
) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(consumers.run(pool, log, consumer, clock, stop))
    for _ in range(200):
        await asyncio.sleep(0.05)
        member = await log.subscribe("probe", None)
        lag = await _group_lag(pool, consumer.name)
        await member.close()
        if lag == 0:
            break
    stop.set()
    await task


async def _group_lag(pool: AsyncConnectionPool, group: str) -> int:
    async with pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT coalesce(sum(p.next_offset - coalesce(o.next_offset, 0)), 0)"
                "  FROM event_log_partitions p LEFT JOIN event_log_offsets o"
                "    ON o.consumer_group = %s AND o.topic = p.topic AND o.partition = p.partition",
                (group,),
            )
        ).fetchone()
    assert row is not None
    return int(row[0])


async def test_duplicates_have_one_effect(pool: AsyncConnectionPool, clock: ManualClock, effects):
    log = PostgresLog(pool, clock)
    producer = await log.producer()
    # Published, then published again (a relay that lost its answer), and a third time.
    batch = [event(n) for n in range(30)]
    await producer.publish(batch)
    await producer.publish(batch)
    await producer.publish(batch[10:20])
    await run_until_idle(pool, log, Consumer("effects", record_effect), clock)
    assert await effect_counts(pool) == {f"evt_{n}": 1 for n in range(30)}


async def test_a_kill_in_mid_batch_loses_nothing_and_repeats_nothing(
    pool: AsyncConnectionPool, clock: ManualClock, effects
):
    log = PostgresLog(pool, clock)
    await (await log.producer()).publish([event(n, f"thing_{n % 4}") for n in range(100)])
    handled = 0
    reached = asyncio.Event()

    async def slow_effect(conn: AsyncConnection[Any], event: Event) -> None:
        nonlocal handled
        await record_effect(conn, event)
        handled += 1
        if handled == 37:
            reached.set()
        await asyncio.sleep(0.001)

    consumer = Consumer("effects", slow_effect)
    task = asyncio.create_task(consumers.run(pool, log, consumer, clock, asyncio.Event()))
    await reached.wait()
    task.cancel()  # killed: no commit of the batch, no lease given back
    with pytest.raises(asyncio.CancelledError):
        await task
    # The 37th was killed inside its transaction: rolled back with its inbox row.
    assert sum((await effect_counts(pool)).values()) == 36
    clock.advance(timedelta(minutes=1))  # its lease runs out
    await run_until_idle(pool, log, consumer, clock)
    assert await effect_counts(pool) == {f"evt_{n}": 1 for n in range(100)}


async def test_a_failing_handler_is_retried_then_dead_lettered_and_replayed(
    pool: AsyncConnectionPool, clock: ManualClock, effects
):
    log = PostgresLog(pool, clock)
    await (await log.producer()).publish([event(1), event(2), event(3)])
    failures = {"evt_1": 2, "evt_2": 99}
    attempts: dict[str, int] = {}

    async def flaky(conn: AsyncConnection[Any], event: Event) -> None:
        attempts[event.id] = attempts.get(event.id, 0) + 1
        await record_effect(conn, event)  # rolled back with the failure
        if attempts[event.id] <= failures.get(event.id, 0):
            raise RuntimeError(f"downstream refused {event.id}")

    consumer = Consumer("effects", flaky, max_attempts=3, first_delay=0.001)
    await run_until_idle(pool, log, consumer, clock)
    assert attempts == {"evt_1": 3, "evt_2": 3, "evt_3": 1}
    assert await effect_counts(pool) == {"evt_1": 1, "evt_3": 1}
    async with pool.connection() as conn:
        dead = await (
            await conn.execute(
                "SELECT id, event_id, error, attempts, replayed_at FROM event_dead_letters"
            )
        ).fetchall()
    assert [(row[1], row[2], row[3], row[4]) for row in dead] == [
        ("evt_2", "RuntimeError: downstream refused evt_2", 3, None)
    ]

    report = await consumers.replay(pool, consumer, clock)  # still failing
    assert (report.replayed, report.failed) == (0, 1)
    failures["evt_2"] = 0
    report = await consumers.replay(pool, consumer, clock, [dead[0][0]])
    assert (report.replayed, report.failed) == (1, 0)
    assert await effect_counts(pool) == {"evt_1": 1, "evt_2": 1, "evt_3": 1}
    async with pool.connection() as conn:
        row = await (
            await conn.execute("SELECT attempts, replayed_at FROM event_dead_letters")
        ).fetchone()
    assert row is not None and row[0] == 4 and row[1] == clock.now()
    assert (await consumers.replay(pool, consumer, clock)).replayed == 0


async def test_a_record_that_is_not_an_event_is_dead_lettered(
    pool: AsyncConnectionPool, clock: ManualClock, effects
):
    log = PostgresLog(pool, clock)
    await (await log.producer()).publish(
        [Record("payrail.things", "k", b"{not json"), event(1, "k")]
    )
    await run_until_idle(pool, log, Consumer("effects", record_effect), clock)
    assert await effect_counts(pool) == {"evt_1": 1}
    async with pool.connection() as conn:
        row = await (
            await conn.execute("SELECT event_id, error FROM event_dead_letters")
        ).fetchone()
    assert row is not None
    assert row[0] == "payrail.things/" + row[0].split("/")[1] + "/0"
    assert row[1].startswith("not JSON")


def test_retry_delays_grow_and_stay_within_the_cap():
    import random

    consumer = Consumer("c", record_effect, first_delay=0.05, max_delay=5.0)
    rng = random.Random(1)
    for attempt in range(1, 10):
        cap = min(5.0, 0.05 * 4 ** (attempt - 1))
        delays = [consumers.retry_delay(consumer, attempt, rng) for _ in range(200)]
        assert all(0 <= d <= cap for d in delays)
        assert max(delays) > cap * 0.8


async def test_a_consumer_outlives_its_database_connections_dropping(
    database_url: str, pool: AsyncConnectionPool, clock: ManualClock, effects
):
    from payrail.db.pool import open_pool

    own = await open_pool(database_url, min_size=2, max_size=4)
    log = PostgresLog(own, clock)
    stop = asyncio.Event()
    task = asyncio.create_task(
        consumers.run(own, log, Consumer("effects", record_effect), clock, stop)
    )
    try:
        await (await PostgresLog(pool, clock).producer()).publish([event(1)])
        for _ in range(100):
            if await effect_counts(pool) == {"evt_1": 1}:
                break
            await asyncio.sleep(0.05)
        async with own.connection() as conn:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        await pool.check()  # the test's own connections went too
        await (await PostgresLog(pool, clock).producer()).publish([event(2)])
        for _ in range(200):
            if await effect_counts(pool) == {"evt_1": 1, "evt_2": 1}:
                break
            await asyncio.sleep(0.05)
        assert await effect_counts(pool) == {"evt_1": 1, "evt_2": 1}
        assert not task.done()
    finally:
        stop.set()
        await task
        await own.close()
