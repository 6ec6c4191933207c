"""The PostgreSQL log keeps Kafka's contract: order per key, offsets never skipped,
groups sharing partitions, and what was not committed delivered again."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import timedelta

from psycopg_pool import AsyncConnectionPool

from payrail.clock import ManualClock
from payrail.events.pglog import PARTITIONS, PostgresLog, partition_for
from payrail.events.transport import Delivered, Record


def records(n: int, keys: int, topic: str = "payrail.tests") -> list[Record]:
    return [Record(topic, f"key{i % keys}", f"{i}".encode(), {"n": str(i)}) for i in range(n)]


async def drain(member: object, limit: int = 10_000) -> list[Delivered]:
    got: list[Delivered] = []
    while True:
        batch = await member.fetch(500, max_wait=0.05)  # type: ignore[attr-defined]
        if not batch:
            return got
        got += batch
        assert len(got) <= limit


async def test_round_trip_keeps_order_per_key(pool: AsyncConnectionPool, clock: ManualClock):
    log = PostgresLog(pool, clock)
    producer = await log.producer()
    await producer.publish(records(300, keys=17))
    member = await log.subscribe("g", None)
    got = await drain(member)
    assert sorted(int(d.value) for d in got) == list(range(300))
    by_key: dict[str, list[int]] = defaultdict(list)
    for d in got:
        assert d.partition == partition_for(d.key)
        assert d.headers == {"n": d.value.decode()}
        by_key[d.key].append(int(d.value))
    assert all(values == sorted(values) for values in by_key.values())
    await member.close()


async def test_offsets_are_dense_under_concurrent_publishers(
    pool: AsyncConnectionPool, clock: ManualClock
):
    log = PostgresLog(pool, clock)

    async def publisher(start: int) -> None:
        producer = await log.producer()
        for batch in range(10):
            await producer.publish(
                [
                    Record(topic, f"k{(start + i) % 5}", b"x")
                    for i in range(20)
                    for topic in ("payrail.a_s", "payrail.b_s")
                ]
            )
            del batch

    await asyncio.gather(*(publisher(n) for n in range(4)))
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                'SELECT topic, partition, count(*), min("offset"), max("offset")'
                " FROM event_log GROUP BY topic, partition"
            )
        ).fetchall()
    assert sum(row[2] for row in rows) == 4 * 10 * 40
    for _, _, count, first, last in rows:
        assert (first, last) == (0, count - 1)


async def test_uncommitted_records_come_again_to_the_next_member(
    pool: AsyncConnectionPool, clock: ManualClock
):
    log = PostgresLog(pool, clock)
    await (await log.producer()).publish(records(50, keys=3))
    first = await log.subscribe("g", ["payrail.tests"])
    batch = await first.fetch(20, max_wait=0.5)
    assert len(batch) == 20
    await first.commit(batch[:10])
    assert sum((await first.lag()).values()) == 40
    # Killed: never closes, never commits the rest. Its lease runs out.
    clock.advance(timedelta(minutes=1))
    second = await log.subscribe("g", ["payrail.tests"])
    rest = await drain(second)
    committed = {(d.topic, d.partition, d.offset) for d in batch[:10]}
    seen = committed | {(d.topic, d.partition, d.offset) for d in rest}
    assert len(seen) == 50
    assert not committed & {(d.topic, d.partition, d.offset) for d in rest}
    await second.commit(rest)
    assert sum((await second.lag()).values()) == 0


async def test_members_split_partitions_and_take_over_on_close(
    pool: AsyncConnectionPool, clock: ManualClock
):
    log = PostgresLog(pool, clock)
    await (await log.producer()).publish(records(400, keys=64))
    a = await log.subscribe("g", ["payrail.tests"])
    b = await log.subscribe("g", ["payrail.tests"])
    await a.fetch(1, max_wait=0)
    await b.fetch(1, max_wait=0)
    # a took every partition first; with b alive it gives half back at its next hold.
    a.hold_due = b.hold_due = 0
    await a.fetch(1, max_wait=0)
    b.hold_due = 0
    await b.fetch(1, max_wait=0)
    assert len(a.slots) == len(b.slots) == PARTITIONS // 2
    assert not a.slots & b.slots
    await a.close()
    b.hold_due = 0
    await b.fetch(1, max_wait=0)
    assert len(b.slots) == PARTITIONS


async def test_a_member_that_lost_a_partition_cannot_commit_it(
    pool: AsyncConnectionPool, clock: ManualClock
):
    log = PostgresLog(pool, clock)
    await (await log.producer()).publish(records(10, keys=1))
    stale = await log.subscribe("g", ["payrail.tests"])
    batch = await stale.fetch(10, max_wait=0.5)
    clock.advance(timedelta(minutes=1))
    fresh = await log.subscribe("g", ["payrail.tests"])
    again = await drain(fresh)
    await stale.commit(batch)  # too late: its lease ran out, and fresh holds it now
    assert sum((await fresh.lag()).values()) == 10
    await fresh.commit(again)
    assert sum((await fresh.lag()).values()) == 0


async def test_every_payrail_topic_including_later_ones(
    pool: AsyncConnectionPool, clock: ManualClock
):
    log = PostgresLog(pool, clock)
    producer = await log.producer()
    await producer.publish([Record("payrail.first_s", "k", b"1")])
    member = await log.subscribe("g", None)
    assert [d.value for d in await drain(member)] == [b"1"]
    await producer.publish([Record("payrail.later_s", "k", b"2"), Record("other", "k", b"3")])
    member.hold_due = 0
    assert [d.value for d in await drain(member)] == [b"2"]
