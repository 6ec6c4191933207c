"""`payrail bench events`: outbox to transport through the relay, and the time from an
event's commit to a consumer's hands.

- Relay throughput: an outbox filled with `events` payment-intent events (~1 KB each,
  10,000 aggregates), drained by the real relay (`relay.run`: read by `seq`, envelope
  built by `event_envelope`, published, marked published). The reference, measured in
  the same run, is the transport's producer alone publishing the same records with no
  database in between: the ceiling the relay works under.
- Latency: events committed one per transaction at a fixed rate by concurrent writers,
  relayed, and read by a consumer-group member; the figure is the time from each
  writer's COMMIT returning to the consumer holding the record.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from payrail.bench.harness import Rate, machine, run_on_uvloop, throwaway_postgres
from payrail.clock import SystemClock
from payrail.db.migrate import upgrade
from payrail.db.pool import open_pool
from payrail.events import relay
from payrail.events.broker import TansuBroker
from payrail.events.kafka import KafkaTransport
from payrail.events.outbox import OutboxEvent, emit
from payrail.events.pglog import PostgresLog
from payrail.events.transport import Record, Transport, topic_for
from payrail.tenants.scope import Scope

CLOCK = SystemClock()
SCOPE = Scope("mer_bench", False)
AGGREGATES = 10_000

# A payment intent as the API shows it: the size and shape of a typical event.
INTENT: dict[str, Any] = {
    "id": "pi_3QbenchBenchBenchBench00",
    "object": "payment_intent",
    "amount": 2000,
    "amount_capturable": 0,
    "amount_received": 2000,
    "capture_method": "automatic",
    "client_secret": None,
    "confirmation_method": "automatic",
    "created": 1_795_000_000,
    "currency": "usd",
    "customer": "cus_QbenchBenchBenchBench00",
    "description": "Premium+ yearly",
    "last_payment_error": None,
    "latest_charge": "ch_3QbenchBenchBenchBench00",
    "livemode": False,
    "metadata": {"order_id": "ord_000000001", "plan": "premium_plus_yearly"},
    "next_action": None,
    "payment_method": "pm_1QbenchBenchBenchBench00",
    "payment_method_types": ["card"],
    "receipt_email": "subscriber@example.com",
    "statement_descriptor": None,
    "status": "succeeded",
    "connector_account": "ca_QbenchBenchBenchBench00",
    "processor_fee": 88,
}


@dataclass(frozen=True)
class Latency:
    sent: int
    received: int
    p50_ms: float
    p99_ms: float
    max_ms: float


async def fill_outbox(pool: AsyncConnectionPool, events: int) -> None:
    """`events` rows written server-side: the relay's input, not what is measured."""
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO events (id, merchant_id, livemode, type, version, aggregate_type,"
            " aggregate_id, payload, created_at)"
            " SELECT 'evt_bench' || i, %(merchant)s, false, 'payment_intent.succeeded', 1,"
            " 'payment_intent', 'pi_bench' || (i %% %(aggregates)s),"
            " %(payload)s::jsonb || jsonb_build_object('id', 'pi_bench' || (i %% %(aggregates)s)),"
            " %(now)s FROM generate_series(1, %(events)s) i",
            {
                "merchant": SCOPE.merchant_id,
                "aggregates": AGGREGATES,
                "payload": orjson.dumps(INTENT).decode(),
                "now": CLOCK.now(),
                "events": events,
            },
        )
        await conn.execute("VACUUM ANALYZE events")


async def _unpublished(pool: AsyncConnectionPool) -> int:
    async with pool.connection() as conn:
        row = await (
            await conn.execute("SELECT count(*) FROM events WHERE published_at IS NULL")
        ).fetchone()
    assert row is not None
    return int(row[0])


async def relay_rate(
    pool: AsyncConnectionPool, transport: Transport, events: int, replicas: int
) -> Rate:
    await fill_outbox(pool, events)
    stop = asyncio.Event()
    started = time.monotonic()
    tasks = [
        asyncio.create_task(relay.run(relay.new_relay(pool, transport, CLOCK), stop))
        for _ in range(replicas)
    ]
    while True:  # drained when nothing is left unpublished
        if not await _unpublished(pool):
            break
        await asyncio.sleep(0.05)
    elapsed = time.monotonic() - started
    stop.set()
    await asyncio.gather(*tasks)
    return Rate(events, elapsed)


async def producer_rate(transport: Transport, events: int, batch: int = 1000) -> Rate:
    """The same records, built once, through the producer alone."""
    records = [
        Record(
            topic_for("payment_intent"),
            f"pi_bench{i % AGGREGATES}",
            orjson.dumps(
                {
                    "id": f"evt_ref{i}",
                    "object": "event",
                    "type": "payment_intent.succeeded",
                    "data": {"object": {**INTENT, "id": f"pi_bench{i % AGGREGATES}"}},
                }
            ),
            {"event_id": f"evt_ref{i}", "event_type": "payment_intent.succeeded"},
        )
        for i in range(events)
    ]
    producer = await transport.producer()
    started = time.monotonic()
    for start in range(0, events, batch):
        await producer.publish(records[start : start + batch])
    elapsed = time.monotonic() - started
    await producer.close()
    return Rate(events, elapsed)


async def latency(
    pool: AsyncConnectionPool, transport: Transport, rate: int, seconds: float, writers: int = 8
) -> Latency:
    committed: dict[int, float] = {}
    arrived: dict[int, float] = {}
    total = int(rate * seconds)
    member = await transport.subscribe("bench-latency", [topic_for("bench_intent")])
    stop = asyncio.Event()
    relay_task = asyncio.create_task(relay.run(relay.new_relay(pool, transport, CLOCK), stop))
    await _warm_up(pool, member)
    next_index = 0
    started = time.monotonic()

    async def writer() -> None:
        nonlocal next_index
        while next_index < total:
            index = next_index
            next_index += 1
            due = started + index / rate
            await asyncio.sleep(max(due - time.monotonic(), 0))
            event = OutboxEvent(
                "bench_intent.succeeded",
                "bench_intent",
                f"pi_bench{index % 1000}",
                {**INTENT, "metadata": {"bench_index": index}},
            )
            async with pool.connection() as conn:
                await emit(conn, SCOPE, CLOCK.now(), [event])  # autocommit: its own COMMIT
            committed[index] = time.monotonic()

    async def consumer() -> None:
        deadline = started + seconds + 10
        while len(arrived) < total and time.monotonic() < deadline:
            for record in await member.fetch(500, max_wait=0.05):
                now = time.monotonic()
                index = orjson.loads(record.value)["data"]["object"]["metadata"]["bench_index"]
                arrived.setdefault(index, now)

    await asyncio.gather(*(writer() for _ in range(writers)), consumer())
    stop.set()
    await relay_task
    await member.close()
    seen = sorted(arrived[i] - committed[i] for i in arrived.keys() & committed.keys())

    def at(share: float) -> float:
        return 1000 * seen[min(int(share * len(seen)), len(seen) - 1)] if seen else float("nan")

    return Latency(total, len(arrived), at(0.5), at(0.99), at(1.0))


async def _warm_up(pool: AsyncConnectionPool, member: Any, events: int = 10) -> None:
    """Events through the whole path before the clock starts: the member has joined its
    group and holds its partitions, the topic exists, the connections are open."""
    async with pool.connection() as conn:
        for index in range(-events, 0):
            event = OutboxEvent(
                "bench_intent.succeeded",
                "bench_intent",
                f"pi_bench{index}",
                {**INTENT, "metadata": {"bench_index": index}},
            )
            await emit(conn, SCOPE, CLOCK.now(), [event])
    seen = 0
    deadline = time.monotonic() + 60
    while seen < events and time.monotonic() < deadline:
        seen += len(await member.fetch(100, max_wait=0.2))


@asynccontextmanager
async def _pool(url: str) -> AsyncIterator[AsyncConnectionPool]:
    pool = await open_pool(url, min_size=10, max_size=16)
    try:
        yield pool
    finally:
        await pool.close()


TransportFactory = Callable[[AsyncConnectionPool], Transport]


async def _measure(
    url: str, make: TransportFactory, events: int, replicas: int, rate: int, seconds: float
) -> dict[str, Any]:
    async with _pool(url) as pool:
        transport = make(pool)
        return {
            "producer": await producer_rate(transport, events),
            "relay": await relay_rate(pool, transport, events, replicas),
            "latency": await latency(pool, transport, rate, seconds),
        }


@contextmanager
def _kafka() -> Iterator[str]:
    """The bundled broker, as `payrail up --kafka` runs it (memory storage)."""
    with tempfile.TemporaryDirectory(prefix="payrail-bench-kafka-") as directory:
        broker = TansuBroker(log_path=Path(directory) / "tansu.log")
        servers = broker.start()
        try:
            yield servers
        finally:
            broker.stop()


def run(
    events: int = 200_000, replicas: int = 1, rate: int = 1000, seconds: float = 10
) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = [("machine", machine(), "")]
    outcomes: dict[str, dict[str, Any]] = {}
    with throwaway_postgres() as server, _kafka() as servers:
        # One database per transport: each run starts from an empty outbox.
        for name, make in (
            ("Kafka (Tansu)", lambda pool: KafkaTransport(servers)),
            ("PostgreSQL log", lambda pool: PostgresLog(pool, CLOCK)),
        ):
            database = f"bench_{len(outcomes)}"
            with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
            url = server.url(database)
            upgrade(url)
            outcomes[name] = run_on_uvloop(_measure(url, make, events, replicas, rate, seconds))
    for name, outcome in outcomes.items():
        rows += _rows(name, outcome, rate)
    return rows


def _rows(name: str, outcome: dict[str, Any], rate: int) -> list[tuple[str, str, str]]:
    relayed: Rate = outcome["relay"]
    alone: Rate = outcome["producer"]
    lat: Latency = outcome["latency"]
    return [
        (
            f"{name}: relay, outbox to transport",
            f"{relayed.per_second:,.0f} events/s",
            f">= 20,000/s; producer alone {alone.per_second:,.0f}/s",
        ),
        (
            f"{name}: commit to consumer at {rate:,}/s",
            f"p50 {lat.p50_ms:.0f} ms, p99 {lat.p99_ms:.0f} ms (max {lat.max_ms:.0f})",
            f"p99 < 500 ms; {lat.received:,} of {lat.sent:,} received",
        ),
    ]
