"""Outbox to consumer, end to end, over each transport: the PostgreSQL log and Kafka
(the bundled Tansu broker, no mocks). Every event's effect happens once, in order per
aggregate, through two relay replicas, injected duplicates, a consumer killed in
mid-batch, and a broker stopped in mid-stream."""

from __future__ import annotations

import asyncio
import secrets
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import pytest
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from payrail.clock import ManualClock
from payrail.events import consumers, relay
from payrail.events.broker import TansuBroker
from payrail.events.consumers import Consumer
from payrail.events.kafka import KafkaTransport
from payrail.events.outbox import OutboxEvent, emit
from payrail.events.pglog import PostgresLog
from payrail.events.schemas import Event
from payrail.events.transport import Record, Transport, topic_for
from payrail.tenants.scope import Scope
from tests.events.kafka_fixtures import fast_settings

SCOPE = Scope("mer_pipeline", False)
FAST = timedelta(seconds=0.3)


@pytest.fixture(params=["postgres", "kafka"])
def make_transport(request: pytest.FixtureRequest, clock: ManualClock) -> Iterator[Any]:
    """A function from a pool to the transport under test."""
    if request.param == "postgres":
        yield lambda pool: PostgresLog(pool, clock)
        return
    broker: TansuBroker = request.getfixturevalue("kafka_broker")
    yield lambda pool: KafkaTransport(fast_settings(broker.bootstrap_servers))


@pytest.fixture
async def running() -> AsyncIterator[list[asyncio.Task[None]]]:
    """The test's relays and consumers: whatever a failed test leaves running is
    cancelled, not left to the next test's event loop."""
    started: list[asyncio.Task[None]] = []
    yield started
    for task in started:
        task.cancel()
    await asyncio.gather(*started, return_exceptions=True)


@pytest.fixture
def kind() -> str:
    """An aggregate type of the test's own: its own topic on a shared broker."""
    return f"thing{secrets.token_hex(3)}"


@pytest.fixture
async def effects(pool: AsyncConnectionPool) -> AsyncIterator[None]:
    async with pool.connection() as conn:
        await conn.execute(
            "CREATE TABLE effects (seq bigint GENERATED ALWAYS AS IDENTITY,"
            " event_id text NOT NULL, aggregate text NOT NULL, n int NOT NULL)"
        )
    yield


async def record_effect(conn: AsyncConnection[Any], event: Event) -> None:
    await conn.execute(
        "INSERT INTO effects (event_id, aggregate, n) VALUES (%s, %s, %s)",
        (event.id, event.object["id"], event.object["n"]),
    )


async def write(
    pool: AsyncConnectionPool,
    clock: ManualClock,
    kind: str,
    aggregates: int,
    each: int,
    start: int = 1,
    pause: float = 0,
) -> None:
    """Each aggregate's events numbered from `start`, one transaction each, interleaved,
    `pause` seconds apart."""
    for n in range(start, start + each):
        for a in range(aggregates):
            await asyncio.sleep(pause)
            async with pool.connection() as conn:
                event = OutboxEvent(
                    f"{kind}.updated", kind, f"{kind}_{a}", {"id": f"{kind}_{a}", "n": n}
                )
                await emit(conn, SCOPE, clock.now(), [event])


async def handled(pool: AsyncConnectionPool) -> dict[str, list[int]]:
    """Each aggregate's event numbers in the order their effects were applied."""
    async with pool.connection() as conn:
        rows = await (
            await conn.execute("SELECT aggregate, n FROM effects ORDER BY seq")
        ).fetchall()
    order: dict[str, list[int]] = defaultdict(list)
    for aggregate, n in rows:
        order[aggregate].append(n)
    return order


async def wait_for(pool: AsyncConnectionPool, count: int, seconds: float = 30) -> None:
    for _ in range(int(seconds * 10)):
        if sum(len(v) for v in (await handled(pool)).values()) >= count:
            return
        await asyncio.sleep(0.1)


def start_relays(
    pool: AsyncConnectionPool, transport: Transport, clock: ManualClock, n: int, stop: asyncio.Event
) -> list[asyncio.Task[None]]:
    return [
        asyncio.create_task(
            relay.run(relay.new_relay(pool, transport, clock, batch=7, lease=FAST), stop)
        )
        for _ in range(n)
    ]


async def test_once_and_in_order_through_two_relays_and_duplicates(
    pool: AsyncConnectionPool,
    clock: ManualClock,
    make_transport: Any,
    kind: str,
    effects: None,
    running: list[asyncio.Task[None]],
):
    transport = make_transport(pool)
    stop = asyncio.Event()
    consumer = Consumer(f"effects-{kind}", record_effect, topics=[topic_for(kind)])
    tasks = [
        *start_relays(pool, transport, clock, 2, stop),
        asyncio.create_task(consumers.run(pool, transport, consumer, clock, stop)),
    ]
    running.extend(tasks)
    await write(pool, clock, kind, aggregates=12, each=5)
    await wait_for(pool, 60)
    # A relay that lost its answers publishes again: copies of events already handled.
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT aggregate_id, event_envelope(e) FROM events e"
                " WHERE aggregate_type = %s ORDER BY seq LIMIT 20",
                (kind,),
            )
        ).fetchall()
    producer = await transport.producer()
    await producer.publish([Record(topic_for(kind), key, value.encode()) for key, value in rows])
    await producer.close()
    await write(pool, clock, kind, aggregates=12, each=2, start=6)
    await wait_for(pool, 84)
    await asyncio.sleep(1)  # room for a wrong extra effect to show
    stop.set()
    await asyncio.gather(*tasks)
    order = await handled(pool)
    assert len(order) == 12
    assert all(numbers == list(range(1, 8)) for numbers in order.values()), order


async def test_a_consumer_killed_in_mid_batch_resumes_without_loss(
    pool: AsyncConnectionPool,
    clock: ManualClock,
    make_transport: Any,
    kind: str,
    effects: None,
    running: list[asyncio.Task[None]],
):
    transport = make_transport(pool)
    stop = asyncio.Event()
    relays = start_relays(pool, transport, clock, 1, stop)
    running.extend(relays)
    await write(pool, clock, kind, aggregates=4, each=25)
    reached = asyncio.Event()

    async def slow(conn: AsyncConnection[Any], event: Event) -> None:
        await record_effect(conn, event)
        await asyncio.sleep(0.005)
        if event.object["n"] == 10:
            reached.set()

    group = f"effects-{kind}"
    first = asyncio.create_task(
        consumers.run(
            pool, transport, Consumer(group, slow, topics=[topic_for(kind)]), clock, asyncio.Event()
        )
    )
    running.append(first)
    await asyncio.wait_for(reached.wait(), 60)
    first.cancel()  # killed in mid-batch: the batch is never committed
    with pytest.raises(asyncio.CancelledError):
        await first
    done_before = sum(len(v) for v in (await handled(pool)).values())
    assert 0 < done_before < 100
    clock.advance(timedelta(minutes=1))  # the log's lease runs out; Kafka's group moves on
    second = asyncio.create_task(
        consumers.run(
            pool, transport, Consumer(group, record_effect, topics=[topic_for(kind)]), clock, stop
        )
    )
    running.append(second)
    await wait_for(pool, 100, seconds=60)
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.gather(second, *relays)
    order = await handled(pool)
    assert all(numbers == list(range(1, 26)) for numbers in order.values()), order


async def test_a_broker_stopped_in_mid_stream_and_restarted_loses_no_event(
    pool: AsyncConnectionPool,
    clock: ManualClock,
    durable_kafka_broker: TansuBroker,
    kind: str,
    effects: None,
    running: list[asyncio.Task[None]],
):
    broker = durable_kafka_broker  # its records are kept in S3 (moto), as Kafka keeps them
    transport = KafkaTransport(fast_settings(broker.bootstrap_servers))
    stop = asyncio.Event()
    consumer = Consumer(f"effects-{kind}", record_effect, topics=[topic_for(kind)])
    tasks = [
        *start_relays(pool, transport, clock, 1, stop),
        asyncio.create_task(consumers.run(pool, transport, consumer, clock, stop)),
    ]
    running.extend(tasks)
    # Killed while events flow: some published and not yet consumed, some not yet
    # published; more are committed while it is down.
    writer = asyncio.create_task(write(pool, clock, kind, aggregates=5, each=10, pause=0.1))
    running.append(writer)
    await wait_for(pool, 8)
    broker.kill()
    await asyncio.sleep(3)
    async with pool.connection() as conn:
        row = await (
            await conn.execute("SELECT count(*) FROM events WHERE published_at IS NULL")
        ).fetchone()
    assert row is not None and row[0] > 0, "the relay keeps the events the broker refused"
    broker.start()
    await writer
    await wait_for(pool, 50, seconds=60)
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.gather(*tasks)
    order = await handled(pool)
    assert all(numbers == list(range(1, 11)) for numbers in order.values()), order
